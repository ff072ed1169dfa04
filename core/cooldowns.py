"""Cooldowns for costly things a user asks for (an export), counted in the database so
that they hold across restarts and processes (``rate_events``)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import messages as msg
from core.errors import KahaniError
from core.models import RateEvent

KEEP = timedelta(days=1)  # rows older than this are pruned as new ones come


class CoolingDown(KahaniError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def take(session: AsyncSession, kind: str, user_id: int, *, every: timedelta, now: datetime) -> None:
    """Record that ``user_id`` does ``kind`` now, unless they did within ``every``
    (then :class:`CoolingDown` saying when they may again). Call in the transaction
    that goes on to do it; a zero ``every`` never refuses."""
    if every > timedelta(0):
        last = await session.scalar(
            select(RateEvent.at).where(RateEvent.kind == kind, RateEvent.user_id == user_id, RateEvent.at > now - every)
            .order_by(RateEvent.at.desc()).limit(1)
        )
        if last is not None:
            wait = (last + every - now).total_seconds()
            raise CoolingDown(msg.COOLDOWN.format(seconds=max(1, math.ceil(wait))), wait)
    await session.execute(delete(RateEvent).where(RateEvent.kind == kind, RateEvent.user_id == user_id,
                                                  RateEvent.at < now - KEEP))
    session.add(RateEvent(kind=kind, user_id=user_id, at=now))


async def give_back(session: AsyncSession, kind: str, user_id: int, *, at: datetime) -> None:
    """Undo :func:`take` at ``at``: what it allowed failed, so it does not count."""
    await session.execute(delete(RateEvent).where(RateEvent.kind == kind, RateEvent.user_id == user_id,
                                                  RateEvent.at == at))
