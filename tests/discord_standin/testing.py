"""Helpers for tests: point discord.py at a stand-in and run a client against it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Iterator

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from .standin import DiscordStandin


@contextlib.contextmanager
def patch_discord(standin: DiscordStandin) -> Iterator[None]:
    """Point every discord.py client in this process at the stand-in (REST and gateway).

    `Route.BASE` is read when a Route is built (webhook and interaction routes too);
    `DEFAULT_GATEWAY` is where a client connects first and where it falls back
    after INVALID_SESSION. Restored on exit.
    """
    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = standin.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(standin.gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


@contextlib.asynccontextmanager
async def run_client(client: discord.Client, standin: DiscordStandin, *,
                     ready_timeout: float = 10.0) -> AsyncIterator[discord.Client]:
    """Start `client` against the stand-in, wait for on_ready, close it on exit.

    Give the client `guild_ready_timeout=0.1` or so: discord.py waits that long after
    the last GUILD_CREATE before it dispatches on_ready (default 2 s).
    """
    with patch_discord(standin):
        task = asyncio.create_task(client.start(standin.token))
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait({task, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            await client.close()
            if task in done:
                task.result()  # re-raise why the client stopped
            raise AssertionError(f"the client was not ready within {ready_timeout}s")
        try:
            yield client
        finally:
            await client.close()
            await asyncio.wait_for(task, 10)
