"""The bot shell end to end: the real KahaniBot (in this process and as `python -m bot
run`) against the Discord stand-in — start-up, command sync by hash, /help, the error
funnel, stale buttons, gateway drops, REST faults, SIGTERM."""

from __future__ import annotations

import logging
import re
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands

from bot.app import COMMANDS_HASH_KEY, KahaniBot, commands_fingerprint
from bot.errors import funnel_errors, is_stale_component
from core import messages as msg
from core.appstate import get_state
from core.db import Database
from core.errors import KahaniError
from tests.discord_standin import AdjustableClock, Channel, DiscordStandin, Guild, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import EPHEMERAL, InteractionRecord, Message, Revision
from tests.harness import BotProcess, RunningBot, running_bot

pytestmark = pytest.mark.asyncio(loop_scope="module")

BUSY = "That story is busy right now. Try again in a moment."
REF = re.compile(r"\(ref ([A-Z0-9]{6})\)")
GUILDS_AND_VOICE_STATES = (1 << 0) | (1 << 7)


# --- a test-only cog: commands and components that fail on purpose ----------------------


class ChooseItem(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"kahani:v1:testchoose:(?P<n>\d+)"):
    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(label=f"Choice {n}", custom_id=f"kahani:v1:testchoose:{n}"))
        self.n = n

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button[Any],
                             match: re.Match[str]) -> ChooseItem:
        return cls(int(match["n"]))

    @funnel_errors
    async def callback(self, interaction: discord.Interaction) -> None:
        if self.n == 0:
            raise KahaniError(BUSY)
        await interaction.response.send_message(f"chose {self.n}", ephemeral=True)


