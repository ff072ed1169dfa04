"""Narration end to end: the real KahaniBot against the Discord stand-in, the fake LLM and
the fake Kokoro-FastAPI — the Narrate button in DMs (an MP3 attachment read with the
player's voice and speed), /narrate voice|speed|join|leave|stop|skip, and Kokoro failing
while the story goes on.

Playback here goes into a FakeVoice connection; audio reaching a real voice connection
(TLS voice gateway, IP discovery, encrypted RTP) is tests/test_voice_e2e.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.app import KahaniBot
from bot.ui.audio import FRAME_BYTES, SILENCE
from cogs.narration import Narration
from core import messages as msg
from core import repository as repo
from core.db import Database
from core.models import RateEvent
from core.narration import chunk_text, narration_text
from tests.discord_standin import (
    GUILD_VOICE,
    AdjustableClock,
    Channel,
    DiscordStandin,
    Guild,
    User,
)
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import EPHEMERAL, InteractionRecord, Message
from tests.fakes.kokoro import MP3_HEADER, FakeKokoro, Fault
from tests.fakes.llm import FakeLLM
from tests.harness import running_bot
from tests.test_narration_audio import Player
from tests.test_play import new_story, scene, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCENE = ("The **lighthouse** door creaks open. Salt wind fills the stair; see "
         "https://example.com/map for the island. Somewhere above, a shutter bangs.")


@dataclass
class World:
    standin: DiscordStandin
    bot: KahaniBot
    llm: FakeLLM
    kokoro: FakeKokoro
    guild: Guild
    general: Channel
    lounge: Channel
    cellar: Channel
    alice: User
    bob: User

    @property
    def db(self) -> Database:
        return self.bot.db

    @property
    def cog(self) -> Narration:
        cog = self.bot.get_cog("Narration")
        assert cog is not None  # an instance of the extension's own copy of the module
        return cog  # type: ignore[return-value]

    def in_lounge(self) -> FakeVoice:
        """The bot "connected" to #lounge: a fake voice client the cog narrates into."""
        from cogs.narration import GuildNarration  # the extension's class, looked up when loaded

        voice = FakeVoice(self.bot.get_guild(self.guild.id).get_channel(self.lounge.id))  # type: ignore[union-attr]
        # alice ran /narrate join
        self.cog.sessions[self.guild.id] = GuildNarration(voice, started_by=self.alice.id)  # type: ignore[arg-type]
        return voice


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[World]:
    path = tmp_path_factory.mktemp("narration") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with (DiscordStandin(clock=AdjustableClock()) as standin, FakeLLM(token_rate=400) as llm,
                FakeKokoro(realtime_factor=None) as kokoro):
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "stories")
        lounge = standin.add_channel(guild, "Lounge", type=GUILD_VOICE)
        cellar = standin.add_channel(guild, "Cellar", type=GUILD_VOICE)
        alice = standin.add_user("alice", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        # The tests narrate one after another: no cooldown between files unless a test sets one.
        async with running_bot(standin, f"sqlite+aiosqlite:///{path}", llm_base_url=llm.base_url,
                               kokoro_url=kokoro.base_url, audio_file_cooldown_seconds=0) as running:
            yield World(standin, running.bot, llm, kokoro, guild, general, lounge, cellar, alice, bob)


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


async def answer(world: World, rec: InteractionRecord, timeout: float = 10.0) -> Message:
    """The user's ephemeral answer (after a deferral: the followup)."""
    response = await rec.wait_response(timeout)
    if response.type == 5:
        await world.standin.wait_until(lambda: rec.followups, timeout=timeout, what="the followup")
    answers = [m for m in [rec.original, *rec.followups] if m is not None and (m.content or m.attachments)]
    assert answers, "no answer"
    assert answers[-1].flags & EPHEMERAL and answers[-1].ephemeral_for is rec.user
    return answers[-1]


async def text_of(world: World, rec: InteractionRecord) -> str:
    return (await answer(world, rec)).content


async def dm_scene(world: World, user: User, title: str, text: str = SCENE) -> Message:
    dm = await world.standin.dm(user)
    before = len([m for m in dm.messages if m.author is world.standin.bot_user])
    world.llm.script(scene(text))
    await new_story(world, user, dm, title)  # type: ignore[arg-type]
    done = [m for m in dm.messages if m.author is world.standin.bot_user]
    return await wait_scene(world, dm, after=sum(1 for m in done[:before] if "kahani:v1:choose:" in str(
        m.component_items())))  # type: ignore[arg-type]


# --- DMs: the scene as an audio file ------------------------------------------------------


async def test_narrate_in_dms_sends_the_scene_as_mp3_with_the_players_voice_and_speed(world: World) -> None:
    dm = await world.standin.dm(world.alice)
    rec = await world.standin.slash(world.alice, dm, "narrate voice", voice="af_bella(2) + af_sky(1)")
    assert await text_of(world, rec) == msg.NARRATE_VOICE_SAVED.format(voice="af_bella(2)+af_sky(1)")
    rec = await world.standin.slash(world.alice, dm, "narrate speed", speed=1.25)
    assert await text_of(world, rec) == msg.NARRATE_SPEED_SAVED.format(speed=1.25)

    first = await dm_scene(world, world.alice, "Night Sea")
    rec = await world.standin.click(world.alice, first, "Narrate")
    reply = await answer(world, rec)
    [attachment] = reply.attachments
    assert attachment.filename.endswith(".mp3") and attachment.data.startswith(MP3_HEADER)
    body = world.kokoro.speech_requests[-1]
    assert body["voice"] == "af_bella(2)+af_sky(1)" and body["speed"] == 1.25
    assert body["response_format"] == "mp3"
    assert body["input"] == narration_text(SCENE).strip()
    assert "https://" not in body["input"] and "**" not in body["input"] and "Choices" not in body["input"]

    # Another file at once: refused for AUDIO_FILE_COOLDOWN_SECONDS, counted in the database
    # (another process, or this one restarted, refuses it too), and nothing is synthesised.
    world.bot.settings.audio_file_cooldown_seconds = 10
    try:
        asked = len(world.kokoro.speech_requests)
        rec = await world.standin.click(world.alice, first, "Narrate")
        assert (await text_of(world, rec)).startswith(msg.COOLDOWN.split("{")[0])
        assert len(world.kokoro.speech_requests) == asked
        async with world.db.read() as s:
            assert await s.scalar(select(func.count()).select_from(RateEvent).where(RateEvent.kind == "audio")) == 1
    finally:
        world.bot.settings.audio_file_cooldown_seconds = 0


async def test_kokoro_down_gives_a_clear_message_and_the_story_goes_on(world: World) -> None:
    dm = await world.standin.dm(world.alice)
    first = await wait_scene(world, dm)  # type: ignore[arg-type]
    async def files_counted() -> int:
        async with world.db.read() as s:
            return await s.scalar(select(func.count()).select_from(RateEvent).where(RateEvent.kind == "audio")) or 0

    counted = await files_counted()
    await world.kokoro.pause()
    try:
        rec = await world.standin.click(world.alice, first, "Narrate")
        text = await text_of(world, rec)
        assert text == msg.TTS_UNREACHABLE.format(url=world.kokoro.base_url)
    finally:
        await world.kokoro.resume()
    assert await files_counted() == counted  # no file: it does not count against the cooldown
    world.llm.script(scene("You climb the stair. The lamp is cold."))
    await world.standin.click(world.alice, first, "1. Climb the stair")
    second = await wait_scene(world, dm, after=1)  # type: ignore[arg-type]
    assert "The lamp is cold." in second.text
    # Kokoro is back: narration works again.
    rec = await world.standin.click(world.alice, second, "Narrate")
    assert (await answer(world, rec)).attachments


async def test_a_kokoro_error_or_a_slow_kokoro_is_an_ephemeral_message(world: World) -> None:
    dm = await world.standin.dm(world.alice)
    latest = await wait_scene(world, dm, after=1)  # type: ignore[arg-type]
    world.kokoro.fail_next(Fault.HTTP_500)
    rec = await world.standin.click(world.alice, latest, "Narrate")
    assert await text_of(world, rec) == msg.TTS_SERVER_ERROR.format(url=world.kokoro.base_url)
    world.bot.tts.timeouts = type(world.bot.tts.timeouts)(connect=1, read=0.3, file=0.6)
    try:
        world.kokoro.fail_next(Fault.STALL_HEADERS, seconds=3)
        rec = await world.standin.click(world.alice, latest, "Narrate")
        assert (await text_of(world, rec)).startswith(f"Narration unavailable: Kokoro at {world.kokoro.base_url} "
                                                      "did not answer within")
    finally:
        world.bot.tts.timeouts = type(world.bot.tts.timeouts)()


# --- /narrate voice and speed --------------------------------------------------------------


async def test_voice_autocomplete_lists_kokoros_voices_and_continues_mixes(world: World) -> None:
    rec = await world.standin.autocomplete(world.bob, world.general, "narrate voice", option="voice", value="af_b")
    choices = (await rec.wait_response()).data["choices"]
    assert choices[0] == {"name": "af_bella", "value": "af_bella"}
    rec = await world.standin.autocomplete(world.bob, world.general, "narrate voice", option="voice",
                                           value="af_bella(2)+sk")
    assert [c["value"] for c in (await rec.wait_response()).data["choices"]] == ["af_bella(2)+af_sky"]


async def test_an_unknown_voice_or_a_bad_mix_is_refused_and_default_resets(world: World) -> None:
    rec = await world.standin.slash(world.bob, world.general, "narrate voice", voice="xx_nobody")
    assert await text_of(world, rec) == msg.TTS_UNKNOWN_VOICE.format(voice="xx_nobody")
    rec = await world.standin.slash(world.bob, world.general, "narrate voice", voice="af_bella++")
    assert "is not a voice name or mix" in await text_of(world, rec)
    rec = await world.standin.slash(world.bob, world.general, "narrate voice", voice="default")
    assert await text_of(world, rec) == msg.NARRATE_VOICE_DEFAULT.format(voice="af_heart")
    async with world.db.read() as s:
        user = await repo.get_or_create_user(s, world.bob.id, "bob")
        assert (await repo.get_user_settings(s, user.id)).tts_voice is None


async def test_every_voice_option_offers_kokoros_voices_and_refuses_an_unknown_one(world: World) -> None:
    world.llm.script(scene("The lamps are lit."))
    thread = await new_story(world, world.alice, world.general, "Voices Everywhere")  # type: ignore[arg-type]
    await wait_scene(world, thread)  # type: ignore[arg-type]
    for command in ("settings set", "character add", "character edit"):
        rec = await world.standin.autocomplete(world.alice, thread, command, option="voice", value="af_b")  # type: ignore[arg-type]
        assert (await rec.wait_response()).data["choices"][0] == {"name": "af_bella", "value": "af_bella"}, command

    # /settings set: refused, nothing stored; a known voice is stored.
    rec = await world.standin.slash(world.alice, thread, "settings set", voice="xx_nobody")  # type: ignore[arg-type]
    assert await text_of(world, rec) == msg.TTS_UNKNOWN_VOICE.format(voice="xx_nobody")
    rec = await world.standin.slash(world.alice, thread, "settings set", voice="af_bella")  # type: ignore[arg-type]
    assert (await text_of(world, rec)).startswith(msg.SETTINGS_SAVED)
    async with world.db.read() as s:
        user = await repo.get_or_create_user(s, world.alice.id, "alice")
        assert (await repo.get_user_settings(s, user.id)).tts_voice == "af_bella"

    # /character add: refused before the form opens; a known voice goes with the character.
    modals = len(world.standin.modals_for(world.alice))
    rec = await world.standin.slash(world.alice, thread, "character add", voice="xx_nobody")  # type: ignore[arg-type]
    assert await text_of(world, rec) == msg.TTS_UNKNOWN_VOICE.format(voice="xx_nobody")
    assert len(world.standin.modals_for(world.alice)) == modals
    rec = await world.standin.slash(world.alice, thread, "character add", voice="am_adam")  # type: ignore[arg-type]
    assert (await rec.wait_response()).type == 9
    form = world.standin.modals_for(world.alice)[-1]
    await text_of(world, await world.standin.submit_modal(world.alice, form, {"name": "Mara"}))
    async with world.db.read() as s:
        story = next(st for st in await repo.list_stories(s) if st.title == "Voices Everywhere")
        assert [(c.name, c.voice) for c in await repo.list_characters(s, story.id)] == [("Mara", "am_adam")]


# --- voice channels ---------------------------------------------------------------------------


async def test_narrate_in_a_server_without_a_voice_connection_says_to_join_first(world: World) -> None:
    world.llm.script(scene("The tavern falls silent."))
    thread = await new_story(world, world.alice, world.general, "Tavern Tales")  # type: ignore[arg-type]
    first = await wait_scene(world, thread)  # type: ignore[arg-type]
    rec = await world.standin.click(world.alice, first, "Narrate")
    assert await text_of(world, rec) == msg.NARRATE_NOT_CONNECTED


async def test_join_needs_the_caller_in_a_voice_channel(world: World) -> None:
    saved = world.cog.voice_problem
    world.cog.voice_problem = None  # as if voice worked here (without libopus the cog says so first)
    try:
        rec = await world.standin.slash(world.alice, world.general, "narrate join")
        assert await text_of(world, rec) == msg.NARRATE_NOT_IN_VOICE
    finally:
        world.cog.voice_problem = saved


async def test_join_says_clearly_when_voice_is_unavailable(world: World) -> None:
    await world.standin.join_voice(world.alice, world.lounge)
    saved = world.cog.voice_problem
    world.cog.voice_problem = "libopus is missing (Debian: apt-get install libopus0)"
    try:
        rec = await world.standin.slash(world.alice, world.general, "narrate join")
        assert await text_of(world, rec) == msg.NARRATE_VOICE_UNAVAILABLE.format(problem=world.cog.voice_problem)
    finally:
        world.cog.voice_problem = saved
        await world.standin.leave_voice(world.alice, world.guild)


async def test_a_voice_server_that_cannot_be_reached_is_a_clear_failure_and_nothing_leaks(world: World,
                                                                                          closed_port: int) -> None:
    if world.cog.voice_problem:
        pytest.skip(f"SKIPPED LOUDLY: voice unavailable here: {world.cog.voice_problem}")
    await world.standin.join_voice(world.alice, world.lounge)
    world.standin.voice_endpoint = f"127.0.0.1:{closed_port}"  # nothing listens: the voice websocket is refused
    try:
        rec = await world.standin.slash(world.alice, world.general, "narrate join")
        assert await text_of(world, rec) == msg.NARRATE_CONNECT_FAILED.format(channel=f"<#{world.lounge.id}>")
    finally:
        world.standin.voice_endpoint = None
        await world.standin.leave_voice(world.alice, world.guild)
    assert world.cog.sessions == {}
    guild = world.bot.get_guild(world.guild.id)
    assert guild is not None and guild.voice_client is None


async def test_stop_leave_and_skip_without_a_narration_say_so(world: World) -> None:
    for command, expected in (("narrate stop", msg.NARRATE_NOTHING_PLAYING),
                              ("narrate skip", msg.NARRATE_NOTHING_PLAYING),
                              ("narrate leave", msg.NARRATE_NOT_CONNECTED)):
        rec = await world.standin.slash(world.alice, world.general, command)
        assert await text_of(world, rec) == expected


# --- narrating into a voice connection ----------------------------------------------------
# A stand-in for discord.VoiceClient (its play/stop/is_playing and a player thread that
# reads the source every 20 ms, 10× faster here): the voice *server* is not faked, so
# this covers everything from the Narrate button to the frames the player would encode.


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition the player thread changes (the stand-in is not told about it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


class FakeVoice:
    def __init__(self, channel: object) -> None:
        self.channel = channel
        self.player: Player | None = None
        self.players: list[Player] = []
        self.connected = True
        self.play_options: dict[str, object] = {}

    def is_connected(self) -> bool:
        return self.connected

    def is_playing(self) -> bool:
        return self.player is not None and not self.player.finished.is_set()

    def is_paused(self) -> bool:
        return False

    def play(self, source: object, *, after: object = None, **options: object) -> None:
        assert not self.is_playing(), "discord.py raises 'Already playing audio.'"
        self.play_options = options
        self.player = Player(source)  # type: ignore[arg-type]
        self.players.append(self.player)
        self.player.start()

    def stop(self) -> None:
        if self.player is not None:
            self.player.source.stop()

    async def disconnect(self, *, force: bool = False) -> None:
        self.connected = False
        self.stop()


async def test_narrate_reads_the_scene_into_the_voice_connection_with_skip_and_stop(world: World) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "Tavern Tales")
    first = await wait_scene(world, thread)  # type: ignore[arg-type]
    voice = world.in_lounge()
    try:
        world.kokoro.realtime_factor = 200
        rec = await world.standin.click(world.alice, first, "Narrate")
        assert await text_of(world, rec) == msg.NARRATE_STARTED.format(channel=f"<#{world.lounge.id}>")
        assert voice.play_options == {"signal_type": "voice", "bitrate": 64}
        await voice.players[0].done()
        played = [f for f in voice.players[0].frames if f != SILENCE]
        assert len(played) > 50 and all(len(f) == FRAME_BYTES for f in voice.players[0].frames)
        job = world.cog.sessions[world.guild.id].job
        assert job is not None and job.source.stats.underruns == 0
        assert " ".join(job.chunks_read) == " ".join(c.strip() for c in chunk_text(
            "The tavern falls silent.") if c.strip())

        # A long scene: skip, then stop, mid-narration.
        world.kokoro.realtime_factor = 20
        await world.cog.play(world.guild.id, voice=None, speed=1.0)
        job = world.cog.sessions[world.guild.id].job
        assert job is not None
        job.feed(" ".join([SCENE] * 4))
        job.finish()
        await until(lambda: job.source.stats.audio_frames > 10)
        # Someone who did not start it, is not listening and moderates nothing may not stop it.
        for command in ("narrate skip", "narrate stop", "narrate leave"):
            rec = await world.standin.slash(world.bob, world.general, command)
            assert await text_of(world, rec) == msg.NARRATE_NOT_YOURS
        assert job.running and job.source.playing_chunk == 0
        rec = await world.standin.slash(world.alice, world.general, "narrate skip")
        assert await text_of(world, rec) == msg.NARRATE_SKIPPED
        await until(lambda: job.source.playing_chunk >= 1)
        rec = await world.standin.slash(world.alice, world.general, "narrate stop")
        assert await text_of(world, rec) == msg.NARRATE_STOPPED
        await voice.players[-1].done(timeout=2)
        assert not job.running
    finally:
        world.kokoro.realtime_factor = None
        world.cog.sessions.pop(world.guild.id, None)


async def test_the_bot_disconnected_from_voice_stops_the_narration(world: World) -> None:
    voice = world.in_lounge()
    world.kokoro.realtime_factor = 5
    try:
        job = await world.cog.play(world.guild.id, voice=None, speed=1.0)
        job.feed(" ".join([SCENE] * 4))
        job.finish()
        await until(lambda: job.source.stats.audio_frames > 0)
        # Kicked from the channel: Discord sends the bot's voice state without a channel.
        world.standin._set_voice_state(world.guild, world.standin.bot_user, None, "gone")
        # The cog's state, which the stand-in is not told about: polled, not event-driven.
        await until(lambda: world.guild.id not in world.cog.sessions)
        await voice.players[-1].done(timeout=2)
        assert not job.running and not voice.connected
    finally:
        world.kokoro.realtime_factor = None
        world.cog.sessions.pop(world.guild.id, None)


async def test_auto_narrate_reads_the_next_scene_while_it_is_written(world: World) -> None:
    from core import repository as repo

    thread = next(c for c in world.standin.channels.values() if c.name == "Tavern Tales")
    scenes = [m for m in thread.messages if "kahani:v1:choose:" in str(m.component_items())]
    last = scenes[-1]
    async with world.db.transaction() as s:
        alice = await repo.get_or_create_user(s, world.alice.id, world.alice.name)
        await repo.update_user_settings(s, alice.id, auto_narrate=True, tts_voice="af_sky", tts_speed=1.25)
    voice = world.in_lounge()
    world.kokoro.realtime_factor = 200
    speech_before = len(world.kokoro.speech_requests)
    try:
        world.llm.script(scene("The bard strikes a chord. Every head turns."))
        await (await world.standin.click(world.alice, last, "1. Climb the stair")).wait_response()
        await until(lambda: voice.players and voice.players[-1].finished.is_set(), timeout=10)
        asked = world.kokoro.speech_requests[speech_before:]
        assert asked and all(r["voice"] == "af_sky" and r["speed"] == 1.25 for r in asked)
        assert "The bard strikes a chord." in " ".join(r["input"] for r in asked)
        assert [f for f in voice.players[-1].frames if f != SILENCE]
    finally:
        world.kokoro.realtime_factor = None
        world.cog.sessions.pop(world.guild.id, None)
        async with world.db.transaction() as s:
            await repo.update_user_settings(s, alice.id, auto_narrate=False)


# --- a group story's own narration voice ----------------------------------------------------


async def narrate_into_fake_voice(world: World, user: User, scene_message: Message) -> list[dict[str, object]]:
    """``user`` presses Narrate on ``scene_message`` with the bot in a FakeVoice channel;
    the speech requests it made, once the narration played out."""
    voice = world.in_lounge()
    before = len(world.kokoro.speech_requests)
    world.kokoro.realtime_factor = 200
    try:
        rec = await world.standin.click(user, scene_message, "Narrate")
        assert await text_of(world, rec) == msg.NARRATE_STARTED.format(channel=f"<#{world.lounge.id}>")
        await voice.players[-1].done()
    finally:
        world.kokoro.realtime_factor = None
        world.cog.sessions.pop(world.guild.id, None)
    asked = world.kokoro.speech_requests[before:]
    assert asked
    return asked


async def test_a_group_story_is_read_with_its_own_voice_whoever_presses_narrate(world: World) -> None:
    world.llm.script(scene("Lanterns sway over the harbour. A bell rings from the fog."))
    thread = await new_story(world, world.alice, world.general, "Harbour Lights", mode="group")  # type: ignore[arg-type]
    first = await wait_scene(world, thread)  # type: ignore[arg-type]
    rec = await world.standin.slash(world.bob, world.general, "narrate voice", voice="af_nicole")
    assert await text_of(world, rec) == msg.NARRATE_VOICE_SAVED.format(voice="af_nicole")
    rec = await world.standin.slash(world.bob, world.general, "narrate speed", speed=0.75)
    assert await text_of(world, rec) == msg.NARRATE_SPEED_SAVED.format(speed=0.75)

    # Only the story's owner (or Manage Threads) sets it.
    rec = await world.standin.slash(world.bob, thread, "narrate voice", voice="am_adam", scope="story")
    assert await text_of(world, rec) == msg.NOT_YOUR_STORY_TO_MANAGE
    rec = await world.standin.slash(world.alice, thread, "narrate voice", voice="am_adam(2)+am_michael",
                                    scope="story")
    assert await text_of(world, rec) == msg.NARRATE_STORY_VOICE_SAVED.format(title="Harbour Lights",
                                                                            voice="am_adam(2)+am_michael")
    rec = await world.standin.slash(world.alice, thread, "narrate voice", voice="xx_nobody", scope="story")
    assert await text_of(world, rec) == msg.TTS_UNKNOWN_VOICE.format(voice="xx_nobody")
    rec = await world.standin.slash(world.alice, thread, "narrate speed", speed=1.5, scope="story")
    assert await text_of(world, rec) == msg.NARRATE_STORY_SPEED_SAVED.format(title="Harbour Lights", speed=1.5)

    # Bob presses Narrate: the story's voice and speed, not his.
    asked = await narrate_into_fake_voice(world, world.bob, first)
    assert {(r["voice"], r["speed"]) for r in asked} == {("am_adam(2)+am_michael", 1.5)}

    # Only the voice set: the speed is the narrator's own.
    async with world.db.transaction() as s:
        story = await repo.story_for_thread(s, thread.id)
        assert story is not None and story.settings["tts_voice"] == "am_adam(2)+am_michael"
        story_id = story.id
    rec = await world.standin.slash(world.alice, thread, "narrate voice", voice="default", scope="story")
    assert await text_of(world, rec) == msg.NARRATE_STORY_VOICE_DEFAULT.format(title="Harbour Lights")
    rec = await world.standin.slash(world.alice, world.general, "narrate voice", voice="bf_emma", story=story_id)
    assert await text_of(world, rec) == msg.NARRATE_STORY_VOICE_SAVED.format(title="Harbour Lights", voice="bf_emma")
    asked = await narrate_into_fake_voice(world, world.bob, first)
    assert {(r["voice"], r["speed"]) for r in asked} == {("bf_emma", 0.75)}

    # Reset: everyone's own voice and speed again.
    rec = await world.standin.slash(world.alice, thread, "narrate voice", voice="default", scope="story")
    assert await text_of(world, rec) == msg.NARRATE_STORY_VOICE_DEFAULT.format(title="Harbour Lights")
    asked = await narrate_into_fake_voice(world, world.bob, first)
    assert {(r["voice"], r["speed"]) for r in asked} == {("af_nicole", 0.75)}
    async with world.db.read() as s:
        story = await repo.get_story(s, story_id)
        assert "tts_voice" not in story.settings and "tts_speed" not in story.settings


async def test_a_solo_story_has_no_voice_of_its_own(world: World) -> None:
    dm = await world.standin.dm(world.alice)
    for command, value in (("narrate voice", {"voice": "am_adam"}), ("narrate speed", {"speed": 1.5})):
        rec = await world.standin.slash(world.alice, dm, command, scope="story", **value)
        assert await text_of(world, rec) == msg.NARRATE_STORY_SOLO


async def test_auto_narrate_reads_a_group_story_with_its_own_voice(world: World) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "Harbour Lights")
    async with world.db.transaction() as s:
        story = await repo.story_for_thread(s, thread.id)
        assert story is not None
        story.settings = {**story.settings, "tts_voice": "bm_george", "tts_speed": 1.25}
        alice = await repo.get_or_create_user(s, world.alice.id, world.alice.name)
        await repo.update_user_settings(s, alice.id, auto_narrate=True)
    voice = world.in_lounge()
    world.kokoro.realtime_factor = 200
    before = len(world.kokoro.speech_requests)
    try:
        world.llm.script(scene("The fog lifts. A ship's lamp blinks twice."))
        latest = await wait_scene(world, thread)  # type: ignore[arg-type]
        await (await world.standin.click(world.alice, latest, "1. Climb the stair")).wait_response()
        await (await world.standin.click(world.alice, latest, "Close vote")).wait_response()  # a table of one
        await until(lambda: voice.players and voice.players[-1].finished.is_set(), timeout=10)
        asked = world.kokoro.speech_requests[before:]
        assert asked and {(r["voice"], r["speed"]) for r in asked} == {("bm_george", 1.25)}
    finally:
        world.kokoro.realtime_factor = None
        world.cog.sessions.pop(world.guild.id, None)
        async with world.db.transaction() as s:
            await repo.update_user_settings(s, alice.id, auto_narrate=False)


