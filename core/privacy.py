"""What Kahani keeps about a person, and forgetting them (``/privacy show|delete-me``).

Forgetting deletes the person's settings, their solo stories (every scene of them), their
votes and cooldowns. Group stories are other people's play too: there the person stays,
as "a former player" (their Discord id and name are gone, so exports name nobody), and a
group story they host stays with its table (moderators can still manage it)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import repository as repo
from core.models import (
    Ballot,
    GenerationStart,
    MemberRole,
    RateEvent,
    Story,
    StoryMember,
    StoryMode,
    User,
    UserSettings,
    Vote,
)

FORMER_PLAYER = "a former player"


@dataclass(frozen=True)
class Kept:
    """Everything stored about one person, in numbers and names."""

    display_name: str
    solo: list[tuple[int, str, int | None]]  # solo stories owned: (id, title, thread id)
    hosted: int  # group stories they host
    tables: int  # group stories they joined or were invited to (not their own)
    votes: int
    has_settings: bool


async def _user(session: AsyncSession, discord_id: int) -> User | None:
    return await session.scalar(select(User).where(User.discord_id == discord_id))


async def kept_about(session: AsyncSession, discord_id: int) -> Kept | None:
    """What is stored about this Discord user (None: nothing at all)."""
    user = await _user(session, discord_id)
    if user is None:
        return None
    owned = list(await session.scalars(select(Story).where(Story.owner_id == user.id).order_by(Story.id)))
    tables = await session.scalar(select(func.count()).select_from(StoryMember).where(
        StoryMember.user_id == user.id, StoryMember.role != MemberRole.OWNER.value)) or 0
    votes = await session.scalar(select(func.count()).select_from(Vote).where(Vote.user_id == user.id)) or 0
    settings = await session.get(UserSettings, user.id)
    return Kept(
        user.display_name,
        [(s.id, s.title, s.thread_id) for s in owned if s.mode == StoryMode.SOLO.value],
        sum(1 for s in owned if s.mode == StoryMode.GROUP.value), tables, votes, settings is not None,
    )


async def forget(session: AsyncSession, discord_id: int) -> Kept | None:
    """Forget the person (see the module docstring); returns what was kept before (the
    deleted solo stories' threads are for the front end to remove)."""
    kept = await kept_about(session, discord_id)
    user = await _user(session, discord_id)
    if kept is None or user is None:
        return None
    for story_id, _, _ in kept.solo:
        await repo.delete_story(session, story_id)
    for table, column in ((Vote, Vote.user_id), (UserSettings, UserSettings.user_id),
                          (RateEvent, RateEvent.user_id), (GenerationStart, GenerationStart.user_id)):
        await session.execute(delete(table).where(column == user.id))
    # Who closed a vote goes with their votes (a winner not yet written counts against the host).
    await session.execute(update(Ballot).where(Ballot.closed_by_user_id == user.id).values(closed_by_user_id=None))
    user.discord_id = None
    user.display_name = FORMER_PLAYER
    await session.flush()
    return kept
