"""The error funnel (bot/errors.py): what a user is told when a handler fails."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import discord

from bot.errors import UNKNOWN_INTERACTION, report_error
from core import messages as msg
from core.errors import Conflict


class FakeInteraction:
    """Just what the funnel touches: it records every answer it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.id = 42
        self.command = None
        self.data = {"custom_id": "kahani:v1:choose:1:1"}
        self.type = SimpleNamespace(name="component")
        self.user = SimpleNamespace(id=7)
        self.guild_id = self.channel_id = None
        self.response = SimpleNamespace(is_done=lambda: False, send_message=self._send)
        self.followup = SimpleNamespace(send=self._send)

    async def _send(self, content: str, **_: Any) -> None:
        self.sent.append(content)


def http_error(cls: type[discord.HTTPException], status: int, code: int) -> discord.HTTPException:
    return cls(SimpleNamespace(status=status, reason="Not Found"), {"code": code, "message": "x"})


async def test_an_expected_failure_is_told_to_the_user() -> None:
    interaction = FakeInteraction()
    assert await report_error(interaction, Conflict(msg.STILL_WRITING)) is None  # type: ignore[arg-type]
    assert interaction.sent == [msg.STILL_WRITING]


async def test_an_expired_interaction_is_not_answered_again() -> None:
    """A click answered after Discord's 3 s: the late answer was refused (10062), and a
    second try would be refused too — the funnel logs it and sends nothing."""
    interaction = FakeInteraction()
    expired = http_error(discord.NotFound, 404, UNKNOWN_INTERACTION)
    assert await report_error(interaction, expired) is None  # type: ignore[arg-type]
    assert interaction.sent == []
    other = http_error(discord.NotFound, 404, 10008)  # unknown message: the user is told
    await report_error(interaction, other)  # type: ignore[arg-type]
    assert len(interaction.sent) == 1
