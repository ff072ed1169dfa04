"""The fair LLM queue: at most LLM_MAX_CONCURRENCY generations at once, across processes.

A local LLM server (LM Studio, Ollama, llama.cpp) writes one or a few replies at a time;
sending it more only makes every reply slower. So before it streams, a generation takes
one of ``limit`` **slots**, and while it waits its player sees where it stands in line.

- Every waiting or running generation is a row of ``llm_queue``. All changes to the queue
  happen in short transactions serialised across processes (a PostgreSQL advisory
  transaction lock; on SQLite, write transactions are already one at a time).
- Slots are granted in those transactions: rows whose process stopped refreshing them
  (it crashed) are deleted after ``ttl``, then free slots go to the waiting rows in
  **round-robin order of their lane** (a Discord server, or a DM player): the lane served
  longest ago first, first come first served within a lane — so one busy server cannot
  starve the rest.
- Each process runs one poller task while it has rows: every ``poll_interval`` (and at
  once when one of its generations ends) one transaction refreshes its rows, grants free
  slots and reads where its waiting rows stand. The database sees a few small
  transactions a second per process, however many stories wait.

``limit`` 0 turns the queue off (hosted APIs that take any number of requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import messages as msg
from core.db import Database
from core.errors import KahaniError
from core.models import GenerationStart, LLMLane, LLMQueueEntry, utcnow
from core.repository import insert_for

log = logging.getLogger(__name__)

QUEUE_LOCK_KEY = 0x4B61686E5155  # "KahnQU": serialises queue transactions on PostgreSQL
DEFAULT_TTL = timedelta(seconds=30)
LANE_MEMORY = timedelta(hours=1)  # a lane not served for this long counts as never served
LIMIT_WINDOW = timedelta(minutes=1)
BACKGROUND_PREFIX = "~background:"  # lanes served after all others


class SlotLost(KahaniError):
    """This process stopped refreshing its place in line for longer than the ttl (or
    the story was deleted): the row is gone."""


def lane_for(guild_id: int | None, owner_id: int) -> str:
    """Who takes turns: a server's stories share one lane; each DM player has their own."""
    return f"guild:{guild_id}" if guild_id is not None else f"user:{owner_id}"


def round_robin(rows: Sequence[tuple[int, str, datetime | None]]) -> list[int]:
    """The order in which waiting rows get slots.

    ``rows`` are ``(id, lane, lane_served_at)`` in arrival order. Lanes take turns — the
    one served longest ago (or never) first — and within a lane rows keep their order:
    round 1 takes each lane's first row, round 2 each lane's second, and so on.
    """
    lanes: dict[str, list[int]] = {}
    served: dict[str, datetime | None] = {}
    for row_id, lane, served_at in rows:
        lanes.setdefault(lane, []).append(row_id)
        served[lane] = served_at
    turn = {lane: n for n, lane in enumerate(lanes)}  # first arrival breaks ties
    # Background lanes (summary jobs, core/summaries.py) only after every player's scene.
    ordered = sorted(lanes, key=lambda lane: (lane.startswith(BACKGROUND_PREFIX), served[lane] is not None,
                                              served[lane] or 0, turn[lane]))
    return [
        row_id
        for round_rows in itertools.zip_longest(*(lanes[lane] for lane in ordered))
        for row_id in round_rows
        if row_id is not None
    ]


