"""The error funnel: every failure of a command, button, select or modal ends here.

A :class:`~core.errors.KahaniError` is an expected failure: its message is shown to the
user as a short ephemeral reply. Anything else is a bug or an outage: the user gets
"Something went wrong (ref ABC123)…" and the log gets the traceback under the same
reference, so a player's report can be matched to it.

Where errors come from and how they reach :func:`report_error`:

- slash commands: :class:`KahaniTree` (the bot's ``tree_cls``), ``on_error``;
- ``discord.ui.View`` / ``Modal`` subclasses: derive from :class:`KahaniView` /
  :class:`KahaniModal`;
- ``DynamicItem`` callbacks: decorate the callback with :func:`funnel_errors` (discord.py
  runs them in a plain ``View`` built from the message, whose ``on_error`` only logs).

A component whose ``custom_id`` starts with ``kahani:`` but that no DynamicItem template
and no persistent view handles (a button from an older version of the bot) is answered
by :func:`answer_stale_component` from the bot's ``on_interaction``. Rule for cogs: only
components that must survive a restart get a ``kahani:`` custom_id (DynamicItems,
persistent views); short-lived views keep discord.py's random ids.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import discord
from discord import app_commands

from bot.types import Interaction
from core import db, logctx
from core import messages as msg
from core.errors import KahaniError

log = logging.getLogger(__name__)

CUSTOM_ID_PREFIX = "kahani:"
# No 0/O or 1/I: the reference is read aloud or typed from a screenshot.
_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_NO_MENTIONS = discord.AllowedMentions.none()

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def new_reference() -> str:
    """A short id the user sees and the log carries, e.g. ``K7QM2X``."""
    return "".join(secrets.choice(_REF_ALPHABET) for _ in range(6))


def describe(interaction: Interaction) -> str:
    """What the user was doing, for the log: ``/story new``, a custom_id, …"""
    command = interaction.command
    if command is not None:
        return f"/{command.qualified_name}"
    data = interaction.data or {}
    custom_id = data.get("custom_id")
    return f"{interaction.type.name} {custom_id}" if custom_id else interaction.type.name


UNKNOWN_INTERACTION = 10062  # Discord's error code: the interaction expired (or never existed)


async def send_ephemeral(interaction: Interaction, content: str) -> bool:
    """Tell only this user ``content``: the first response, or a followup once the
    interaction was answered or deferred. Pings nobody. False if Discord refused
    (e.g. the interaction expired); that is logged, never raised."""
    try:
        if not interaction.response.is_done():
            try:
                await interaction.response.send_message(content, ephemeral=True, allowed_mentions=_NO_MENTIONS)
                return True
            except discord.InteractionResponded:
                pass  # answered meanwhile by another task: fall through to a followup
        await interaction.followup.send(content, ephemeral=True, allowed_mentions=_NO_MENTIONS)
        return True
    except discord.HTTPException as exc:
        log.warning("could not answer %s (interaction %s): %s", describe(interaction), interaction.id, exc)
        return False


def _unwrap(error: BaseException) -> BaseException:
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    if isinstance(error, app_commands.TransformerError) and isinstance(error.__cause__, KahaniError):
        return error.__cause__
    return error


def _permissions(names: Iterable[str]) -> str:
    return ", ".join(name.replace("_", " ").replace("guild", "server").title() for name in names)


def user_message(error: BaseException) -> str | None:
    """The message for an expected failure, or None for an unexpected one."""
    if isinstance(error, KahaniError):
        return error.message
    if isinstance(error, app_commands.CommandOnCooldown):
        return msg.DISCORD_COOLDOWN.format(seconds=max(error.retry_after, 1))
    if isinstance(error, app_commands.NoPrivateMessage):
        return msg.DISCORD_GUILD_ONLY
    if isinstance(error, app_commands.MissingPermissions):
        return msg.DISCORD_USER_MISSING_PERMISSIONS.format(permissions=_permissions(error.missing_permissions))
    if isinstance(error, app_commands.BotMissingPermissions):
        return msg.DISCORD_BOT_MISSING_PERMISSIONS.format(permissions=_permissions(error.missing_permissions))
    if isinstance(error, app_commands.CheckFailure):
        return msg.DISCORD_NOT_ALLOWED
    if isinstance(error, discord.Forbidden):
        return msg.DISCORD_BOT_FORBIDDEN
    return None


async def report_error(interaction: Interaction, error: BaseException) -> str | None:
    """Answer the user for ``error`` (ephemeral) and log it.

    Returns the reference id when the error was unexpected (it is in the log with the
    traceback), None when the user was shown an expected failure's message."""
    error = _unwrap(error)
    where = describe(interaction)
    if isinstance(error, discord.NotFound) and error.code == UNKNOWN_INTERACTION:
        # Answered too late (Discord gives 3 s): nothing can reach the user through it
        # any more, and trying again would only be refused again.
        log.warning("%s: the interaction expired before it was answered (interaction %s)", where, interaction.id)
        return None
    if not isinstance(error, KahaniError) and (db.unreachable(error) or db.busy(error)):
        # Not a bug: the database is down or busy. Say so, with a reference for the log.
        ref = new_reference()
        log.warning("%s: the database is not reachable, ref %s: %r", where, ref, error)
        await send_ephemeral(interaction, (msg.DB_UNREACHABLE if db.unreachable(error) else msg.DB_BUSY_REF)
                             .format(ref=ref))
        return ref
    text = user_message(error)
    if text is not None:
        if isinstance(error, discord.Forbidden):
            log.warning("%s: Discord refused: %s", where, error)
        else:
            log.info("%s: %s: %s", where, type(error).__name__, text)
        await send_ephemeral(interaction, text)
        return None
    ref = new_reference()
    log.error(
        "unexpected error, ref %s, in %s (user %s, guild %s, channel %s)",
        ref, where, interaction.user.id, interaction.guild_id, interaction.channel_id,
        exc_info=(type(error), error, error.__traceback__),
    )
    await send_ephemeral(interaction, msg.DISCORD_UNEXPECTED_ERROR.format(ref=ref))
    return ref


