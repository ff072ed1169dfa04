"""A slow answer is deferred before Discord's 3 s run out; a quick one stays one response."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.ui import common


class FakeResponse:
    def __init__(self) -> None:
        self.deferred: dict[str, Any] | None = None
        self.answered = asyncio.Event()

    def is_done(self) -> bool:
        return self.deferred is not None

    async def defer(self, **options: Any) -> None:
        self.deferred = options
        self.answered.set()


class FakeInteraction:
    def __init__(self) -> None:
        self.response = FakeResponse()


async def test_quick_work_is_answered_without_a_deferral() -> None:
    interaction = FakeInteraction()
    assert await common.within_the_deadline(interaction, asyncio.sleep(0, "done")) == "done"  # type: ignore[arg-type]
    assert interaction.response.deferred is None


async def test_slow_work_is_deferred_first_then_finishes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "ACK_WITHIN", 0.01)
    interaction = FakeInteraction()
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "voted"

    task = asyncio.ensure_future(common.within_the_deadline(interaction, slow()))  # type: ignore[arg-type]
    await interaction.response.answered.wait()  # the deferral comes after ACK_WITHIN
    assert interaction.response.deferred == {"ephemeral": True, "thinking": True}
    assert not task.done()
    gate.set()
    assert await task == "voted"