async def _lock(session: AsyncSession) -> None:
    """Take the queue for this transaction, before reading the clock or anything else."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": QUEUE_LOCK_KEY})
    else:  # the first statement opens SQLite's write transaction (BEGIN IMMEDIATE)
        await session.execute(text("SELECT 1"))


async def grant(session: AsyncSession, *, limit: int, now: datetime, ttl: timedelta) -> tuple[list[int], int]:
    """Free expired slots and give free ones to the first in line. Call under :func:`_lock`.

    Returns the waiting rows' ids in line order (after this grant) and the number of
    slots now running.
    """
    await session.execute(delete(LLMQueueEntry).where(LLMQueueEntry.expires_at <= now))
    await session.execute(delete(LLMLane).where(LLMLane.served_at <= now - LANE_MEMORY))
    running = await session.scalar(
        select(func.count()).select_from(LLMQueueEntry).where(LLMQueueEntry.state == "running")
    ) or 0
    rows = (
        await session.execute(
            select(LLMQueueEntry.id, LLMQueueEntry.lane, LLMLane.served_at)
            .outerjoin(LLMLane, LLMLane.lane == LLMQueueEntry.lane)
            .where(LLMQueueEntry.state == "waiting")
            .order_by(LLMQueueEntry.id)  # arrival order: rows are added under the lock
        )
    ).all()
    order = round_robin([(row_id, lane, served_at) for row_id, lane, served_at in rows])
    free = max(0, limit - running)
    granted, order = order[:free], order[free:]
    if granted:
        await session.execute(
            update(LLMQueueEntry)
            .where(LLMQueueEntry.id.in_(granted))
            .values(state="running", granted_at=now, expires_at=now + ttl)
        )
        lane_of = {row_id: lane for row_id, lane, _ in rows}
        insert = insert_for(session)
        for n, row_id in enumerate(granted):  # later grants count as served later
            statement = insert(LLMLane).values(lane=lane_of[row_id], served_at=now + timedelta(microseconds=n))
            await session.execute(statement.on_conflict_do_update(
                index_elements=[LLMLane.lane], set_={"served_at": statement.excluded.served_at}))
    return order, running + len(granted)


# --- per-user and per-server limits ---------------------------------------------------


@dataclass(frozen=True)
class GenerationLimits:
    """Generations one user (or one server) may start per minute; 0 = no limit."""

    per_user: int = 0
    per_guild: int = 0

    @property
    def active(self) -> bool:
        return self.per_user > 0 or self.per_guild > 0


class RateLimited(KahaniError):
    """Too many generations asked for in the last minute; ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def check_limits(
    session: AsyncSession, limits: GenerationLimits, *, user_id: int | None, guild_id: int | None, now: datetime
) -> None:
    """Raise :class:`RateLimited` when ``user_id`` or ``guild_id`` started as many
    generations in the last minute as they may (a read: front ends ask before they post)."""
    since = now - LIMIT_WINDOW
    checks = [
        (limits.per_user, GenerationStart.user_id, user_id, msg.RATE_LIMITED_USER),
        (limits.per_guild, GenerationStart.guild_id, guild_id, msg.RATE_LIMITED_GUILD),
    ]
    for cap, column, key, template in checks:
        if cap <= 0 or key is None:
            continue
        starts = (
            await session.scalars(
                select(GenerationStart.started_at)
                .where(column == key, GenerationStart.started_at > since)
                .order_by(GenerationStart.started_at.desc())
                .limit(cap)
            )
        ).all()
        if len(starts) >= cap:
            retry_after = max(1.0, (starts[-1] + LIMIT_WINDOW - now).total_seconds())
            raise RateLimited(template.format(count=cap, seconds=round(retry_after + 0.49)), retry_after)


async def admit(
    session: AsyncSession, limits: GenerationLimits, *, user_id: int | None, guild_id: int | None, now: datetime
) -> None:
    """Count one generation for ``user_id`` and ``guild_id``, or raise :class:`RateLimited`
    (counting nothing) when either is at its limit for the last minute."""
    if not limits.active:
        return
    await session.execute(delete(GenerationStart).where(GenerationStart.started_at <= now - LIMIT_WINDOW))
    await check_limits(session, limits, user_id=user_id, guild_id=guild_id, now=now)
    session.add(GenerationStart(user_id=user_id, guild_id=guild_id, started_at=now))


# --- the queue ------------------------------------------------------------------------


class Ticket:
    """One generation's place in line. ``async for position in ticket.wait()`` until it
    holds a slot; ``await ticket.release()`` when the LLM is done (always)."""

    def __init__(self, queue: LLMQueue, row_id: int, story_id: int) -> None:
        self.queue = queue
        self.id = row_id
        self.story_id = story_id
        self.position: int | None = None  # 1 = next in line; None once granted
        self.granted = False
        self.lost = False
        self.waited = 0.0  # seconds from entering the line to holding a slot
        self.released = False
        self._entered = time.perf_counter()
        self._changed = asyncio.Event()

    async def wait(self) -> AsyncIterator[int]:
        """The position in line each time it changes; returns once a slot is held."""
        shown: int | None = None
        while True:
            if self.lost:
                raise SlotLost(msg.QUEUE_PLACE_LOST)
            if self.granted:
                return
            if self.position is not None and self.position != shown:
                shown = self.position
                yield shown
            self._changed.clear()
            if not (self.granted or self.lost or self.position != shown):
                await self._changed.wait()

    async def release(self) -> None:
        """Give the slot (or the place in line) back; the next in line gets it at once."""
        if self.released:
            return
        self.released = True
        await self.queue._release(self)

    def _update(self, *, granted: bool = False, position: int | None = None, lost: bool = False) -> None:
        if granted and not self.granted:
            self.granted = True
            self.position = None
            self.waited = time.perf_counter() - self._entered
        elif lost:
            self.lost = True
        elif not self.granted:
            self.position = position
        self._changed.set()


