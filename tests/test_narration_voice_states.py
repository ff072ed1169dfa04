"""Narration when the voice connection goes away under it, and when Kokoro comes back.

The real KahaniBot, in this process, with discord.py's real VoiceClient connected to the
voice server stand-in (TLS websocket, UDP, encrypted RTP — :mod:`tests.discord_standin.voice`):
a moderator moves the bot to another channel, disconnects it, deletes its channel, or
everyone else leaves. Each time the narration stops cleanly — the audio source is closed,
the synthesis task and discord.py's player and socket-reader threads end, no voice client
and no task is left over — and the story goes on. Then Kokoro going down and coming back:
a clear message while it is down, narration again as soon as it is up (the Narrate button
and auto-narration), with no restart.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from discord.player import AudioPlayer
from discord.voice_state import SocketReader

from bot.app import KahaniBot
from cogs.narration import GuildNarration, Narration, voice_problem
from core import messages as msg
from core import repository as repo
from tests.discord_standin import GUILD_VOICE, AdjustableClock, Channel, DiscordStandin, Guild, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import EPHEMERAL, InteractionRecord, Message
from tests.discord_standin.voice import VoiceServer, VoiceSession, make_certificate, trust_in_this_process
from tests.fakes.kokoro import FakeKokoro
from tests.fakes.llm import FakeLLM
from tests.harness import running_bot
from tests.test_play import new_story, scene, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")

# ~8 s of audio at the fake's 0.06 s a character: still playing when the voice goes away.
SCENE = ("The lighthouse door creaks open. Salt wind fills the stair, and somewhere above a "
         "shutter bangs twice. The keeper's lamp is still warm.")


@dataclass
class World:
    standin: DiscordStandin
    voice: VoiceServer
    bot: KahaniBot
    llm: FakeLLM
    kokoro: FakeKokoro
    guild: Guild
    general: Channel
    alice: User
    bob: User
    thread: Channel | None = None
    scenes: int = 0  # finished scenes in the thread

    @property
    def cog(self) -> Narration:
        cog = self.bot.get_cog("Narration")
        assert cog is not None
        return cog  # type: ignore[return-value]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[World]:
    problem = voice_problem()  # libopus, PyNaCl, davey: CI installs them, so there it fails
    if problem and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        pytest.skip(f"SKIPPED LOUDLY: voice unavailable here: {problem}")
    assert problem is None, problem
    directory = tmp_path_factory.mktemp("voice-states")
    path = directory / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    cert, key = make_certificate(directory)
    trust_in_this_process(cert)
    async with (DiscordStandin(clock=AdjustableClock()) as standin, VoiceServer(cert, key, standin=standin) as voice,
                FakeLLM(token_rate=400) as llm, FakeKokoro(realtime_factor=20) as kokoro):
        standin.voice_endpoint = voice.endpoint
        guild = standin.add_guild("Harbour")
        general = standin.add_channel(guild, "stories")
        alice = standin.add_user("alice", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        async with running_bot(standin, f"sqlite+aiosqlite:///{path}", llm_base_url=llm.base_url,
                               kokoro_url=kokoro.base_url) as running:
            world = World(standin, voice, running.bot, llm, kokoro, guild, general, alice, bob)
            llm.script(scene(SCENE))
            world.thread = await new_story(world, alice, general, "Night Harbour")  # type: ignore[arg-type]
            await wait_scene(world, world.thread)  # type: ignore[arg-type]
            world.scenes = 1
            yield world
            voice.assert_clean()


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


async def answers(world: World, rec: InteractionRecord, count: int = 1, timeout: float = 10.0) -> list[str]:
    """The user's first ``count`` ephemeral answers (the response, then followups)."""
    def found() -> list[Message] | None:
        messages = [m for m in [rec.original, *rec.followups] if m is not None and m.content]
        return messages if len(messages) >= count else None

    await rec.wait_response(timeout)
    messages = await world.standin.wait_until(found, timeout=timeout, what=f"{count} answer(s)")
    assert all(m.flags & EPHEMERAL and m.ephemeral_for is rec.user for m in messages)
    return [m.content for m in messages]


