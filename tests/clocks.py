"""Clocks the tests set by hand, for code that takes ``clock=`` (a callable returning an
aware UTC datetime): leases, vote deadlines, the LLM queue, generation limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """Stands still at ``start`` until a test moves it (``now`` or :meth:`advance`)."""

    def __init__(self, start: datetime = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
