"""What Kahani keeps about a person, and forgetting them (``/privacy show|delete-me``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import MemberRole, Story, StoryMember, User, UserSettings, Vote


@dataclass(frozen=True)
class Kept:
    """Everything stored about one person, in numbers and names."""

    display_name: str
    stories: list[tuple[int, str, int | None]]  # owned: (id, title, thread id)
    tables: int  # group stories they joined or were invited to (not their own)
    votes: int
    has_settings: bool


async def kept_about(session: AsyncSession, discord_id: int) -> Kept | None:
    """What is stored about this Discord user (None: nothing at all)."""
    user = await session.scalar(select(User).where(User.discord_id == discord_id))
    if user is None:
        return None
    stories = [(s.id, s.title, s.thread_id) for s in await session.scalars(
        select(Story).where(Story.owner_id == user.id).order_by(Story.id))]
    tables = await session.scalar(select(func.count()).select_from(StoryMember).where(
        StoryMember.user_id == user.id, StoryMember.role != MemberRole.OWNER.value)) or 0
    votes = await session.scalar(select(func.count()).select_from(Vote).where(Vote.user_id == user.id)) or 0
    settings = await session.get(UserSettings, user.id)
    return Kept(user.display_name, stories, tables, votes, settings is not None)


async def forget(session: AsyncSession, discord_id: int) -> Kept | None:
    """Delete the person: their stories (every scene of them), memberships, votes,
    settings and their row; scenes they wrote in others' stories stay, unattributed.
    Returns what was deleted (its threads are for the front end to remove)."""
    kept = await kept_about(session, discord_id)
    if kept is not None:
        user = await session.scalar(select(User).where(User.discord_id == discord_id))
        await session.delete(user)
        await session.flush()
    return kept
