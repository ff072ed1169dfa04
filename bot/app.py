"""The Discord bot: resources are created in :func:`create_resources` and injected into
:class:`KahaniBot`, which loads the cogs in ``setup_hook`` (discord.py's
``advanced_startup`` pattern). :func:`run_bot` is the whole start-up — migrate, create
resources, build the bot, sync commands if they changed, connect, and on SIGINT/SIGTERM
close everything — and the tests' harness runs that same function.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from discord.ext import commands

from bot import metrics as metricsmod
from bot.errors import KahaniTree, answer_stale_component, new_reference
from bot.player import ScenePlayer
from bot.settings import Settings, discord_global_rate, llm_concurrency, require_token
from bot.types import Interaction
from bot.ui.render import StreamScheduler
from core import db as dbmod
from core.appstate import get_state, set_state
from core.db import Database
from core.engine import EngineConfig, StoryEngine
from core.errors import KahaniError
from core.llm import LLMClient, LLMError, LLMTimeouts
from core.llmqueue import GenerationLimits, LLMQueue
from core.summaries import SummaryWorker
from core.tts import KokoroClient  # narration (issue 8)

log = logging.getLogger(__name__)

# Extensions loaded at start-up, one per user-facing area.
EXTENSIONS: tuple[str, ...] = (
    "cogs.meta",
    "cogs.chapters",
    "cogs.characters",
    "cogs.lore",  # /lore …
    "cogs.settings",
    "cogs.stories",  # /story …
    "cogs.scenes",  # what a scene's components do
    "cogs.votes",  # group play: votes, the vote timer, Join and Close vote
    "cogs.narration",  # /narrate and the Narrate button
    "cogs.privacy",  # /privacy show|delete-me
    "cogs.server",  # /server content-notes|default-mode
)

# Seconds a shutdown waits for background work (generations) to wind down.
SHUTDOWN_GRACE = 5.0

# app_state key of the hash of the global commands last synced to Discord.
COMMANDS_HASH_KEY = "commands_hash"

# Awaited in setup_hook after the extensions are loaded and before commands are synced
# (tests add their own cogs with it).
SetupHook = Callable[["KahaniBot"], Awaitable[None]]


class StartupError(KahaniError):
    """The bot cannot start; the message says why in one line."""


def intents() -> discord.Intents:
    """Only what Kahani needs: no privileged intents (interactions need none)."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.voice_states = True
    return wanted


def apply_discord_endpoints(settings: Settings) -> None:
    """Point discord.py at another REST base / gateway (a proxy, or the test stand-in)."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.discord_gateway_url:
        # Also what discord.py falls back to after an INVALID_SESSION.
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def make_instance_id() -> str:
    """Unique per process, also across hosts and pid reuse: the holder of leases."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def make_llm_client(settings: Settings) -> LLMClient:
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return LLMClient(
        settings.llm_base_url,
        api_key=api_key,
        model=settings.llm_model,
        context_length=settings.llm_context_length,
        timeouts=LLMTimeouts(
            connect=settings.llm_connect_timeout,
            first_token=settings.llm_first_token_timeout,
            idle=settings.llm_idle_timeout,
            total=settings.llm_scene_timeout,
        ),
    )


@dataclass(frozen=True, slots=True)
class Resources:
    """Long-lived connections shared by the whole bot."""

    db: Database
    llm: LLMClient
    tts: KokoroClient  # issue 8: the Kokoro text-to-speech client


@contextlib.asynccontextmanager
async def create_resources(settings: Settings) -> AsyncIterator[Resources]:
    """The database engine, the LLM client and the TTS client; closed when the block ends."""
    database = Database.from_url(settings.database_url)
    try:
        llm = make_llm_client(settings)
        tts = KokoroClient(settings.kokoro_url)  # issue 8
        try:
            yield Resources(database, llm, tts)
        finally:
            await tts.aclose()
            await llm.aclose()
    finally:
        await database.dispose()