class LLMQueue:
    """One per process (see the module docstring). ``limit`` 0: no queue at all."""

    def __init__(
        self,
        db: Database,
        limit: int,
        *,
        holder_prefix: str = "",
        ttl: timedelta = DEFAULT_TTL,
        poll_interval: float = 0.25,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if limit < 0:
            raise ValueError("limit must be 0 (no queue) or more")
        self.db = db
        self.limit = limit
        self.holder = f"{holder_prefix}:{uuid.uuid4().hex[:8]}" if holder_prefix else uuid.uuid4().hex[:12]
        self.ttl = ttl
        self.poll_interval = poll_interval
        self.clock = clock
        self.waiting = 0  # in line across all processes, as last seen
        self.running = 0  # slots held across all processes, as last seen
        self._tickets: dict[int, Ticket] = {}
        # This process's queue transactions take turns here first, so at most one of its
        # database connections waits for the queue's lock (a burst of clicks must not
        # hold the whole pool while the line is busy).
        self._local = asyncio.Lock()
        self._kick = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._local, self.db.transaction() as s:
            await _lock(s)
            yield s

    async def enter(self, story_id: int, lane: str) -> Ticket:
        """Join the line (and take a slot at once if one is free and it is our turn)."""
        if self._closed:
            raise SlotLost(msg.QUEUE_PLACE_LOST)
        async with self._transaction() as s:
            now = self.clock()
            entry = LLMQueueEntry(holder=self.holder, story_id=story_id, lane=lane, state="waiting",
                                  enqueued_at=now, expires_at=now + self.ttl)
            s.add(entry)
            await s.flush()
            order, running = await grant(s, limit=self.limit, now=now, ttl=self.ttl)
        ticket = Ticket(self, entry.id, story_id)
        self._tickets[ticket.id] = ticket
        self._apply(order, running, {ticket.id: "waiting" if ticket.id in order else "running"})
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="kahani-llm-queue")
        return ticket

    async def close(self) -> None:
        """Stop polling and give back this process's rows (best effort: they expire)."""
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for ticket in list(self._tickets.values()):
            with contextlib.suppress(Exception):
                await ticket.release()

    # --- internals -----------------------------------------------------------------

    async def _release(self, ticket: Ticket) -> None:
        self._tickets.pop(ticket.id, None)
        try:
            async with self._transaction() as s:
                await s.execute(delete(LLMQueueEntry).where(LLMQueueEntry.id == ticket.id))
                order, running = await grant(s, limit=self.limit, now=self.clock(), ttl=self.ttl)
        except Exception:
            log.warning("could not give back LLM slot %s (it expires on its own)", ticket.id, exc_info=True)
            return
        self.waiting, self.running = len(order), running
        self._kick.set()  # our own waiters may have been granted the slot: tell them now

    async def _poll(self) -> None:
        while self._tickets and not self._closed:
            try:
                await self._tick()
            except Exception:
                log.warning("LLM queue poll failed; trying again", exc_info=True)
            waiting_here = any(not t.granted for t in self._tickets.values())
            interval = self.poll_interval if waiting_here else self.ttl.total_seconds() / 4
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._kick.wait()
            self._kick.clear()

    async def _tick(self) -> None:
        ids = list(self._tickets)
        if not ids:
            return
        async with self._transaction() as s:
            now = self.clock()
            await s.execute(
                update(LLMQueueEntry).where(LLMQueueEntry.id.in_(ids)).values(expires_at=now + self.ttl)
            )
            order, running = await grant(s, limit=self.limit, now=now, ttl=self.ttl)
            states = dict(
                (await s.execute(select(LLMQueueEntry.id, LLMQueueEntry.state).where(LLMQueueEntry.id.in_(ids)))).all()
            )
        self._apply(order, running, states, ids)

    def _apply(self, order: list[int], running: int, states: dict[int, str], ids: Sequence[int] | None = None) -> None:
        self.waiting, self.running = len(order), running
        place = {row_id: n for n, row_id in enumerate(order, start=1)}
        for row_id in ids if ids is not None else states:
            ticket = self._tickets.get(row_id)
            if ticket is None:
                continue
            state = states.get(row_id)
            if state is None:
                log.warning("story %s lost its place in the LLM queue (row %s expired)", ticket.story_id, row_id)
                ticket._update(lost=True)
                self._tickets.pop(row_id, None)
            elif state == "running":
                ticket._update(granted=True)
            else:
                ticket._update(position=place.get(row_id))