# --- character voices ------------------------------------------------------------------------


async def test_a_characters_quoted_line_is_read_with_the_characters_voice(world: World) -> None:
    world.llm.script(scene('Fog rolls in. Mara whispered, "Someone is on the pier." "Only the tide," said Tom.'))
    thread = await new_story(world, world.alice, world.general, "Pier Fog", mode="group")  # type: ignore[arg-type]
    first = await wait_scene(world, thread)  # type: ignore[arg-type]
    async with world.db.transaction() as s:
        story = await repo.story_for_thread(s, thread.id)
        assert story is not None
        await repo.add_character(s, story.id, "Mara Voss", voice="bf_emma")
        await repo.add_character(s, story.id, "Tom")  # no voice of his own: the narrator's
        alice = await repo.get_or_create_user(s, world.alice.id, world.alice.name)
        settings = await repo.get_user_settings(s, alice.id)
        saved = settings.tts_voice, settings.tts_speed
        await repo.update_user_settings(s, alice.id, tts_voice="am_michael", tts_speed=1.0)
    try:
        asked = await narrate_into_fake_voice(world, world.alice, first)
    finally:
        async with world.db.transaction() as s:
            await repo.update_user_settings(s, alice.id, tts_voice=saved[0], tts_speed=saved[1])
    assert [(r["input"], r["voice"]) for r in asked] == [
        ("Fog rolls in.", "am_michael"),
        ("Mara whispered,", "am_michael"),
        ('"Someone is on the pier."', "bf_emma"),
        ('"Only the tide," said Tom.', "am_michael"),
    ]