def commands_fingerprint(tree: discord.app_commands.CommandTree[Any], application_id: int | None) -> str:
    """A stable hash of the global commands as they would be synced (with the application
    id: another bot token means another application, whose commands are not synced)."""
    payload = [command.to_dict(tree) for command in tree.get_commands(guild=None)]
    payload.sort(key=lambda c: (c.get("type", 1), c["name"]))
    material = json.dumps({"application_id": application_id, "commands": payload}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(material.encode()).hexdigest()


async def sync_commands_if_changed(bot: KahaniBot) -> bool:
    """Bulk-overwrite the global commands only when their definition changed since the
    last sync (hash kept in app_state); True if it synced."""
    fingerprint = commands_fingerprint(bot.tree, bot.application_id)
    if await get_state(bot.db, COMMANDS_HASH_KEY) == fingerprint:
        log.info("slash commands unchanged; not syncing")
        return False
    if bot.tree.translator is not None:
        # The hash covers the untranslated definitions; a translator changes the payload.
        log.warning("a command translator is set: translations are not part of the sync hash")
    try:
        synced = await bot.tree.sync()
    except discord.HTTPException as exc:
        # The old commands keep working; the next start tries again (no hash stored).
        log.error("could not sync slash commands with Discord: %s", exc)
        return False
    await set_state(bot.db, COMMANDS_HASH_KEY, fingerprint)
    log.info("synced %d slash command(s) with Discord", len(synced))
    return True


def _log_failure(task: asyncio.Task[Any]) -> None:
    """A background task that ended with an exception says so in the log, with a
    reference (never "Task exception was never retrieved")."""
    if task.cancelled() or task.exception() is None:
        return
    ref = new_reference()
    log.error("background task %s failed, ref %s", task.get_name(), ref, exc_info=task.exception())


class KahaniBot(commands.AutoShardedBot):
    """The Discord adapter around the story engine; resources come from outside."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        llm: LLMClient,
        tts: KokoroClient | None = None,
        setup: SetupHook | None = None,
        **kwargs: Any,
    ) -> None:
        self.fast_start = settings.kahani_test_fast_start
        if self.fast_start:
            # Only the stand-in is this quick; Discord needs discord.py's default 2 s.
            kwargs.setdefault("guild_ready_timeout", 0.1)
        # This bot's Prometheus metrics (served only with METRICS_PORT); the trace counts
        # every Discord REST request and 429 on discord.py's HTTP session.
        self.metrics = metricsmod.Metrics()
        kwargs.setdefault("http_trace", self.metrics.discord_trace())
        if settings.shard_ids is not None:
            # discord.py's options type has no None for shard_ids; leaving it out is the same.
            kwargs["shard_ids"] = settings.shard_ids
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            tree_cls=KahaniTree,
            shard_count=settings.shard_count,
            # Nothing the bot sends pings anyone unless a message names who it may ping.
            allowed_mentions=discord.AllowedMentions.none(),
            **kwargs,
        )
        self.settings = settings
        self.db = db
        self.llm = llm
        # issue 8: narration's Kokoro client (cogs reach it as ``bot.tts``).
        self.tts = tts if tts is not None else KokoroClient(settings.kokoro_url)
        self.instance_id = make_instance_id()
        # The story engine; cogs reach it as ``bot.engine``. Its leases name this process.
        # Generations take turns for the LLM server's slots, across processes.
        self.llm_queue = LLMQueue(db, llm_concurrency(settings), holder_prefix=self.instance_id)
        limits = GenerationLimits(settings.generations_per_user_per_minute, settings.generations_per_guild_per_minute)
        config = EngineConfig(summary_claim_ttl=timedelta(seconds=settings.summary_claim_seconds))
        self.engine = StoryEngine(db, llm, holder_prefix=self.instance_id, queue=self.llm_queue, limits=limits,
                                  config=config)
        # Writes due summaries (rolling and chapter) behind the players' scenes.
        self.summaries = SummaryWorker(db, self.engine, queue=self.llm_queue, holder_prefix=self.instance_id)
        # Every scene stream, tally and placeholder of this process takes turns here, within
        # Discord's budgets (bot/ui/render.py): this process's share of the global limit.
        self.scheduler = StreamScheduler(global_limit=discord_global_rate(settings))
        # Plays, finishes and shows scenes for every cog that needs them (bot/player.py).
        self.player = ScenePlayer(self)
        self._setup = setup
        self._created = time.perf_counter()
        self._dynamic_templates: dict[type, re.Pattern[str]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # -- start-up -------------------------------------------------------------------

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.player.start()
        self.summaries.start()
        self.metrics.instrument(self)
        if self._setup is not None:
            await self._setup(self)
        await sync_commands_if_changed(self)
        self.spawn(self._check_llm())

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Discord wants ~5 s between IDENTIFYs (sessions start limit); the stand-in does not.
        if not self.fast_start:
            await super().before_identify_hook(shard_id, initial=initial)

    async def on_ready(self) -> None:
        log.info(
            "ready as %s (%s) on %d guild(s), %.2f s after start, instance %s",
            self.user, getattr(self.user, "id", "?"), len(self.guilds),
            time.perf_counter() - self._created, self.instance_id,
        )

    async def _check_llm(self) -> None:
        """Say at start-up, in the log, when the storyteller cannot be used (the bot
        still runs; players get the same message when they play)."""
        try:
            model = await self.llm.resolve_model()
        except LLMError as exc:
            log.warning("the storyteller is not usable yet: %s", exc.reason)
        else:
            log.info("storyteller: %s at %s", model, self.llm.shown_url)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; :meth:`close` cancels it and waits for it (cogs
        use this for generations and sweepers, so a shutdown ends them cleanly)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task

    # -- components -----------------------------------------------------------------

    def add_dynamic_items(self, *items: type[discord.ui.DynamicItem[Any]]) -> None:
        super().add_dynamic_items(*items)
        for item in items:
            self._dynamic_templates[item] = item.__discord_ui_compiled_template__

    def remove_dynamic_items(self, *items: type[discord.ui.DynamicItem[Any]]) -> None:
        super().remove_dynamic_items(*items)
        for item in items:
            self._dynamic_templates.pop(item, None)

    @property
    def dynamic_item_templates(self) -> list[re.Pattern[str]]:
        """The custom_id templates of the registered DynamicItems."""
        return list(self._dynamic_templates.values())

    async def on_interaction(self, interaction: Interaction) -> None:
        await answer_stale_component(interaction, self.dynamic_item_templates, self.persistent_views)

    # -- shutdown -------------------------------------------------------------------

    async def close(self) -> None:
        if not self.is_closed():
            log.info("shutting down")
        # Running generations are aborted: each gives its lease back and marks its
        # message interrupted (with Retry) while the connection to Discord still works.
        tasks = [t for t in self._background if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
        await self.summaries.close()
        await self.engine.close()
        await self.llm_queue.close()
        await super().close()


def build_bot(settings: Settings, resources: Resources, *, setup: SetupHook | None = None) -> KahaniBot:
    """The bot with its resources injected (what ``run_bot`` and the tests both use)."""
    return KahaniBot(settings=settings, db=resources.db, llm=resources.llm, tts=resources.tts, setup=setup)


def _install_signal_handlers(bot: KahaniBot) -> Callable[[], None]:
    """SIGINT/SIGTERM close the bot (then run_bot closes the resources); returns undo."""
    loop = asyncio.get_running_loop()
    installed = []

    def stop(name: str) -> None:
        log.info("%s received", name)
        bot.spawn(bot.close())

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass

    def undo() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return undo


async def run_bot(settings: Settings, *, handle_signals: bool = True, setup: SetupHook | None = None) -> None:
    """Migrate the database, then run the bot until it is stopped (SIGINT/SIGTERM or
    ``bot.close()``); resources are closed on the way out."""
    token = require_token(settings)
    apply_discord_endpoints(settings)
    await dbmod.upgrade(settings.database_url)
    async with (
        create_resources(settings) as resources,
        build_bot(settings, resources, setup=setup) as bot,
        metricsmod.serve(settings, bot),  # /metrics and /healthz, with METRICS_PORT
    ):
        undo = _install_signal_handlers(bot) if handle_signals else (lambda: None)
        try:
            await bot.start(token)
        except discord.LoginFailure as exc:
            raise StartupError("Discord refused DISCORD_TOKEN: check the bot token (see README.md)") from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            where = settings.discord_api_base or discord.http.Route.BASE
            raise StartupError(f"cannot reach Discord at {where}: {exc}") from exc
        except discord.PrivilegedIntentsRequired as exc:
            raise StartupError("Discord refused the gateway intents (see README.md)") from exc
        finally:
            undo()
    log.info("stopped")