class WaveView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Wave", custom_id="kahani:v1:testwave")
    async def wave(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.send_message("waved", ephemeral=True)


class Trouble(commands.Cog):
    @app_commands.command(name="oops", description="Fails the way a busy story does")
    async def oops(self, interaction: discord.Interaction) -> None:
        raise KahaniError(BUSY)

    @app_commands.command(name="late-oops", description="Defers, then fails the way a busy story does")
    async def late_oops(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        raise KahaniError(BUSY)

    @app_commands.command(name="boom", description="Fails with a bug")
    async def boom(self, interaction: discord.Interaction) -> None:
        raise RuntimeError("kaboom: a bug in a cog")


async def add_trouble(bot: KahaniBot) -> None:
    await bot.add_cog(Trouble())
    bot.add_dynamic_items(ChooseItem)
    bot.add_view(WaveView())


# --- the module's world: one stand-in, one bot on a fresh SQLite database ----------------


@dataclass
class World:
    standin: DiscordStandin
    running: RunningBot
    guild: Guild
    general: Channel
    alice: User

    @property
    def bot(self) -> KahaniBot:
        return self.running.bot

    def earlier_message(self, *custom_ids: str) -> Message:
        """A message the bot posted earlier (maybe an older version of it), with buttons."""
        buttons = [{"type": 2, "style": 1, "label": cid, "custom_id": cid} for cid in custom_ids]
        revision = Revision("an earlier scene", components=[{"type": 1, "components": buttons}])
        return self.standin.post_message(self.general, self.standin.bot_user, revision)


@pytest.fixture(scope="module")
def sqlite_url(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("bot-shell") / "kahani.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(sqlite_url: str) -> AsyncIterator[World]:
    async with DiscordStandin(clock=AdjustableClock()) as standin:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "general")
        alice = standin.add_user("alice", guild=guild)
        async with running_bot(standin, sqlite_url, setup=add_trouble) as running:
            print(f"\nin-process start-to-ready: {running.ready_seconds:.2f} s")
            yield World(standin, running, guild, general, alice)


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


@pytest_asyncio.fixture(loop_scope="module")
async def own_standin() -> AsyncIterator[DiscordStandin]:
    """A stand-in of the test's own, for tests that start and stop bots of their own."""
    async with DiscordStandin() as standin:
        standin.add_channel(standin.add_guild("Elsewhere"), "general")
        yield standin
        standin.assert_clean()


def ephemeral_answer(rec: InteractionRecord) -> str:
    (answer,) = [m for m in [rec.original, *rec.followups] if m is not None and m.content]
    assert answer.flags & EPHEMERAL and answer.ephemeral_for is rec.user
    return answer.content


# --- start-up ---------------------------------------------------------------------------


async def test_the_bot_logs_in_with_only_the_intents_it_needs_and_syncs_its_commands(world: World) -> None:
    standin = world.standin
    assert standin.command_syncs == 1
    assert {c["name"] for c in standin.global_commands} >= {"help", "oops", "boom"}
    assert standin.gateway.by_shard[0].intents == GUILDS_AND_VOICE_STATES
    stored = await get_state(world.bot.db, COMMANDS_HASH_KEY)
    assert stored == commands_fingerprint(world.bot.tree, world.bot.application_id)
    host, pid, suffix = world.bot.instance_id.split(":")
    assert host and int(pid) > 0 and len(suffix) == 6
    assert world.running.ready_seconds < 2  # printed above (about 0.3 s here)


async def test_commands_are_synced_only_when_they_changed(own_standin: DiscordStandin, database_url: str) -> None:
    async with running_bot(own_standin, database_url):
        pass
    assert own_standin.command_syncs == 1
    async with running_bot(own_standin, database_url) as again:  # same commands: no sync
        assert own_standin.command_syncs == 1

    async def one_more_command(bot: KahaniBot) -> None:
        @bot.tree.command(name="extra", description="A command added by a new version")
        async def extra(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("extra", ephemeral=True)

    async with running_bot(own_standin, database_url, setup=one_more_command):
        assert own_standin.command_syncs == 2
        assert "extra" in {c["name"] for c in own_standin.global_commands}
    assert again.ready_seconds < 5


# --- /help --------------------------------------------------------------------------------


async def test_help_explains_how_to_play_only_to_the_asker_and_pings_nobody(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "help")
    response = await rec.wait_response()
    assert response.type == 4 and response.data["allowed_mentions"]["parse"] == []
    text = ephemeral_answer(rec)
    assert text == msg.HELP_TEXT and len(text) <= 2000
    for hint in ("/story new", "Your action", "Regenerate", "Branch", "Continue", "/chapter new", "/narrate join"):
        assert hint in text
    votes, commands = response.data["embeds"]
    assert votes["title"] == msg.HELP_VOTES_TITLE and "Close vote" in votes["description"]
    # Every command the bot registered is listed, within Discord's embed limits.
    listed = "\n".join(f"{f['name']}\n{f['value']}" for f in commands["fields"])
    for command in world.standin.global_commands:
        subcommands = [o["name"] for o in command.get("options", []) if o.get("type") in (1, 2)]
        for sub in subcommands or [None]:
            assert (f"`{sub}`" if sub else f"`/{command['name']}`") in listed and f"/{command['name']}" in listed
    assert all(len(f["value"]) <= 1024 for f in commands["fields"]) and len(commands["fields"]) <= 25
    assert len(text) + sum(len(e.get("title", "")) + len(e.get("description", "")) for e in (votes, commands)) \
        + len(listed) <= 6000
    assert world.general.messages == []  # nothing public


# --- the error funnel -------------------------------------------------------------------


async def test_a_kahani_error_becomes_a_short_ephemeral_reply(world: World, caplog: pytest.LogCaptureFixture) -> None:
    rec = await world.standin.slash(world.alice, world.general, "oops")
    await rec.wait_response()
    assert ephemeral_answer(rec) == BUSY
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_kahani_error_after_a_defer_is_sent_as_an_ephemeral_followup(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "late-oops")
    assert (await rec.wait_response()).type == 5
    followup = await world.standin.wait_until(lambda: rec.followups, what="the followup")
    assert followup[0].content == BUSY and followup[0].flags & EPHEMERAL


async def test_an_unexpected_error_shows_a_reference_that_the_log_has_with_the_traceback(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    rec = await world.standin.slash(world.alice, world.general, "boom")
    await rec.wait_response()
    text = ephemeral_answer(rec)
    assert text.startswith("Something went wrong (ref ") and "kaboom" not in text
    ref = REF.search(text)[1]  # type: ignore[index]
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR and ref in r.getMessage()]
    assert "/boom" in record.getMessage() and record.exc_info and isinstance(record.exc_info[1], RuntimeError)


async def test_an_error_in_a_persistent_button_reaches_the_user(world: World) -> None:
    message = world.earlier_message("kahani:v1:testchoose:0", "kahani:v1:testchoose:3")
    failing = await world.standin.click(world.alice, message, "kahani:v1:testchoose:0")
    await failing.wait_response()
    assert ephemeral_answer(failing) == BUSY
    working = await world.standin.click(world.alice, message, "kahani:v1:testchoose:3")
    await working.wait_response()
    assert ephemeral_answer(working) == "chose 3"


# --- buttons from older versions ------------------------------------------------------------


async def test_a_button_from_an_older_version_gets_a_polite_answer(world: World) -> None:
    message = world.earlier_message("kahani:v1:retired:12:1")  # an action this version does not have
    rec = await world.standin.click(world.alice, message, "kahani:v1:retired:12:1")
    await rec.wait_response()
    assert ephemeral_answer(rec) == msg.DISCORD_STALE_COMPONENT
    assert [c.accepted for c in rec.callbacks] == [True]


async def test_buttons_something_handles_are_answered_once(world: World) -> None:
    message = world.earlier_message("kahani:v1:testchoose:5", "kahani:v1:testwave")
    clicks = [await world.standin.click(world.alice, message, cid)
              for cid in ("kahani:v1:testchoose:5", "kahani:v1:testwave")]
    for rec in clicks:
        await rec.wait_response()
    # One more round trip: a second answer to either click would have arrived by now.
    await (await world.standin.slash(world.alice, world.general, "help")).wait_response()
    assert [ephemeral_answer(rec) for rec in clicks] == ["chose 5", "waved"]
    assert [[c.accepted for c in rec.callbacks] for rec in clicks] == [[True], [True]]


async def test_only_unhandled_kahani_ids_count_as_stale() -> None:
    templates = [ChooseItem.__discord_ui_compiled_template__]
    views = [WaveView()]
    assert is_stale_component("kahani:v0:choose:1", templates, views)
    assert not is_stale_component("kahani:v1:testchoose:1", templates, views)
    assert not is_stale_component("kahani:v1:testwave", templates, views)
    assert not is_stale_component("someone-else:button", templates, views)


# --- faults -----------------------------------------------------------------------------


async def test_the_bot_resumes_after_a_gateway_drop_and_still_answers(world: World) -> None:
    standin = world.standin
    session = standin.gateway.by_shard[0]
    await standin.drop_gateway()
    rec = await standin.slash(world.alice, world.general, "help")  # sent while the socket is down
    await rec.wait_response()
    assert session.resumes == 1 and standin.gateway.identifies == 1


async def test_a_server_error_on_the_interaction_callback_is_retried(world: World) -> None:
    world.standin.fail_next("POST", "/interactions/{interaction_id}/{interaction_token}/callback")
    rec = await world.standin.slash(world.alice, world.general, "help")
    await rec.wait_response(timeout=4)  # discord.py retries a 500 after 1 s
    assert ephemeral_answer(rec) == msg.HELP_TEXT


# --- the bot as users run it: python -m bot run --------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_ends_the_bot_cleanly_with_exit_code_0(own_standin: DiscordStandin, tmp_path: Path,
                                                                   stop_signal: signal.Signals) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kahani.db'}"  # not migrated yet: the bot does it
    async with BotProcess(own_standin, url) as proc:
        print(f"\nsubprocess start-to-ready (python start-up included): {proc.ready_seconds:.2f} s")
        assert proc.ready_seconds < 5  # about 1.3 s here; a loaded CI machine is slower
        rec = await own_standin.slash(own_standin.owner, next(iter(own_standin.channels.values())), "help")
        await rec.wait_response()
        proc.send_signal(stop_signal)
        assert await proc.wait(timeout=5) == 0
    assert f"{stop_signal.name} received" in proc.stderr and "shutting down" in proc.stderr and "bot.app: stopped" in proc.stderr
    assert "Traceback" not in proc.stderr and "Unclosed" not in proc.stderr, proc.stderr
    await own_standin.wait_until(lambda: not own_standin.gateway.connections, what="the bot to close its socket")


async def test_a_restarted_bot_process_does_not_sync_commands_again(own_standin: DiscordStandin,
                                                                    database_url: str) -> None:
    async with BotProcess(own_standin, database_url) as first:
        assert own_standin.command_syncs == 1
        first.kill()  # a crash: no clean shutdown
        assert await first.wait() == -9
    async with BotProcess(own_standin, database_url) as second:
        assert "slash commands unchanged; not syncing" in second.stderr
        assert await second.stop() == 0
    assert own_standin.command_syncs == 1
    database = Database.from_url(database_url)
    try:
        assert await get_state(database, COMMANDS_HASH_KEY)
    finally:
        await database.dispose()
