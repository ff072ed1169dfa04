"""What every story cog needs: which story an interaction is about (if its user may
touch it: ``bot/access.py`` asks the policy in ``core/access.py``), embeds that fit,
forms and deadlines.

Every handler re-checks in the database: a button or command never trusts what it was
built with. Denials are :class:`~core.errors.KahaniError`s, which the error funnel turns
into short ephemeral replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import discord
from discord import app_commands
from sqlalchemy.ext.asyncio import AsyncSession

from bot.access import Caller, allows, story_for, visible_stories
from bot.errors import KahaniView
from bot.types import Interaction
from core import ids
from core import messages as msg
from core import repository as repo
from core.access import Actor, Need
from core.errors import KahaniError
from core.models import Story

log = logging.getLogger(__name__)
T = TypeVar("T")


class NotAllowed(KahaniError):
    """The user may not do this to this story."""


async def caller(session: AsyncSession, interaction: Interaction) -> Caller:
    """The interaction's user (created on first sight), for what is theirs alone (their
    settings, a new story): no story's access is involved."""
    who = interaction.user
    user = await repo.get_or_create_user(session, who.id, who.display_name)
    return Caller(user, who.id, Actor(user.id, interaction.guild_id))


async def story_choices(
    session: AsyncSession, interaction: Interaction, current: str
) -> list[app_commands.Choice[int]]:
    """Autocomplete for a ``story`` option: the stories the caller may see, by title."""
    stories = await visible_stories(session, interaction, search=current.strip(), limit=25)
    return [
        app_commands.Choice(name=f"{s.title[:90]} (#{s.id})", value=s.id) for s in stories
    ]


# --- used by /chapter, /character and /settings ---------------------------------------

# Discord's embed limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
EMBED_TOTAL = 6000
EMBED_FIELDS = 25
EMBED_FIELD_NAME = 256
EMBED_FIELD_VALUE = 1024
# Field names are kept short so that 25 of them leave most of the 6000 for the values.
FIELD_NAME_SHOWN = 100
# A form (modal) must be the first answer, within 3 s: the read before it gets this long.
PRE_MODAL_READ_SECONDS = 1.5
# How long an open form waits for its submit (writing takes a while; then it is dropped).
MODAL_TIMEOUT = 1800.0
# For replies that show text users or the model wrote (the bot's default is the same).
NO_PINGS = discord.AllowedMentions.none()
STORY_OPTION_HELP = "Which story (default: the story of this thread or DM)"
# A command's ``story`` option: Discord is told its range (min_value/max_value), and
# story_for answers a forged value outside it as no story, before any query (core/ids.py).
StoryOption = app_commands.Range[int, 1, ids.MAX_ID]


async def story_to_manage(
    session: AsyncSession, interaction: Interaction, story_id: int | None = None
) -> tuple[Story, Caller]:
    """The story the interaction is about, if its user may moderate it (end, delete,
    settings, chapters, characters): its owner, or a moderator of its thread."""
    return await story_for(session, interaction, story_id, Need.MODERATE)


async def story_to_view(
    session: AsyncSession, interaction: Interaction, story_id: int | None = None
) -> tuple[Story, Caller]:
    """The story the interaction is about, if its user may see its details."""
    return await story_for(session, interaction, story_id, Need.SEE)


def option_story_id(interaction: Interaction) -> int | None:
    """The ``story`` option already filled in (for an autocomplete of another option)."""
    value = getattr(interaction.namespace, "story", None)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value  # readable_story finds no story outside 1..MAX_ID
    text = str(value).strip()
    if not text.isdecimal():  # the user typed text that is not a story id yet
        return None
    return ids.parse_id(text) or 0  # a number that is no id (core/ids.py) names no story


async def autocomplete_story(
    interaction: Interaction, current: str
) -> list[app_commands.Choice[int]]:
    """Autocomplete for a ``story`` option. Never raises: an autocomplete can only be
    answered with choices, so a failure offers none (and is logged)."""
    try:
        async with interaction.client.db.read() as session:  # offers only: nothing to write
            return await story_choices(session, interaction, current)
    except Exception:
        log.exception("story autocomplete failed")
        return []


