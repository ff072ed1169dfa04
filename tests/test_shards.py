"""SHARD_COUNT / SHARD_IDS: the bot runs exactly the shards it is given, and a guild's
interactions reach the shard Discord routes them to."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import messages as msg
from tests.discord_standin import DiscordStandin
from tests.discord_standin.models import EPHEMERAL
from tests.harness import running_bot


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite+aiosqlite:///{path}"


async def test_the_bot_runs_the_shards_it_is_given(sqlite_url: str) -> None:
    async with DiscordStandin() as standin:
        # Guild ids whose shard, (id >> 22) % 2, is 0 and 1.
        guilds = [standin.add_guild(f"g{n}", id=((1_000 + n) << 22) + n) for n in range(2)]
        assert sorted((g.id >> 22) % 2 for g in guilds) == [0, 1]
        channels = [standin.add_channel(g, "general") for g in guilds]
        alice = standin.add_user("alice")
        for g in guilds:
            standin.add_member(g, alice, ())
        async with running_bot(standin, sqlite_url, shard_count=2, shard_ids=[0, 1]) as running:
            assert sorted(standin.gateway.by_shard) == [0, 1]
            assert {s.shard_count for s in standin.gateway.by_shard.values()} == {2}
            assert running.bot.shard_count == 2
            for channel in channels:  # each guild's interaction arrives on its own shard
                rec = await standin.slash(alice, channel, "help")
                response = await rec.wait_response()
                assert response.data["flags"] & EPHEMERAL and response.data["content"] == msg.HELP_TEXT
        standin.assert_clean()


async def test_a_process_with_some_shards_connects_only_those(sqlite_url: str) -> None:
    async with DiscordStandin() as standin:
        standin.add_channel(standin.add_guild("g", id=(7 << 22) + 1), "general")
        async with running_bot(standin, sqlite_url, shard_count=4, shard_ids=[1, 3]):
            assert sorted(standin.gateway.by_shard) == [1, 3]
        standin.assert_clean()
