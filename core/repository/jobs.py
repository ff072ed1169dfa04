"""Summary jobs: a rolling or chapter summary that is due, recorded so that a restart or a
second process runs it (core/summaries.py). A job is claimed like a vote is closed — one
``UPDATE … WHERE <claimable> RETURNING`` — so of two claimers exactly one wins, on SQLite
and on PostgreSQL; a claim lapses at ``claimed_until`` if its holder dies.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import JobState, SummaryJob, SummaryKind
from core.repository.leases import insert_for


async def schedule_summary(
    session: AsyncSession,
    story_id: int,
    kind: SummaryKind,
    variant_id: int,
    chapter_id: int,
    *,
    now: datetime,
) -> int:
    """Record that a summary is due (once per variant and kind: scheduling it again while
    it waits or after it ran changes nothing). Returns the job's id."""
    insert = insert_for(session)
    statement = insert(SummaryJob).values(
        story_id=story_id, kind=kind.value, variant_id=variant_id, chapter_id=chapter_id,
        state=JobState.DUE.value, attempts=0, due_at=now, created_at=now,
    ).on_conflict_do_nothing(index_elements=[SummaryJob.variant_id, SummaryJob.kind])
    await session.execute(statement)
    job_id = await session.scalar(
        select(SummaryJob.id).where(SummaryJob.variant_id == variant_id, SummaryJob.kind == kind.value)
    )
    assert job_id is not None
    return job_id


def _claimable(now: datetime) -> object:
    due = and_(SummaryJob.state == JobState.DUE.value, SummaryJob.due_at <= now)
    lapsed = and_(SummaryJob.state == JobState.RUNNING.value, SummaryJob.claimed_until < now)
    return or_(due, lapsed)


async def claim_next(
    session: AsyncSession, holder: str, *, now: datetime, ttl: timedelta
) -> SummaryJob | None:
    """Claim the job due longest (or one whose holder's claim lapsed), or None."""
    candidate = (
        select(SummaryJob.id)
        .where(_claimable(now))  # type: ignore[arg-type]
        .order_by(SummaryJob.due_at, SummaryJob.id)
        .limit(1)
        .scalar_subquery()
    )
    return await _claim(session, SummaryJob.id == candidate, _claimable(now), holder, now, ttl)


async def claim(
    session: AsyncSession, job_id: int, holder: str, *, now: datetime, ttl: timedelta
) -> SummaryJob | None:
    """Claim this job for a scene that cannot be written without it: whatever its state,
    unless another holder's claim is still good (then None: wait for it)."""
    free = or_(SummaryJob.state != JobState.RUNNING.value, SummaryJob.claimed_until < now)
    return await _claim(session, SummaryJob.id == job_id, free, holder, now, ttl)


async def _claim(
    session: AsyncSession, which: object, claimable: object, holder: str, now: datetime, ttl: timedelta
) -> SummaryJob | None:
    row = await session.execute(
        update(SummaryJob)
        .where(which, claimable)  # type: ignore[arg-type]
        .values(state=JobState.RUNNING.value, holder=holder, claimed_until=now + ttl,
                attempts=SummaryJob.attempts + 1, error=None)
        .returning(SummaryJob.id)
    )
    job_id = row.scalar_one_or_none()
    if job_id is None:
        return None
    job = await session.get_one(SummaryJob, job_id, populate_existing=True)
    return job


async def extend(session: AsyncSession, job_id: int, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Keep a claim alive while the summary is written (False: it was lost)."""
    row = await session.execute(
        update(SummaryJob)
        .where(SummaryJob.id == job_id, SummaryJob.holder == holder, SummaryJob.state == JobState.RUNNING.value)
        .values(claimed_until=now + ttl)
        .returning(SummaryJob.id)
    )
    return row.scalar_one_or_none() is not None


async def finish(
    session: AsyncSession, job_id: int, holder: str, *, now: datetime,
    error: str | None = None, retry_at: datetime | None = None,
) -> bool:
    """End a claim: done, due again at ``retry_at`` (after an error), or failed (an error
    and no retry). False when the claim was no longer ours (nothing changes then)."""
    if error is None:
        state = JobState.DONE
    else:
        state = JobState.DUE if retry_at is not None else JobState.FAILED
    row = await session.execute(
        update(SummaryJob)
        .where(SummaryJob.id == job_id, SummaryJob.holder == holder, SummaryJob.state == JobState.RUNNING.value)
        .values(state=state.value, error=error, finished_at=now, claimed_until=None,
                due_at=retry_at if retry_at is not None else SummaryJob.due_at)
        .returning(SummaryJob.id)
    )
    return row.scalar_one_or_none() is not None


async def get_job(session: AsyncSession, job_id: int) -> SummaryJob | None:
    return await session.get(SummaryJob, job_id, populate_existing=True)


async def pending_jobs(session: AsyncSession, story_id: int) -> list[SummaryJob]:
    """The story's jobs not yet done (due, running or failed), oldest first."""
    rows = await session.scalars(
        select(SummaryJob)
        .where(SummaryJob.story_id == story_id, SummaryJob.state != JobState.DONE.value)
        .order_by(SummaryJob.id)
    )
    return list(rows)


async def next_due_at(session: AsyncSession) -> datetime | None:
    """When the next job falls due (or a running claim lapses), for the worker's sleep."""
    due = await session.scalar(
        select(SummaryJob.due_at).where(SummaryJob.state == JobState.DUE.value).order_by(SummaryJob.due_at).limit(1)
    )
    lapse = await session.scalar(
        select(SummaryJob.claimed_until)
        .where(SummaryJob.state == JobState.RUNNING.value)
        .order_by(SummaryJob.claimed_until)
        .limit(1)
    )
    times = [t for t in (due, lapse) if t is not None]
    return min(times) if times else None