def shorten(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: whole if it fits, else cut (at a word
    boundary when one is near) and ended with "…"."""
    text = text.strip()
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _fair_shares(lengths: list[int], budget: int, cap: int) -> list[int]:
    """How many characters each text may have so that all fit in ``budget``: short
    texts whole, the longer ones share what is left equally (each at most ``cap``)."""
    shares = [0] * len(lengths)
    left = max(budget, 0)
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for done, i in enumerate(order):
        shares[i] = max(1, min(lengths[i], cap, left // (len(order) - done)))
        left -= shares[i]
    return shares


def fitted_embed(
    title: str, fields: list[tuple[str, str]], *, description: str = "", footer: str = ""
) -> discord.Embed:
    """An embed within Discord's limits for any input: title, description and footer
    shortened, at most 25 fields (the caller says in ``footer`` what was left out), and
    field values shortened with "…" so that everything stays within 6000 characters."""
    title = shorten(title, 256)
    description = shorten(description, 4096)
    footer = shorten(footer, 2048)
    names = [shorten(name, FIELD_NAME_SHOWN) or "—" for name, _ in fields[:EMBED_FIELDS]]
    values = [value.strip() or "—" for _, value in fields[:EMBED_FIELDS]]
    budget = EMBED_TOTAL - len(title) - len(description) - len(footer) - sum(map(len, names))
    shares = _fair_shares([len(v) for v in values], budget, EMBED_FIELD_VALUE)
    embed = discord.Embed(title=title, description=description or None)
    for name, value, share in zip(names, values, shares, strict=True):
        embed.add_field(name=name, value=shorten(value, share), inline=False)
    if footer:
        embed.set_footer(text=footer)
    return embed


class PrivateView(KahaniView):
    """Buttons on an ephemeral reply (only its user sees them), with discord.py's random
    custom_ids: they need not survive a restart. When they time out (within the 15 min an
    interaction token lives) they are taken off ``message``, so nobody clicks a dead button."""

    TIMEOUT = 600.0

    def __init__(self) -> None:
        super().__init__(timeout=self.TIMEOUT)
        # The reply the buttons are on, set once it is sent (edited through the interaction's webhook).
        self.message: discord.InteractionMessage | discord.WebhookMessage | None = None

    async def on_timeout(self) -> None:
        if self.message is not None:
            try:
                await self.message.edit(view=None)
            except discord.HTTPException as exc:
                log.info("could not remove timed-out buttons: %s", exc)


async def before_a_modal(read: Awaitable[T]) -> T:
    """Run the short database read a form needs before it opens (to check the user may
    do this, or to prefill it), bounded so the form still opens within Discord's 3 s;
    past the bound the user is told to try again."""
    try:
        return await asyncio.wait_for(read, PRE_MODAL_READ_SECONDS)
    except TimeoutError:
        raise KahaniError(msg.DISCORD_DB_BUSY) from None


async def answer(interaction: Interaction, content: str, *, ephemeral: bool = True, **kwargs: Any) -> None:
    """Answer with ``content`` (and ``view``, ``embed``…): the response, or a followup
    once :func:`within_the_deadline` deferred it. Pings nobody."""
    if interaction.response.is_done():
        await interaction.followup.send(content, ephemeral=ephemeral, allowed_mentions=NO_PINGS, **kwargs)
    else:
        await interaction.response.send_message(content, ephemeral=ephemeral, allowed_mentions=NO_PINGS, **kwargs)


def checked_text(value: str | None, field: str, limit: int, *, required: bool = False) -> str:
    """A user's text, stripped, within ``limit`` characters (and not empty when
    ``required``); else a KahaniError that names the field and the limit. Discord's
    client enforces the same limits; this is for any client that does not."""
    text = (value or "").strip()
    if required and not text:
        raise KahaniError(msg.TEXT_REQUIRED.format(field=field))
    if len(text) > limit:
        raise KahaniError(msg.TEXT_TOO_LONG.format(field=field, limit=limit, length=len(text)))
    return text


# Discord wants an answer within 3 s; past this, answer "thinking…" first (a followup
# then carries the real answer), so a loaded bot or database never loses a click. 1 s,
# not 2: under a burst (500 clicks at once) the event loop runs the deferral late, and
# 2 s left too little of Discord's 3 (bench/scale.py: 29 of 500 clicks lost at 2 s).
ACK_WITHIN = 1.0


async def within_the_deadline(
    interaction: Interaction, work: Any, *, ephemeral: bool = True, thinking: bool = True
) -> Any:
    """Await ``work``; when it takes longer than :data:`ACK_WITHIN`, defer the interaction
    while it finishes — "thinking…" (ephemeral by default) for an answer that follows,
    or, with ``thinking=False``, a deferred update for a click that edits its message.
    The fast path stays one response."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.wait_for(asyncio.shield(task), ACK_WITHIN)
    except TimeoutError:
        if not interaction.response.is_done():
            await interaction.response.defer(ephemeral=ephemeral, thinking=thinking)
        return await task


async def readable_story(session: AsyncSession, interaction: Interaction) -> Story | None:
    """The story an autocomplete is about (the ``story`` option, else this thread's or
    DM's), if the caller may see it. Writes nothing (story_for creates the user's row),
    so it runs in a read-only transaction."""
    story_id = option_story_id(interaction)
    if story_id is None:
        story = await repo.story_for_thread(session, interaction.channel_id or 0)
    elif ids.is_id(story_id):
        story = await repo.get_story(session, story_id)
    else:
        return None
    if story is None or not await allows(session, interaction, story, Need.SEE):
        return None
    return story
