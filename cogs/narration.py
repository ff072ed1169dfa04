"""Narration: ``/narrate join|leave|stop|skip|voice|speed`` and the **Narrate** button.

In a server the bot joins the caller's voice channel (one voice connection per guild,
so one narration per guild: another voice channel of the same server is refused
clearly) and reads scenes there: Kokoro's PCM → :mod:`bot.ui.audio` → discord.py's player.
In DMs, where there is no voice channel, Narrate sends the scene as an MP3 attachment.
Voice and speed are those of whoever starts the narration (``/narrate voice|speed``
write them, as ``/settings set`` does); a group story may have its own, which come first
(``/narrate voice|speed scope:story``, stored in ``Story.settings``; its owner or a member
with Manage Threads sets them). In a voice channel, the story's characters that have a
voice (``/character edit … voice:``) read their own quoted lines (core.narration's
``dialogue_spans`` says whose a quote is); a DM file is read with one voice.

Kokoro down, slow or failing: a clear ephemeral message; the story goes on and the next
narration tries again (nothing remembers that Kokoro was down, so it works as soon as
Kokoro is back). The bot moved to another channel, kicked, its channel deleted or left
alone: narration stops (the audio source ends, the synthesis task is cancelled) and the
connection is closed.

Voice needs libopus (Debian ``libopus0``), PyNaCl and ``davey``; what is missing is
logged at start-up and ``/narrate join`` says it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes.util
import importlib.util
import io
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import story_of_variant
from bot.errors import send_ephemeral
from bot.types import Interaction
from bot.ui.audio import NarrationJob
from bot.ui.common import (
    NO_PINGS,
    STORY_OPTION_HELP,
    NotAllowed,
    StoryOption,
    autocomplete_story,
    caller,
    story_to_manage,
    within_the_deadline,
)
from bot.ui.voices import DEFERRED_CHECK_SECONDS, autocomplete_voice, checked_voice_name
from cogs.settings import (
    DEFAULT_VOICE_WORD,
    SPEED_MAX,
    SPEED_MIN,
    VOICE_MAX,
    changes_from,
)
from core import cooldowns
from core import messages as msg
from core import repository as repo
from core.access import Need
from core.errors import KahaniError
from core.models import StoryMode, utcnow
from core.narration import (
    STORY_SPEED_KEY,
    STORY_VOICE_KEY,
    is_speakable,
    narration_text,
    narration_voice,
    with_story_voice,
)
from core.tts import DEFAULT_VOICE, TTSError

if TYPE_CHECKING:
    from bot.app import KahaniBot

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0  # seconds to join a voice channel
FILE_LIMIT = 8 * 1024 * 1024  # a DM narration file: at most this, or the DM's own limit
HEALTH_SECONDS = 5.0
# /narrate voice|speed: the user's own setting, or a group story's (read by whoever narrates it).
SCOPE_ME, SCOPE_STORY = "me", "story"
SCOPES = [app_commands.Choice(name="me: my own voice, for every story I narrate", value=SCOPE_ME),
          app_commands.Choice(name="story: this group story's voice, whoever narrates it", value=SCOPE_STORY)]
SCOPE_HELP = "Your own setting (default), or this group story's (its owner or Manage Threads)"


def voice_problem() -> str | None:
    """Why voice cannot work in this installation, or None when it can."""
    missing = []
    if not discord.voice_client.has_nacl:
        missing.append("PyNaCl is not installed")
    if importlib.util.find_spec("davey") is None:
        missing.append("the davey package (Discord's DAVE voice encryption) is not installed")
    if not discord.opus.is_loaded():
        try:
            discord.opus.load_opus(ctypes.util.find_library("opus") or "libopus.so.0")
        except (OSError, TypeError):
            missing.append("libopus is missing (Debian: apt-get install libopus0)")
    return "; ".join(missing) or None


def _torn_down(voice: Any) -> bool:
    """Whether discord.py is already disconnecting this voice client by itself (kicked,
    its channel deleted: Discord's VOICE_STATE_UPDATE without a channel). Disconnecting
    it again would wait the connect timeout (15 s) for a confirmation that never reaches
    it; stopping the player is all that is left to do."""
    state = getattr(getattr(voice, "_connection", None), "state", None)
    return getattr(state, "name", None) == "disconnected"


def _end_voice_poller(voice: Any) -> None:
    """Cancel the voice websocket's poller task of a disconnected voice client.

    discord.py 2.7 race: when Discord's close code 4014 (kicked, moved, channel deleted)
    is read before the VOICE_STATE_UPDATE that says why, the poller waits to reconnect
    (``_potential_reconnect``); if the disconnect's state change comes before that wait
    has started, it sleeps until the connect timeout (15 s) and only then ends. Nothing
    will use that connection again, so it is cancelled here (as discord.py's own
    ``soft_disconnect`` does)."""
    runner = getattr(getattr(voice, "_connection", None), "_runner", None)
    if isinstance(runner, asyncio.Task) and not runner.done() and runner is not asyncio.current_task():
        runner.cancel()


JOBS_KEPT = 20  # narrations a session remembers (the rest is pruned as it plays on)


@dataclass
class GuildNarration:
    """The voice connection of one guild and what it is reading."""

    voice: discord.VoiceClient
    started_by: int = 0  # the Discord user who ran /narrate join
    job: NarrationJob | None = None
    jobs: list[NarrationJob] = field(default_factory=list)  # the last few, for tests and the log


class Narration(commands.GroupCog, group_name="narrate", group_description="Read scenes aloud"):
    """Voice narration and scene audio."""

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot
        self.tts = bot.tts
        self.db = bot.db
        self.sessions: dict[int, GuildNarration] = {}
        self._files_for: set[int] = set()  # users whose scene audio file is being made (one each)
        self.voice_problem: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def cog_load(self) -> None:
        self.bot.player.narrator = self  # auto-narration (bot/player.py)
        self.voice_problem = voice_problem()
        if self.voice_problem:
            log.warning("voice narration is unavailable: %s (DM narration files still work)", self.voice_problem)
        else:
            log.info("voice narration is available (libopus, PyNaCl and davey found)")
        self._spawn(self._check_kokoro())

    async def cog_unload(self) -> None:
        self.bot.player.narrator = None
        for guild_id in list(self.sessions):
            await self._close_session(guild_id)
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_kokoro(self) -> None:
        """Say at start-up, in the log, whether narration's TTS server answers."""
        try:
            async with asyncio.timeout(HEALTH_SECONDS):
                voices = await self.tts.voices()
        except (TTSError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, TTSError) else f"no answer within {HEALTH_SECONDS:g} s"
            log.warning("narration is not usable yet: %s", reason)
        else:
            log.info("narration: Kokoro at %s with %d voices", self.tts.base_url, len(voices))

    # --- /narrate join | leave | stop | skip ----------------------------------------------

    @app_commands.command(name="join", description="Join your voice channel and read scenes there")
    @app_commands.guild_only()
    async def join(self, interaction: Interaction) -> None:
        if self.voice_problem:
            raise KahaniError(msg.NARRATE_VOICE_UNAVAILABLE.format(problem=self.voice_problem))
        guild = interaction.guild
        assert guild is not None
        state = getattr(interaction.user, "voice", None)
        target = state.channel if state is not None else None
        if target is None:
            raise KahaniError(msg.NARRATE_NOT_IN_VOICE)
        current = guild.voice_client
        if current is not None and current.channel is not None:
            # A guild's voice client is in one of its voice or stage channels.
            joined = cast("discord.VoiceChannel | discord.StageChannel", current.channel)
            if joined.id == target.id:
                raise KahaniError(msg.NARRATE_ALREADY_HERE.format(channel=target.mention))
            raise KahaniError(msg.NARRATE_OTHER_CHANNEL.format(channel=joined.mention))
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            voice = await target.connect(timeout=CONNECT_TIMEOUT, reconnect=False, self_deaf=True)
        except (TimeoutError, discord.ClientException, discord.opus.OpusNotLoaded, OSError, RuntimeError) as exc:
            log.warning("could not join voice channel %s in guild %s: %r", target.id, guild.id, exc)
            with contextlib.suppress(Exception):
                if guild.voice_client is not None:
                    await guild.voice_client.disconnect(force=True)
            raise KahaniError(msg.NARRATE_CONNECT_FAILED.format(channel=target.mention)) from exc
        assert isinstance(voice, discord.VoiceClient)
        self.sessions[guild.id] = GuildNarration(voice, started_by=interaction.user.id)
        log.info("joined voice channel %s in guild %s", target.id, guild.id)
        await interaction.followup.send(msg.NARRATE_JOINED.format(channel=target.mention), ephemeral=True,
                                        allowed_mentions=NO_PINGS)

    @app_commands.command(name="leave", description="Stop narrating and leave the voice channel")
    @app_commands.guild_only()
    async def leave(self, interaction: Interaction) -> None:
        guild = interaction.guild
        assert guild is not None
        current = guild.voice_client
        if current is None and guild.id not in self.sessions:
            raise KahaniError(msg.NARRATE_NOT_CONNECTED)
        self._check_control(interaction, self.sessions.get(guild.id))
        channel = getattr(current, "channel", None)
        await self._close_session(guild.id)
        await send_ephemeral(interaction, msg.NARRATE_LEFT.format(channel=getattr(channel, "mention", "voice")))

    @app_commands.command(name="stop", description="Stop reading the current scene")
    @app_commands.guild_only()
    async def stop(self, interaction: Interaction) -> None:
        session, job = self._playing(interaction)
        self._check_control(interaction, session)
        await job.stop()
        session.voice.stop()
        await send_ephemeral(interaction, msg.NARRATE_STOPPED)

    @app_commands.command(name="skip", description="Skip to the next part of the scene")
    @app_commands.guild_only()
    async def skip(self, interaction: Interaction) -> None:
        session, job = self._playing(interaction)
        self._check_control(interaction, session)
        job.skip()
        await send_ephemeral(interaction, msg.NARRATE_SKIPPED)

    @staticmethod
    def _check_control(interaction: Interaction, session: GuildNarration | None) -> None:
        """Stop, skip and leave are for whoever started the narration, those listening
        in its voice channel, and moderators (Move Members): not for anyone in the server."""
        if session is None:
            return
        user = interaction.user
        listening = getattr(session.voice.channel, "members", None) or []
        perms = interaction.permissions
        if user.id == session.started_by or any(m.id == user.id for m in listening) or perms.move_members:
            return
        raise NotAllowed(msg.NARRATE_NOT_YOURS)

    def _playing(self, interaction: Interaction) -> tuple[GuildNarration, NarrationJob]:
        """The guild's session and the narration it is playing (else a KahaniError)."""
        session = self.sessions.get(interaction.guild_id or 0)
        if session is None or session.job is None or session.job.source.finished:
            raise KahaniError(msg.NARRATE_NOTHING_PLAYING)
        return session, session.job

    # --- /narrate voice | speed -------------------------------------------------------------

    @app_commands.command(name="voice",
                          description="Your narration voice, or a group story's (a Kokoro voice, or a mix)")
    @app_commands.describe(voice="e.g. af_bella, or a mix such as af_bella(2)+af_sky(1); "
                                 f"\u201c{DEFAULT_VOICE_WORD}\u201d for the default",
                           scope=SCOPE_HELP, story=STORY_OPTION_HELP)
    @app_commands.choices(scope=SCOPES)
    @app_commands.autocomplete(voice=autocomplete_voice)  # one call per choice type (str, int)
    @app_commands.autocomplete(story=autocomplete_story)
    async def voice(self, interaction: Interaction, voice: app_commands.Range[str, 1, VOICE_MAX],
                    scope: str = SCOPE_ME, story: StoryOption | None = None) -> None:
        chosen = changes_from(None, voice, None, None)["tts_voice"]
        for_story = scope == SCOPE_STORY or story is not None
        if for_story:  # may they? (before asking Kokoro)
            async with self.db.transaction() as s:  # may create the user's row
                await self._story_for_voice(s, interaction, story)
        checked = True
        if chosen is not None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            chosen, checked = await checked_voice_name(self.tts, chosen, within=DEFERRED_CHECK_SECONDS)
        if for_story:
            changes = {STORY_VOICE_KEY: chosen} if chosen is not None else {STORY_VOICE_KEY: None,
                                                                            STORY_SPEED_KEY: None}
            title = await self._change_story_voice(interaction, story, changes)
            if chosen is None:
                text = msg.NARRATE_STORY_VOICE_DEFAULT.format(title=title)
            else:
                text = (msg.NARRATE_STORY_VOICE_SAVED if checked
                        else msg.NARRATE_STORY_VOICE_SAVED_UNCHECKED).format(title=title, voice=chosen)
        else:
            async with self.db.transaction() as session:
                who = await caller(session, interaction)
                await repo.update_user_settings(session, who.user.id, tts_voice=chosen)
            if chosen is None:
                text = msg.NARRATE_VOICE_DEFAULT.format(voice=DEFAULT_VOICE)
            else:
                text = (msg.NARRATE_VOICE_SAVED if checked else msg.NARRATE_VOICE_SAVED_UNCHECKED).format(voice=chosen)
        await send_ephemeral(interaction, text)

    @app_commands.command(name="speed", description="Your narration speed, or a group story's: 0.5 to 2.0")
    @app_commands.describe(speed="0.5 (slow) to 2.0 (fast); 1 is Kokoro's normal pace", scope=SCOPE_HELP,
                           story=STORY_OPTION_HELP)
    @app_commands.choices(scope=SCOPES)
    @app_commands.autocomplete(story=autocomplete_story)
    async def speed(self, interaction: Interaction,
                    speed: app_commands.Range[float, SPEED_MIN, SPEED_MAX],
                    scope: str = SCOPE_ME, story: StoryOption | None = None) -> None:
        changes = changes_from(None, None, speed, None)
        if scope == SCOPE_STORY or story is not None:
            title = await self._change_story_voice(interaction, story, {STORY_SPEED_KEY: changes["tts_speed"]})
            await send_ephemeral(interaction, msg.NARRATE_STORY_SPEED_SAVED.format(title=title,
                                                                                   speed=changes["tts_speed"]))
            return
        async with self.db.transaction() as session:
            who = await caller(session, interaction)
            await repo.update_user_settings(session, who.user.id, **changes)
        await send_ephemeral(interaction, msg.NARRATE_SPEED_SAVED.format(speed=changes["tts_speed"]))

    @staticmethod
    async def _story_for_voice(session: Any, interaction: Interaction, story_id: int | None) -> Any:
        """The group story whose narration voice the user may set (its owner, or a member
        with Manage Threads); else a KahaniError."""
        story, _ = await story_to_manage(session, interaction, story_id)
        if story.mode != StoryMode.GROUP.value:
            raise KahaniError(msg.NARRATE_STORY_SOLO)
        return story

    async def _change_story_voice(self, interaction: Interaction, story_id: int | None,
                                  changes: dict[str, Any]) -> str:
        """Write a group story's narration voice/speed (re-checking who may); its title."""
        async with self.db.transaction() as session:
            story = await self._story_for_voice(session, interaction, story_id)
            story.settings = with_story_voice(story.settings, **changes)
            return story.title

    # --- the Narrate button -------------------------------------------------------------------

    async def narrate_button(self, interaction: Interaction, variant_id: int) -> None:
        """Read a scene: into the guild's voice channel, or, in DMs, as an audio file."""
        async def read() -> tuple[str | None, float, int, str, int]:
            async with self.db.transaction() as s:
                variant = await repo.get_variant(s, variant_id)
                story, who = await story_of_variant(s, interaction, variant_id, Need.PLAY)
                settings = await repo.get_user_settings(s, who.user.id)
                # A group story's own voice and speed first, then the clicker's (solo: theirs).
                voice, speed = narration_voice(story.mode, story.settings, settings.tts_voice, settings.tts_speed)
                return voice, speed, variant.scene_id, narration_text(variant.content), story.id

        voice, speed, scene_id, text, story_id = await within_the_deadline(interaction, read())
        if not is_speakable(text):
            raise KahaniError(msg.NARRATE_EMPTY)
        if interaction.guild is None:
            await self._send_file(interaction, text, voice, speed, f"scene-{scene_id}.mp3")
            return
        session = self.sessions.get(interaction.guild.id)
        if session is None or not session.voice.is_connected():
            raise KahaniError(msg.NARRATE_NOT_CONNECTED)

        answered = asyncio.Event()

        async def failed(error: TTSError) -> None:
            # Kokoro refusing the connection fails the job at once: say it after "started".
            await answered.wait()
            await send_ephemeral(interaction, msg.NARRATE_FAILED_MIDWAY.format(reason=error.message))

        job = await self.play(interaction.guild.id, voice=voice, speed=speed, on_error=failed, story_id=story_id)
        job.feed(text)
        job.finish()
        channel = session.voice.channel
        try:
            await send_ephemeral(interaction, msg.NARRATE_STARTED.format(channel=getattr(channel, "mention", "voice")))
        finally:
            answered.set()

    async def _send_file(self, interaction: Interaction, text: str, voice: str | None,
                         speed: float, filename: str) -> None:
        user_id = interaction.user.id
        if user_id in self._files_for:  # one audio file at a time per player in this process…
            raise KahaniError(msg.NARRATE_FILE_BUSY)
        self._files_for.add(user_id)
        try:
            if not interaction.response.is_done():
                await interaction.response.defer(ephemeral=True, thinking=True)
            taken = utcnow()
            async with self.db.transaction() as s:  # …and a cooldown in the database, for every process
                who = await caller(s, interaction)
                await cooldowns.take(s, "audio", who.user.id, now=taken,
                                     every=timedelta(seconds=self.bot.settings.audio_file_cooldown_seconds))
            limit = min(getattr(interaction, "filesize_limit", FILE_LIMIT) or FILE_LIMIT, FILE_LIMIT)
            try:
                audio = await self.tts.synthesize(text.strip(), voice=voice, speed=speed, max_bytes=limit)
            except BaseException:  # no file: the player may ask again at once
                async with self.db.transaction() as s:
                    await cooldowns.give_back(s, "audio", who.user.id, at=taken)
                raise
        finally:
            self._files_for.discard(user_id)
        await interaction.followup.send(msg.NARRATE_FILE, file=discord.File(io.BytesIO(audio), filename=filename),
                                        ephemeral=True)

    # --- playing -----------------------------------------------------------------------------

    async def play(self, guild_id: int, *, voice: str | None, speed: float,
                   on_error: Any = None, story_id: int | None = None) -> NarrationJob:
        """Start a narration in the guild's voice channel (replacing the one playing) and
        return its job: ``feed()`` it scene text — also while the scene is being written
        (auto-narrate) — and ``finish()`` it when the scene is complete. With the
        ``story_id``, its characters that have a voice read their quoted lines."""
        session = self.sessions.get(guild_id)
        if session is None or not session.voice.is_connected():
            raise KahaniError(msg.NARRATE_NOT_CONNECTED)
        characters = await self.character_voices(story_id) if story_id is not None else {}
        if session.job is not None:
            await session.job.stop()
        if session.voice.is_playing() or session.voice.is_paused():
            session.voice.stop()
        job = NarrationJob(self.tts, voice=voice, speed=speed, on_error=on_error, voices=characters)
        session.job = job
        session.jobs.append(job)
        del session.jobs[:-JOBS_KEPT]
        loop = asyncio.get_running_loop()

        def after(error: Exception | None) -> None:  # on the player thread
            if error is not None:
                log.error("voice playback failed in guild %s", guild_id, exc_info=error)
            loop.call_soon_threadsafe(self._log_finished, guild_id, job)

        session.voice.play(job.source, after=after, signal_type="voice", bitrate=64)
        job.start()
        return job

    async def character_voices(self, story_id: int) -> dict[str, str | None]:
        """The story's characters and their voices (None: the narrator's), once per
        narration; empty when none has a voice (nothing to look for in the text)."""
        async with self.db.read() as s:
            characters = await repo.list_characters(s, story_id)
        voices = {c.name: (c.voice or "").strip() or None for c in characters}
        return voices if any(voices.values()) else {}

    def _log_finished(self, guild_id: int, job: NarrationJob) -> None:
        stats = job.source.stats
        log.info("narration in guild %s ended: %d frames, %d underruns, %d silence frames, chunks %d",
                 guild_id, stats.audio_frames, stats.underruns, stats.silence_frames, len(job.chunks_read))
        self.bot.dispatch("kahani_narration_finished", guild_id, job)  # metrics listen

    def narrating(self, guild_id: int) -> bool:
        """Whether the bot is in a voice channel of this guild (auto-narrate asks this)."""
        session = self.sessions.get(guild_id)
        return session is not None and session.voice.is_connected()

    async def _close_session(self, guild_id: int) -> None:
        session = self.sessions.pop(guild_id, None)
        if session is not None and session.job is not None:
            await session.job.stop()
        guild = self.bot.get_guild(guild_id)
        registered = guild.voice_client if guild is not None else None
        for voice in {registered, session.voice if session is not None else None} - {None}:
            if _torn_down(voice):
                voice.stop()  # type: ignore[attr-defined]
            else:
                with contextlib.suppress(Exception):
                    await voice.disconnect(force=True)
            _end_voice_poller(voice)

    # --- the bot moved, kicked, alone, or its channel deleted -----------------------------------

    @commands.Cog.listener()
    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState,
                                    after: discord.VoiceState) -> None:
        guild_id = member.guild.id
        session = self.sessions.get(guild_id)
        if session is None:
            return
        me = self.bot.user
        if me is not None and member.id == me.id:
            if after.channel is None:
                log.info("disconnected from voice in guild %s: narration stopped", guild_id)
                await self._close_session(guild_id)
            elif before.channel is not None and after.channel.id != before.channel.id:
                # Moved by a moderator: the listeners who asked are not there; a host
                # who wants narration in the new channel runs /narrate join from it.
                log.info("moved from voice channel %s to %s in guild %s: narration stopped",
                         before.channel.id, after.channel.id, guild_id)
                await self._close_session(guild_id)
            return
        channel = session.voice.channel
        if channel is not None and before.channel is not None and before.channel.id == channel.id:
            # By id: without the members intent not everyone in the channel is cached.
            listeners = [uid for uid in getattr(channel, "voice_states", {}) if me is None or uid != me.id]
            if not listeners:
                log.info("everyone left voice channel %s in guild %s: leaving", channel.id, guild_id)
                await self._close_session(guild_id)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        session = self.sessions.get(channel.guild.id)
        if session is not None and session.voice.channel is not None and session.voice.channel.id == channel.id:
            log.info("voice channel %s was deleted: narration stopped", channel.id)
            await self._close_session(channel.guild.id)


async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(Narration(bot))
