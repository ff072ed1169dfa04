"""A local Discord stand-in for end-to-end tests with the real discord.py client.

`DiscordStandin` serves Discord's REST API (`http://127.0.0.1:PORT/api/v10`) and the
gateway (`ws://127.0.0.1:PORT/`) from one aiohttp server inside the test process. It
keeps a model of guilds, channels, roles, members, messages (with every edit),
interactions, modals and ephemeral replies; it acts as users do (`slash`, `autocomplete`, `click`,
`select`, `submit_modal`, `say`, `dm`, `join_voice`); and it enforces Discord's rules:
documented limits, interaction deadlines, request bodies against Discord's OpenAPI
spec, rate limits with real headers and 429s. Every broken rule is recorded and the
bot gets Discord's error JSON; `assert_clean()` / `checked()` fail the test.

Pointing a bot at it
--------------------
In tests, `testing.patch_discord(standin)` sets `discord.http.Route.BASE` and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`; `testing.run_client` also starts
the client and waits for on_ready. A bot that reads the settings itself needs, before
it logs in:

    if settings.DISCORD_API_BASE:          # e.g. http://127.0.0.1:PORT/api/v10
        discord.http.Route.BASE = settings.DISCORD_API_BASE
    if settings.DISCORD_GATEWAY_URL:       # e.g. ws://127.0.0.1:PORT/
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.DISCORD_GATEWAY_URL)

Both are class attributes read at use time, so set them before `Client.start`/`login`.
`Route.BASE` covers webhook and interaction routes too (discord.webhook reuses Route).
The gateway URL also comes back in READY's `resume_gateway_url` and from
`GET /gateway/bot` (what AutoShardedClient asks when `shard_count` is unset), both of
which the stand-in answers with its own address. discord.py always asks for
`compress=zlib-stream` (`zstd-stream` when `zstandard` is installed); the stand-in
serves either.

Two discord.py defaults slow tests down: on_ready comes `guild_ready_timeout` (2 s)
after the last GUILD_CREATE — pass `guild_ready_timeout=0.1` — and every re-IDENTIFY
(after INVALID_SESSION, or each shard after the first) first sleeps 5 s in
`Client.before_identify_hook` — override it with a no-op in tests.

In a test module
----------------
One stand-in and one client per module (pytest-asyncio 1.5):

    pytestmark = pytest.mark.asyncio(loop_scope="module")

    @pytest_asyncio.fixture(loop_scope="module", scope="module")
    async def standin():
        async with DiscordStandin(clock=AdjustableClock()) as standin:
            ...build guilds, channels, users...
            async with run_client(make_bot(), standin):
                yield standin

    from tests.discord_standin.fixtures import discord_rules  # autouse: zero 429s, no rule broken
"""

from .clock import AdjustableClock, MonotonicClock
from .models import (
    DM, GUILD_FORUM, GUILD_TEXT, GUILD_VOICE, PRIVATE_THREAD, PUBLIC_THREAD, Channel, Guild, InteractionRecord, Message,
    ModalRecord, Overwrite, Permissions, Role, User, Violation,
)
from .standin import DiscordStandin
from .testing import patch_discord, run_client

__all__ = [
    "AdjustableClock", "Channel", "DM", "DiscordStandin", "GUILD_FORUM", "GUILD_TEXT", "GUILD_VOICE", "Guild",
    "InteractionRecord", "Message", "ModalRecord", "MonotonicClock", "Overwrite", "PRIVATE_THREAD",
    "PUBLIC_THREAD", "Permissions", "Role", "User", "Violation", "patch_discord", "run_client",
]
