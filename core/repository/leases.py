"""Generation leases: at most one generation per story at a time, taken in one
statement, kept alive by heartbeats and reclaimed when the holder stops or dies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import GenerationLease

LEASE_TTL = timedelta(seconds=30)


def insert_for(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def acquire_lease(
    session: AsyncSession,
    story_id: int,
    holder: str,
    *,
    now: datetime,
    ttl: timedelta = LEASE_TTL,
    purpose: str = "",
    frontend_ref: str | None = None,
) -> bool:
    """Take the story's generation lease if nobody holds it (or the holder's expired).

    One statement: an insert that, on conflict, takes over only an expired lease. Of two
    concurrent attempts exactly one wins, on SQLite and on PostgreSQL. ``holder`` must be
    unique per generation (e.g. process id plus a random part).
    """
    insert = insert_for(session)
    values = dict(
        story_id=story_id,
        holder=holder,
        purpose=purpose,
        frontend_ref=frontend_ref,
        started_at=now,
        heartbeat_at=now,
        expires_at=now + ttl,
    )
    statement = insert(GenerationLease).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[GenerationLease.story_id],
        set_={k: statement.excluded[k] for k in values if k != "story_id"},
        where=GenerationLease.expires_at <= statement.excluded.started_at,
    ).returning(GenerationLease.holder)
    won = await session.scalar(statement)
    return won == holder


async def heartbeat_lease(
    session: AsyncSession, story_id: int, holder: str, *, now: datetime, ttl: timedelta = LEASE_TTL
) -> bool:
    """Extend a lease this holder still has; False when it was lost (expired and taken)."""
    result = await session.execute(
        update(GenerationLease)
        .where(GenerationLease.story_id == story_id, GenerationLease.holder == holder)
        .values(heartbeat_at=now, expires_at=now + ttl)
    )
    return cast("CursorResult[Any]", result).rowcount == 1  # a CursorResult, typed as Result


async def release_lease(session: AsyncSession, story_id: int, holder: str) -> bool:
    """Give the lease back (only if this holder still has it)."""
    result = await session.execute(
        delete(GenerationLease).where(
            GenerationLease.story_id == story_id, GenerationLease.holder == holder
        )
    )
    return cast("CursorResult[Any]", result).rowcount == 1  # a CursorResult, typed as Result


async def get_lease(session: AsyncSession, story_id: int) -> GenerationLease | None:
    return await session.get(GenerationLease, story_id)


async def reclaim_leases(
    session: AsyncSession, *, now: datetime, is_dead: Callable[[str], bool] = lambda holder: False
) -> list[GenerationLease]:
    """Remove and return the leases that expired, or whose holder ``is_dead`` says has
    died (e.g. a process of this host that no longer runs): their generations will never
    finish. Each is claimed by one statement, so with several processes sweeping, each
    lease is returned to exactly one of them."""
    held = (await session.execute(select(GenerationLease.story_id, GenerationLease.holder))).all()
    dead = [(story_id, holder) for story_id, holder in held if is_dead(holder)]
    reclaimed = await reclaim_expired_leases(session, now=now)
    for story_id, holder in dead:
        row = (
            await session.execute(
                delete(GenerationLease)
                .where(GenerationLease.story_id == story_id, GenerationLease.holder == holder)
                .returning(*GenerationLease.__table__.columns)
            )
        ).one_or_none()
        if row is not None:
            reclaimed.append(GenerationLease(**row._asdict()))
    return reclaimed


async def reclaim_expired_leases(session: AsyncSession, *, now: datetime) -> list[GenerationLease]:
    """Remove the leases whose holder stopped heart-beating and return them (with their
    ``frontend_ref``, so the front end can mark those messages interrupted). Live leases
    are never touched."""
    rows = await session.execute(
        delete(GenerationLease)
        .where(GenerationLease.expires_at <= now)
        .returning(
            GenerationLease.story_id,
            GenerationLease.holder,
            GenerationLease.purpose,
            GenerationLease.frontend_ref,
            GenerationLease.started_at,
            GenerationLease.heartbeat_at,
            GenerationLease.expires_at,
        )
    )
    return [GenerationLease(**row._asdict()) for row in rows]
