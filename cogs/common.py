"""What every story cog needs: which story an interaction is about, and who may do what.

Every handler re-checks in the database (DESIGN §4): a button or command never trusts
what it was built with. Denials are :class:`~core.errors.KahaniError`s, which the error
funnel turns into short ephemeral replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from sqlalchemy.ext.asyncio import AsyncSession

from core import messages as msg
from core import repository as repo
from core.errors import KahaniError, NotFound
from core.models import MemberRole, MemberStatus, Story, StoryMode, User


class NotAllowed(KahaniError):
    """The user may not do this to this story."""


@dataclass(frozen=True)
class Actor:
    """The person behind an interaction, as the database knows them."""

    user: User
    discord_id: int
    can_manage_threads: bool  # in the interaction's channel (False in DMs)


async def actor(session: AsyncSession, interaction: discord.Interaction[Any]) -> Actor:
    """The interaction's user (created on first sight), with their channel permissions."""
    who = interaction.user
    user = await repo.get_or_create_user(session, who.id, who.display_name)
    permissions = getattr(interaction, "permissions", None)
    manage = bool(interaction.guild_id and permissions is not None and permissions.manage_threads)
    return Actor(user=user, discord_id=who.id, can_manage_threads=manage)


async def story_here(
    session: AsyncSession, interaction: discord.Interaction[Any], story_id: int | None = None
) -> Story:
    """The story a command is about: the one named, else the one of this thread or DM."""
    if story_id is not None:
        story = await repo.get_story(session, story_id)
    else:
        story = await repo.story_for_thread(session, interaction.channel_id or 0)
        if story is None:
            raise NotFound(msg.NO_STORY_HERE)
    if story.guild_id is not None and interaction.guild_id not in (None, story.guild_id):
        raise NotFound(msg.STORY_IN_ANOTHER_SERVER)
    return story


async def ensure_can_play(session: AsyncSession, story: Story, who: Actor) -> None:
    """Solo stories: only the owner. Group stories: the owner and members not kicked."""
    if story.owner_id == who.user.id:
        return
    if story.mode == StoryMode.GROUP.value:
        member = await repo.get_member(session, story.id, who.user.id)
        if member is None or member.status != MemberStatus.KICKED.value:
            return
        raise NotAllowed(msg.NOT_A_PLAYER_KICKED)
    raise NotAllowed(msg.NOT_YOUR_STORY)


def ensure_can_manage(story: Story, who: Actor) -> None:
    """Ending, deleting, settings, chapters, characters: the owner or a member with
    Manage Threads in the story's server."""
    if story.owner_id == who.user.id or (story.guild_id is not None and who.can_manage_threads):
        return
    raise NotAllowed(msg.NOT_YOUR_STORY_TO_MANAGE)


def is_owner_role(role: str) -> bool:
    return role == MemberRole.OWNER.value


async def story_choices(
    session: AsyncSession, interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[int]]:
    """Autocomplete for a ``story`` option: your stories and this server's, by title."""
    user = await repo.get_or_create_user(session, interaction.user.id, interaction.user.display_name)
    stories = await repo.stories_for_user(
        session, user.id, guild_id=interaction.guild_id, search=current.strip(), limit=25
    )
    return [
        app_commands.Choice(name=f"{s.title[:90]} (#{s.id})", value=s.id) for s in stories
    ]
