"""Narration: ``/narrate join|leave|stop|skip|voice|speed`` and the **Narrate** button.

In a server the bot joins the caller's voice channel (one voice connection per guild,
so one narration per guild: another voice channel of the same server is refused
clearly) and reads scenes there: Kokoro's PCM → :mod:`cogs.audio` → discord.py's player.
In DMs, where there is no voice channel, Narrate sends the scene as an MP3 attachment.
Voice and speed are the user's settings (``/narrate voice|speed`` write them, as
``/settings set`` does).

Kokoro down, slow or failing: a clear ephemeral message; the story goes on and the next
narration tries again. The bot moved out, kicked, its channel deleted or left alone:
narration stops and the connection is closed.

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
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import send_ephemeral
from cogs.audio import NarrationJob
from cogs.common import NO_PINGS, actor, ensure_can_play
from cogs.settings import (
    DEFAULT_VOICE_WORD,
    SPEED_MAX,
    SPEED_MIN,
    VOICE_MAX,
    changes_from,
)
from core import messages as msg
from core import repository as repo
from core.errors import KahaniError
from core.narration import is_speakable, narration_text
from core.tts import DEFAULT_VOICE, TTSError

if TYPE_CHECKING:
    from bot.app import KahaniBot

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0  # seconds to join a voice channel
AUTOCOMPLETE_SECONDS = 1.5  # Discord drops autocomplete answers after 3 s
FILE_LIMIT = 8 * 1024 * 1024  # a DM narration file: at most this, or the DM's own limit
HEALTH_SECONDS = 5.0


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


@dataclass
class GuildNarration:
    """The voice connection of one guild and what it is reading."""

    voice: discord.VoiceClient
    job: NarrationJob | None = None
    jobs: list[NarrationJob] = field(default_factory=list)  # for tests and the log


class Narration(commands.GroupCog, group_name="narrate", group_description="Read scenes aloud"):
    """Voice narration and scene audio."""

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot
        self.tts = bot.tts
        self.db = bot.db
        self.sessions: dict[int, GuildNarration] = {}
        self.voice_problem: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def cog_load(self) -> None:
        self.voice_problem = voice_problem()
        if self.voice_problem:
            log.warning("voice narration is unavailable: %s (DM narration files still work)", self.voice_problem)
        else:
            log.info("voice narration is available (libopus, PyNaCl and davey found)")
        self._spawn(self._check_kokoro())

    async def cog_unload(self) -> None:
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
    async def join(self, interaction: discord.Interaction[Any]) -> None:
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
            if current.channel.id == target.id:
                raise KahaniError(msg.NARRATE_ALREADY_HERE.format(channel=target.mention))
            raise KahaniError(msg.NARRATE_OTHER_CHANNEL.format(channel=current.channel.mention))  # type: ignore[union-attr]
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
        self.sessions[guild.id] = GuildNarration(voice)
        log.info("joined voice channel %s in guild %s", target.id, guild.id)
        await interaction.followup.send(msg.NARRATE_JOINED.format(channel=target.mention), ephemeral=True,
                                        allowed_mentions=NO_PINGS)

    @app_commands.command(name="leave", description="Stop narrating and leave the voice channel")
    @app_commands.guild_only()
    async def leave(self, interaction: discord.Interaction[Any]) -> None:
        guild = interaction.guild
        assert guild is not None
        current = guild.voice_client
        if current is None and guild.id not in self.sessions:
            raise KahaniError(msg.NARRATE_NOT_CONNECTED)
        channel = getattr(current, "channel", None)
        await self._close_session(guild.id)
        await send_ephemeral(interaction, msg.NARRATE_LEFT.format(channel=getattr(channel, "mention", "voice")))

    @app_commands.command(name="stop", description="Stop reading the current scene")
    @app_commands.guild_only()
    async def stop(self, interaction: discord.Interaction[Any]) -> None:
        session, job = self._playing(interaction)
        await job.stop()
        session.voice.stop()
        await send_ephemeral(interaction, msg.NARRATE_STOPPED)

    @app_commands.command(name="skip", description="Skip to the next part of the scene")
    @app_commands.guild_only()
    async def skip(self, interaction: discord.Interaction[Any]) -> None:
        _, job = self._playing(interaction)
        job.skip()
        await send_ephemeral(interaction, msg.NARRATE_SKIPPED)

    def _playing(self, interaction: discord.Interaction[Any]) -> tuple[GuildNarration, NarrationJob]:
        """The guild's session and the narration it is playing (else a KahaniError)."""
        session = self.sessions.get(interaction.guild_id or 0)
        if session is None or session.job is None or session.job.source.finished:
            raise KahaniError(msg.NARRATE_NOTHING_PLAYING)
        return session, session.job

    # --- /narrate voice | speed -------------------------------------------------------------

    async def voice_autocomplete(self, interaction: discord.Interaction[Any],
                                 current: str) -> list[app_commands.Choice[str]]:
        """The Kokoro server's voices; after a "+", the mix so far plus each voice."""
        try:
            async with asyncio.timeout(AUTOCOMPLETE_SECONDS):
                voices = await self.tts.voices()
        except (TTSError, TimeoutError):
            return []
        head, plus, last = "".join(current.split()).rpartition("+")
        prefix = f"{head}{plus}"
        matches = [v for v in voices if last.lower() in v.lower()]
        matches.sort(key=lambda v: (not v.lower().startswith(last.lower()), v))
        return [app_commands.Choice(name=f"{prefix}{v}"[:100], value=f"{prefix}{v}"[:100]) for v in matches[:25]]

    @app_commands.command(name="voice", description="Your narration voice (a Kokoro voice, or a mix)")
    @app_commands.describe(voice="e.g. af_bella, or a mix such as af_bella(2)+af_sky(1); "
                                 f"\u201c{DEFAULT_VOICE_WORD}\u201d for the default")
    @app_commands.autocomplete(voice=voice_autocomplete)
    async def voice(self, interaction: discord.Interaction[Any],
                    voice: app_commands.Range[str, 1, VOICE_MAX]) -> None:
        chosen = changes_from(None, voice, None, None)["tts_voice"]
        text = msg.NARRATE_VOICE_DEFAULT.format(voice=DEFAULT_VOICE)
        if chosen is not None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                chosen = await self.tts.check_voice(chosen)
                text = msg.NARRATE_VOICE_SAVED.format(voice=chosen)
            except TTSError as exc:
                if exc.kind in ("bad_voice", "unknown_voice", "rejected"):
                    raise
                text = msg.NARRATE_VOICE_SAVED_UNCHECKED.format(voice=chosen)  # Kokoro down: keep it anyway
        async with self.db.transaction() as session:
            who = await actor(session, interaction)
            await repo.update_user_settings(session, who.user.id, tts_voice=chosen)
        await send_ephemeral(interaction, text)

    @app_commands.command(name="speed", description="Your narration speed, 0.5 to 2.0")
    async def speed(self, interaction: discord.Interaction[Any],
                    speed: app_commands.Range[float, SPEED_MIN, SPEED_MAX]) -> None:
        changes = changes_from(None, None, speed, None)
        async with self.db.transaction() as session:
            who = await actor(session, interaction)
            await repo.update_user_settings(session, who.user.id, **changes)
        await send_ephemeral(interaction, msg.NARRATE_SPEED_SAVED.format(speed=changes["tts_speed"]))

    # --- the Narrate button -------------------------------------------------------------------

    async def narrate_button(self, interaction: discord.Interaction[Any], variant_id: int) -> None:
        """Read a scene: into the guild's voice channel, or, in DMs, as an audio file."""
        async with self.db.transaction() as s:
            variant = await repo.get_variant(s, variant_id)
            story = await repo.get_story(s, await repo.variant_story_id(s, variant_id))
            who = await actor(s, interaction)
            await ensure_can_play(s, story, who)
            settings = await repo.get_user_settings(s, who.user.id)
            voice, speed, scene_id = settings.tts_voice, settings.tts_speed, variant.scene_id
            text = narration_text(variant.content)
        if not is_speakable(text):
            raise KahaniError(msg.NARRATE_EMPTY)
        if interaction.guild is None:
            await self._send_file(interaction, text, voice, speed, f"scene-{scene_id}.mp3")
            return
        session = self.sessions.get(interaction.guild.id)
        if session is None or not session.voice.is_connected():
            raise KahaniError(msg.NARRATE_NOT_CONNECTED)

        async def failed(error: TTSError) -> None:
            await send_ephemeral(interaction, msg.NARRATE_FAILED_MIDWAY.format(reason=error.message))

        job = await self.play(interaction.guild.id, voice=voice, speed=speed, on_error=failed)
        job.feed(text)
        job.finish()
        channel = session.voice.channel
        await send_ephemeral(interaction, msg.NARRATE_STARTED.format(channel=getattr(channel, "mention", "voice")))

    async def _send_file(self, interaction: discord.Interaction[Any], text: str, voice: str | None,
                         speed: float, filename: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        limit = min(getattr(interaction, "filesize_limit", FILE_LIMIT) or FILE_LIMIT, FILE_LIMIT)
        audio = await self.tts.synthesize(text.strip(), voice=voice, speed=speed, max_bytes=limit)
        await interaction.followup.send(msg.NARRATE_FILE, file=discord.File(io.BytesIO(audio), filename=filename),
                                        ephemeral=True)

    # --- playing -----------------------------------------------------------------------------

    async def play(self, guild_id: int, *, voice: str | None, speed: float,
                   on_error: Any = None) -> NarrationJob:
        """Start a narration in the guild's voice channel (replacing the one playing) and
        return its job: ``feed()`` it scene text — also while the scene is being written
        (auto-narrate) — and ``finish()`` it when the scene is complete."""
        session = self.sessions.get(guild_id)
        if session is None or not session.voice.is_connected():
            raise KahaniError(msg.NARRATE_NOT_CONNECTED)
        if session.job is not None:
            await session.job.stop()
        if session.voice.is_playing() or session.voice.is_paused():
            session.voice.stop()
        job = NarrationJob(self.tts, voice=voice, speed=speed, on_error=on_error)
        session.job = job
        session.jobs.append(job)
        loop = asyncio.get_running_loop()

        def after(error: Exception | None) -> None:  # on the player thread
            if error is not None:
                log.error("voice playback failed in guild %s", guild_id, exc_info=error)
            loop.call_soon_threadsafe(self._log_finished, guild_id, job)

        session.voice.play(job.source, after=after, signal_type="voice", bitrate=64)
        job.start()
        return job

    def _log_finished(self, guild_id: int, job: NarrationJob) -> None:
        stats = job.source.stats
        log.info("narration in guild %s ended: %d frames, %d underruns, %d silence frames, chunks %d",
                 guild_id, stats.audio_frames, stats.underruns, stats.silence_frames, len(job.chunks_read))

    def narrating(self, guild_id: int) -> bool:
        """Whether the bot is in a voice channel of this guild (auto-narrate asks this)."""
        session = self.sessions.get(guild_id)
        return session is not None and session.voice.is_connected()

    async def _close_session(self, guild_id: int) -> None:
        session = self.sessions.pop(guild_id, None)
        if session is not None and session.job is not None:
            await session.job.stop()
        guild = self.bot.get_guild(guild_id)
        current = guild.voice_client if guild is not None else (session.voice if session else None)
        if current is not None:
            with contextlib.suppress(Exception):
                await current.disconnect(force=True)
        if session is not None and current is not session.voice:
            with contextlib.suppress(Exception):
                await session.voice.disconnect(force=True)

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
