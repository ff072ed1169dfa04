"""A story's members: who is invited, joined or kicked, and a user's membership
status across stories. The owner is a member from the start (stories.create_story)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict
from core.models import MemberRole, MemberStatus, StoryMember


async def member_statuses(session: AsyncSession, story_ids: Sequence[int], user_id: int) -> dict[int, str]:
    """The user's membership status in each of these stories they are a member of."""
    if not story_ids:
        return {}
    rows = await session.execute(
        select(StoryMember.story_id, StoryMember.status).where(
            StoryMember.user_id == user_id, StoryMember.story_id.in_(story_ids))
    )
    return {story_id: status for story_id, status in rows}


async def get_member(session: AsyncSession, story_id: int, user_id: int) -> StoryMember | None:
    return await session.get(StoryMember, (story_id, user_id))


async def set_member(
    session: AsyncSession, story_id: int, user_id: int, status: MemberStatus
) -> StoryMember:
    """Add or change a member (invited, joined, kicked). The owner cannot be changed."""
    member = await session.get(StoryMember, (story_id, user_id))
    if member is None:
        member = StoryMember(story_id=story_id, user_id=user_id, status=status.value)
        session.add(member)
    elif member.role == MemberRole.OWNER.value:
        raise Conflict("The story's owner is always a member.")
    else:
        member.status = status.value
    await session.flush()
    return member


async def list_members(session: AsyncSession, story_id: int) -> Sequence[StoryMember]:
    query = select(StoryMember).where(StoryMember.story_id == story_id).order_by(StoryMember.joined_at)
    return (await session.scalars(query)).all()
