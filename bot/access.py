"""The Discord side of the access policy (``core/access.py``).

The policy decides; this module tells it what only Discord knows — whether the user can
see the story's thread and holds Manage Threads *in that thread* (not in the channel the
command was typed in), and whether the thread is private — and loads the story's rows.
Every command, component, form and autocomplete goes through :func:`story_for`,
:func:`story_of_variant` or :func:`visible_stories`.

Nothing here sends anything: a refusal is raised (``core.access.Refused`` or ``Hidden``)
and the error funnel answers it ephemerally. Nothing is written for a refused request,
not even the caller's user row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import discord
from sqlalchemy.ext.asyncio import AsyncSession

from bot.types import Interaction
from core import access, ids
from core import messages as msg
from core import repository as repo
from core.access import Actor, Hidden, Need, StoryFacts
from core.errors import KahaniError, NotFound
from core.models import Story, User


@dataclass(frozen=True)
class Caller:
    """The user behind an interaction, once they may act: their row (created on first
    sight), their Discord id and — for a story — the policy's Actor, which core services
    that change the story take (core/stories.py)."""

    user: User
    discord_id: int
    actor: Actor


@dataclass(frozen=True)
class ThreadView:
    """What the user can do in the story's own thread, as Discord computes it."""

    sees: bool = False
    manages: bool = False
    private: bool = False


def thread_view(interaction: Interaction, story: Story) -> ThreadView:
    """The user's permissions in ``story``'s thread (or, for a story without one, its
    channel), from the gateway cache: no REST call. Outside the story's server: none."""
    if story.guild_id is None or interaction.guild_id != story.guild_id:
        return ThreadView()
    place_id = story.thread_id or story.channel_id
    if place_id is not None and interaction.channel_id == place_id and interaction.channel is not None:
        # Typed in the thread itself: Discord computed the permissions for us.
        perms = interaction.permissions
        private = getattr(interaction.channel, "type", None) == discord.ChannelType.private_thread
        return ThreadView(perms.view_channel, perms.manage_threads, private)
    guild = interaction.client.get_guild(story.guild_id)
    member = interaction.user
    if guild is None or not isinstance(member, discord.Member):
        return ThreadView()
    place: Any = guild.get_channel_or_thread(place_id) if place_id is not None else None
    if place is None and story.channel_id is not None:
        place = guild.get_channel(story.channel_id)  # the thread is gone or not cached: its channel
    if place is None:
        return ThreadView()
    try:
        perms = place.permissions_for(member)
    except discord.ClientException:  # a thread whose parent is not cached
        return ThreadView()
    private = getattr(place, "type", None) == discord.ChannelType.private_thread
    return ThreadView(perms.view_channel, perms.manage_threads, private)


def facts(story: Story, member_status: str | None, view: ThreadView) -> StoryFacts:
    """What the policy needs of ``story``; a thread Discord says is private makes the
    story private whatever its row says (stories made before the ``private`` column)."""
    return access.facts_of(story, member_status, private_thread=view.private)


def actor(interaction: Interaction, user: User | None, view: ThreadView) -> Actor:
    return Actor(user.id if user is not None else None, interaction.guild_id, view.sees, view.manages)


async def decide(session: AsyncSession, interaction: Interaction, story: Story,
                 need: Need, *, shown: bool = False) -> tuple[StoryFacts, Actor]:
    """The facts and the actor for ``story`` (no writes); raises the policy's refusal.
    ``shown``: the interaction comes from the story's own message (core.access.refusal)."""
    user = await repo.find_user(session, interaction.user.id)
    view = thread_view(interaction, story)
    member = await repo.get_member(session, story.id, user.id) if user is not None else None
    found = facts(story, member.status if member is not None else None, view)
    who = actor(interaction, user, view)
    access.require(need, found, who, shown=shown)
    return found, who


async def allows(session: AsyncSession, interaction: Interaction, story: Story, need: Need) -> bool:
    """Whether the caller may do ``need`` to ``story`` (e.g. to offer an Edit button)."""
    try:
        await decide(session, interaction, story, need)
    except KahaniError:
        return False
    return True


async def check(session: AsyncSession, interaction: Interaction, story: Story,
                need: Need, *, shown: bool = False) -> Caller:
    """The caller, if they may do ``need`` to ``story`` (else the policy's refusal)."""
    _, actor = await decide(session, interaction, story, need, shown=shown)
    who = interaction.user
    user = await repo.get_or_create_user(session, who.id, who.display_name)
    return Caller(user, who.id, replace(actor, user_id=user.id))


def play_check(interaction: Interaction) -> Callable[[Story, int, str | None], None]:
    """The access check a vote makes inside its own transaction (``VoteService.cast_as``),
    from the rows that transaction reads: no extra round trip on a vote's path."""
    def require(story: Story, user_id: int, member_status: str | None) -> None:
        view = thread_view(interaction, story)
        access.require(Need.PLAY, facts(story, member_status, view),
                       Actor(user_id, interaction.guild_id, view.sees, view.manages), shown=True)
    return require


async def story_for(session: AsyncSession, interaction: Interaction, story_id: int | None,
                    need: Need, *, shown: bool = False) -> tuple[Story, Caller]:
    """The story a command is about — the one named, else the one of this thread or DM —
    if the caller may do ``need`` to it. A story that does not exist and one the caller
    may not see get the same answer (unless ``shown``: asked from the story's message)."""
    if story_id is None:
        story = await repo.story_for_thread(session, interaction.channel_id or 0)
        if story is None:
            raise NotFound(msg.NO_STORY_HERE)
    else:
        if not ids.is_id(story_id):  # no story (core/ids.py): the answer for one the caller cannot see
            raise Hidden()
        try:
            story = await repo.get_story(session, story_id)
        except NotFound:
            raise Hidden() from None
    return story, await check(session, interaction, story, need, shown=shown)


async def story_of_variant(session: AsyncSession, interaction: Interaction, variant_id: int,
                           need: Need) -> tuple[Story, Caller]:
    """The story a scene component is about, if the caller may do ``need`` to it."""
    story = await repo.get_story(session, await repo.variant_story_id(session, variant_id))
    return story, await check(session, interaction, story, need, shown=True)


async def visible_stories(session: AsyncSession, interaction: Interaction, *, search: str = "",
                          limit: int = 25) -> list[Story]:
    """The stories the caller may see, newest first (autocomplete, ``/story list``): their
    own and those they play, and — in a server — that server's stories they can see."""
    user = await repo.find_user(session, interaction.user.id)
    candidates = await repo.stories_for_user(
        session, user.id if user is not None else None, guild_id=interaction.guild_id, search=search,
        limit=limit * 4)
    statuses = await repo.member_statuses(session, [s.id for s in candidates], user.id) if user is not None else {}
    shown = []
    for story in candidates:
        view = thread_view(interaction, story)
        if access.can_see(facts(story, statuses.get(story.id), view), actor(interaction, user, view)):
            shown.append(story)
    return shown[:limit]
