"""Stories: creating one (with its owner as a member and its first chapter), finding
them (by id, owner, guild, thread, for a user) and deleting one with its whole tree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, delete, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Chapter, MemberRole, MemberStatus, Story, StoryMember, StoryMode, User


async def create_story(
    session: AsyncSession,
    owner: User,
    title: str,
    *,
    genre: str = "",
    tone: str = "",
    world_setting: str = "",
    premise: str = "",
    point_of_view: str = "second",
    scene_length: str = "medium",
    mode: str = "solo",
    guild_id: int | None = None,
    channel_id: int | None = None,
    thread_id: int | None = None,
    settings: dict[str, Any] | None = None,
    private: bool = False,
) -> Story:
    """Create a story with its owner as a member and its first (empty) chapter."""
    story = Story(
        owner_id=owner.id,
        title=title,
        genre=genre,
        tone=tone,
        world_setting=world_setting,
        premise=premise,
        point_of_view=point_of_view,
        scene_length=scene_length,
        mode=mode,
        guild_id=guild_id,
        channel_id=channel_id,
        thread_id=thread_id,
        settings=settings or {},
        private=private,
    )
    session.add(story)
    await session.flush()
    session.add(
        StoryMember(
            story_id=story.id,
            user_id=owner.id,
            role=MemberRole.OWNER.value,
            status=MemberStatus.JOINED.value,
        )
    )
    session.add(Chapter(story_id=story.id, number=1, title="Chapter 1"))
    await session.flush()
    return story


async def get_story(session: AsyncSession, story_id: int, *, for_update: bool = False) -> Story:
    """The story, or NotFound."""
    query = select(Story).where(Story.id == story_id)
    if for_update:
        query = query.with_for_update()
    story = await session.scalar(query)
    if story is None:
        raise NotFound(f"Story #{story_id} does not exist (it may have been deleted).")
    return story


async def list_stories(
    session: AsyncSession,
    *,
    owner_id: int | None = None,
    guild_id: int | None = None,
    status: str | None = None,
    limit: int = 25,
) -> Sequence[Story]:
    """Stories, newest first, filtered by owner, guild and status."""
    query = select(Story).order_by(Story.updated_at.desc(), Story.id.desc()).limit(limit)
    if owner_id is not None:
        query = query.where(Story.owner_id == owner_id)
    if guild_id is not None:
        query = query.where(Story.guild_id == guild_id)
    if status is not None:
        query = query.where(Story.status == status)
    return (await session.scalars(query)).all()


async def story_for_thread(session: AsyncSession, thread_id: int) -> Story | None:
    """The story that lives in this Discord thread (or DM channel), if any."""
    return await session.scalar(
        select(Story).where(
            (Story.thread_id == thread_id) | ((Story.channel_id == thread_id) & Story.guild_id.is_(None)))
        .order_by(Story.updated_at.desc(), Story.id.desc()).limit(1)
    )


async def stories_for_user(
    session: AsyncSession, user_id: int | None, *, guild_id: int | None = None, search: str = "", limit: int = 25
) -> Sequence[Story]:
    """Stories the user owns or plays in (and, with ``guild_id``, the server's group
    stories), newest first, optionally filtered by a piece of the title. A superset of
    what the user may see: the caller filters with the access policy (bot/access.py)."""
    visible: Any = false()
    if user_id is not None:
        member = select(StoryMember.story_id).where(
            StoryMember.user_id == user_id, StoryMember.status != MemberStatus.KICKED.value
        )
        visible = (Story.owner_id == user_id) | Story.id.in_(member)
    if guild_id is not None:
        visible = visible | ((Story.guild_id == guild_id) & (Story.mode == StoryMode.GROUP.value))
    query = select(Story).where(visible).order_by(Story.updated_at.desc(), Story.id.desc()).limit(limit)
    if search:
        query = query.where(func.lower(Story.title).contains(search.lower()))
    return (await session.scalars(query)).all()


async def delete_story(session: AsyncSession, story_id: int) -> None:
    """Delete a story and, through the schema's cascades, every row of its tree."""
    result = await session.execute(delete(Story).where(Story.id == story_id))
    # A DELETE's result is a CursorResult; AsyncSession.execute is typed as the plain Result.
    if cast("CursorResult[Any]", result).rowcount == 0:
        raise NotFound(f"Story #{story_id} does not exist (it may have been deleted).")