def bind_interaction(interaction: Interaction) -> None:
    """Every log line of this interaction's handling — and of the generation it starts —
    names it (core/logctx.py)."""
    logctx.bind(interaction=interaction.id, user=interaction.user.id, guild=interaction.guild_id)


class KahaniTree(app_commands.CommandTree[Any]):
    """The bot's command tree: every command error goes through :func:`report_error`.

    Cogs do not attach their own error handlers; they raise ``KahaniError``."""

    async def interaction_check(self, interaction: Interaction, /) -> bool:
        bind_interaction(interaction)
        return True

    async def on_error(self, interaction: Interaction, error: app_commands.AppCommandError, /) -> None:
        await report_error(interaction, error)


class KahaniView(discord.ui.View):
    """A View whose item callbacks' errors go through the funnel."""

    async def interaction_check(self, interaction: Interaction, /) -> bool:
        bind_interaction(interaction)
        return True

    async def on_error(self, interaction: Interaction, error: Exception,
                       item: discord.ui.Item[Any], /) -> None:
        await report_error(interaction, error)


class KahaniModal(discord.ui.Modal):
    """A Modal whose ``on_submit`` errors go through the funnel."""

    async def interaction_check(self, interaction: Interaction, /) -> bool:
        bind_interaction(interaction)
        return True

    async def on_error(self, interaction: Interaction, error: Exception, /) -> None:
        await report_error(interaction, error)


def funnel_errors(callback: F) -> F:
    """Decorate a ``callback(self, interaction)`` (e.g. a DynamicItem's) so that what it
    raises reaches the user through :func:`report_error` instead of only the log."""

    @functools.wraps(callback)
    async def wrapper(self: Any, interaction: Interaction, *args: Any, **kwargs: Any) -> Any:
        bind_interaction(interaction)
        try:
            return await callback(self, interaction, *args, **kwargs)
        except Exception as exc:
            await report_error(interaction, exc)
            return None

    return wrapper  # type: ignore[return-value]


def is_stale_component(
    custom_id: str, templates: Iterable[re.Pattern[str]], persistent_views: Iterable[discord.ui.view.BaseView]
) -> bool:
    """True for a ``kahani:`` custom_id that no DynamicItem template and no persistent
    view of this process handles (so nothing else will answer the interaction)."""
    if not custom_id.startswith(CUSTOM_ID_PREFIX):
        return False
    if any(template.fullmatch(custom_id) for template in templates):
        return False
    return not any(
        getattr(item, "custom_id", None) == custom_id for view in persistent_views for item in view.walk_children()
    )


async def answer_stale_component(
    interaction: Interaction,
    templates: Iterable[re.Pattern[str]],
    persistent_views: Iterable[discord.ui.view.BaseView],
) -> bool:
    """Politely answer a click on a component nothing handles; True if it did.

    Runs from ``on_interaction``, which discord.py dispatches after it routed the
    interaction to views and DynamicItems; those answer asynchronously, so the decision
    is made from the routing tables (deterministic), not from ``response.is_done()``."""
    if interaction.type is not discord.InteractionType.component or interaction.response.is_done():
        return False
    custom_id = str((interaction.data or {}).get("custom_id", ""))
    if not is_stale_component(custom_id, templates, persistent_views):
        return False
    log.info("answering a stale component %s (user %s)", custom_id, interaction.user.id)
    return await send_ephemeral(interaction, msg.DISCORD_STALE_COMPONENT)
