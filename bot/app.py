"""The Discord bot: resources are created in ``run_bot`` and injected into ``KahaniBot``,
which loads the cogs in ``setup_hook`` (discord.py's ``advanced_startup`` pattern)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands

from bot.settings import Settings, require_token
from core import db as dbmod
from core.db import Database
from core.errors import KahaniError

log = logging.getLogger(__name__)

# Extensions loaded at start-up, one per user-facing area.
EXTENSIONS: tuple[str, ...] = ()


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


class KahaniBot(commands.AutoShardedBot):
    def __init__(self, *, settings: Settings, db: Database, **kwargs: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            shard_count=settings.shard_count,
            shard_ids=settings.shard_ids,
            # Nothing the bot sends pings anyone unless a message names who it may ping.
            allowed_mentions=discord.AllowedMentions.none(),
            **kwargs,
        )
        self.settings = settings
        self.db = db

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s); %d guild(s)", self.user, getattr(self.user, "id", "?"), len(self.guilds))


async def run_bot(settings: Settings) -> None:
    """Migrate the database, then run the bot until it is stopped (SIGINT/SIGTERM)."""
    token = require_token(settings)
    apply_discord_endpoints(settings)
    await dbmod.upgrade(settings.database_url)
    database = Database.from_url(settings.database_url)
    try:
        async with KahaniBot(settings=settings, db=database) as bot:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
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
        await database.dispose()
