"""pytest fixtures for end-to-end modules; import them into the module that defines `standin`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .standin import DiscordStandin


@pytest.fixture(autouse=True)
def discord_rules(standin: DiscordStandin) -> Iterator[None]:
    """Each test: no Discord rule broken, zero 429s, no interaction left unanswered — unless
    the test declared it with `standin.expect_violation(...)` / `expect_rate_limited(...)`."""
    with standin.checked():
        yield