async def until(check: Callable[[], Any], timeout: float = 5.0, what: str = "a condition",
                shown: Callable[[], Any] | None = None) -> None:
    """Poll what the player threads change (nothing tells the event loop about it);
    ``shown()`` goes into the failure message."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, (
            f"timed out waiting for {what}" + (f": {shown()}" if shown else ""))
        await asyncio.sleep(0.01)


def voice_threads() -> list[threading.Thread]:
    """discord.py's audio player threads still running, and its voice socket reader
    threads not told to stop. (A stopped reader may sit up to 30 s in ``select`` on its
    closed socket before it notices: discord.py's own time-out, a daemon thread.)"""
    return [t for t in threading.enumerate() if t.is_alive() and (
        isinstance(t, AudioPlayer) or (isinstance(t, SocketReader) and not t._end.is_set()))]


def latest_scene(world: World) -> Message:
    assert world.thread is not None
    scenes = [m for m in world.thread.messages if "kahani:v1:choose:" in str(m.component_items())]
    return scenes[-1]


@dataclass
class Narrating:
    channel: Channel
    session: VoiceSession  # the voice stand-in's end of the connection
    narration: GuildNarration  # the cog's
    tasks_before: set[asyncio.Task[Any]]


async def join_and_narrate(world: World, *listeners: User) -> Narrating:
    """``listeners`` sit in a new voice channel, the first runs /narrate join and presses
    Narrate on the latest scene; returns once its audio reaches the voice server."""
    assert not voice_threads() and not world.bot.voice_clients, "a voice connection leaked from a test before"
    tasks_before = asyncio.all_tasks()
    channel = world.standin.add_channel(world.guild, f"Voice {len(world.guild.channels)}", type=GUILD_VOICE)
    for user in listeners:
        await world.standin.join_voice(user, channel)
    host = listeners[0]
    rec = await world.standin.slash(host, world.general, "narrate join")
    assert await answers(world, rec) == [msg.NARRATE_JOINED.format(channel=f"<#{channel.id}>")]
    session = world.voice.sessions[-1]
    rec = await world.standin.click(host, latest_scene(world), "Narrate")
    assert await answers(world, rec) == [msg.NARRATE_STARTED.format(channel=f"<#{channel.id}>")]
    stream = world.voice.stream(session.ssrc)
    await world.voice.wait_until(lambda: len(stream.frames) >= 10, timeout=5, what="the narration's audio")
    return Narrating(channel, session, world.cog.sessions[world.guild.id], tasks_before)


async def assert_stopped_cleanly(world: World, narrating: Narrating) -> None:
    """The narration and the voice connection are gone, and nothing of them is left."""
    # The cog's state, which the stand-in is not told about: polled, not event-driven.
    await until(lambda: world.guild.id not in world.cog.sessions, what="the narration closed")
    job = narrating.narration.job
    assert job is not None
    await until(lambda: job.source.closed, what="discord.py to close the audio source")
    assert job.source.finished and not job.running
    await until(lambda: not voice_threads(), what="the player thread to end and the socket reader's to stop",
                shown=voice_threads)
    await until(lambda: not world.bot.voice_clients, what="the voice client to go")
    guild = world.bot.get_guild(world.guild.id)
    assert guild is not None and guild.voice_client is None
    await world.voice.wait_until(lambda: narrating.session.closed, what="the voice websocket closed")
    assert world.standin.bot_user.id not in world.standin.guilds[world.guild.id].voice_states

    def leftover() -> list[str]:
        new = asyncio.all_tasks() - narrating.tasks_before
        return [f"{t.get_name()}: {t.get_coro()!r}" for t in new if not t.done() and voice_code(t)]

    await until(lambda: not leftover(), what="no voice or narration task left over", shown=leftover)


VOICE_CODE = ("discord/voice_state.py", "discord/voice_client.py", "discord/gateway.py", "discord/player.py",
              "cogs/narration.py", "bot/ui/audio.py", "core/tts.py")


def voice_code(task: asyncio.Task[Any]) -> bool:
    """Whether a task runs voice or narration code (the votes' timers are not ours)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return task.get_name() in ("narration", "Voice websocket poller") or (
        code is not None and code.co_filename.replace("\\", "/").endswith(VOICE_CODE))


async def assert_story_goes_on(world: World) -> None:
    """A choice still writes the next scene (the voice trouble did not touch the story)."""
    assert world.thread is not None
    world.llm.script(scene(f"Scene {world.scenes + 1}: the tide turns. Gulls cry over the rocks."))
    rec = await world.standin.click(world.alice, latest_scene(world), "1. Climb the stair")
    await rec.wait_response()
    await wait_scene(world, world.thread, after=world.scenes)  # type: ignore[arg-type]
    world.scenes += 1


# --- the voice connection goes away ------------------------------------------------------------


async def test_the_bot_moved_to_another_channel_stops_narrating_and_nothing_leaks(world: World) -> None:
    narrating = await join_and_narrate(world, world.alice)
    elsewhere = world.standin.add_channel(world.guild, "AFK", type=GUILD_VOICE)
    await world.standin.move_voice(world.standin.bot_user, elsewhere)
    await world.voice.drop(4014)  # Discord closes the old voice websocket
    await assert_stopped_cleanly(world, narrating)
    await assert_story_goes_on(world)


async def test_the_bot_disconnected_by_a_moderator_stops_narrating_and_nothing_leaks(world: World) -> None:
    narrating = await join_and_narrate(world, world.alice)
    await world.standin.disconnect_voice(world.standin.bot_user, world.guild)
    await world.voice.drop(4014)
    await assert_stopped_cleanly(world, narrating)
    await assert_story_goes_on(world)


async def test_the_voice_channel_deleted_stops_narrating_and_nothing_leaks(world: World) -> None:
    narrating = await join_and_narrate(world, world.alice)
    world.standin.delete_channel(narrating.channel)
    await world.voice.drop(4014)
    await assert_stopped_cleanly(world, narrating)
    await assert_story_goes_on(world)


async def test_the_bot_leaves_when_everyone_else_has_left_and_nothing_leaks(world: World) -> None:
    narrating = await join_and_narrate(world, world.alice, world.bob)
    seen = asyncio.ensure_future(world.bot.wait_for("voice_state_update", check=lambda m, b, a: m.id == world.bob.id))
    await world.standin.leave_voice(world.bob, world.guild)
    await asyncio.wait_for(seen, 5)
    # Alice is still listening: the narration goes on.
    stream = world.voice.stream(narrating.session.ssrc)
    heard = len(stream.frames)
    await world.voice.wait_until(lambda: len(stream.frames) > heard + 10, what="more audio")
    assert world.cog.sessions.get(world.guild.id) is narrating.narration and not narrating.session.closed
    await world.standin.leave_voice(world.alice, world.guild)
    await assert_stopped_cleanly(world, narrating)
    assert narrating.session.close_code == 1000  # the bot left by itself
    await assert_story_goes_on(world)


# --- Kokoro goes down and comes back --------------------------------------------------------------


async def test_narration_works_again_as_soon_as_kokoro_is_back(world: World) -> None:
    narrating = await join_and_narrate(world, world.alice)
    stream = world.voice.stream(narrating.session.ssrc)
    await world.kokoro.pause()
    try:
        # The Narrate button while Kokoro is down: started, then the reason, and the story goes on.
        rec = await world.standin.click(world.alice, latest_scene(world), "Narrate")
        assert await answers(world, rec, 2) == [
            msg.NARRATE_STARTED.format(channel=f"<#{narrating.channel.id}>"),
            msg.NARRATE_FAILED_MIDWAY.format(reason=msg.TTS_UNREACHABLE.format(url=world.kokoro.base_url)),
        ]
        assert "narration unavailable: kokoro at" in msg.TTS_UNREACHABLE.lower()
        failed = world.cog.sessions[world.guild.id].job
        assert failed is not None and failed.error is not None and failed.error.kind == "unreachable"
        await until(lambda: failed.source.closed, what="the failed narration's source to close")

        # Auto-narration while Kokoro is down: the scene is written all the same.
        async with world.bot.db.transaction() as s:
            alice = await repo.get_or_create_user(s, world.alice.id, world.alice.name)
            await repo.update_user_settings(s, alice.id, auto_narrate=True)
        jobs = len(world.cog.sessions[world.guild.id].jobs)
        await assert_story_goes_on(world)
        auto = world.cog.sessions[world.guild.id].jobs[jobs:]
        assert auto and auto[-1].error is not None and auto[-1].error.kind == "unreachable"
    finally:
        await world.kokoro.resume()
    try:
        # Kokoro is back: the next scene is read while it is written, without a restart.
        heard = len(stream.frames)
        jobs = len(world.cog.sessions[world.guild.id].jobs)
        asked = len(world.kokoro.speech_requests)
        await assert_story_goes_on(world)
        job = world.cog.sessions[world.guild.id].jobs[-1]
        assert len(world.cog.sessions[world.guild.id].jobs) == jobs + 1 and job.error is None
        await world.voice.wait_until(lambda: len(stream.frames) > heard + 10, what="the next scene's audio")
        assert "the tide turns" in " ".join(r["input"] for r in world.kokoro.speech_requests[asked:])
    finally:
        async with world.bot.db.transaction() as s:
            await repo.update_user_settings(s, alice.id, auto_narrate=False)
    # … and so does the Narrate button.
    heard = len(stream.frames)
    rec = await world.standin.click(world.alice, latest_scene(world), "Narrate")
    assert await answers(world, rec) == [msg.NARRATE_STARTED.format(channel=f"<#{narrating.channel.id}>")]
    await world.voice.wait_until(lambda: len(stream.frames) > heard + 10, what="the Narrate button's audio")
    assert world.cog.sessions[world.guild.id].job.error is None  # type: ignore[union-attr]
    rec = await world.standin.slash(world.alice, world.general, "narrate leave")
    assert await answers(world, rec) == [msg.NARRATE_LEFT.format(channel=f"<#{narrating.channel.id}>")]
    await assert_stopped_cleanly(world, narrating)

