"""Clocks for the stand-in's deadlines and rate-limit windows.

The stand-in reads time only through a clock, so a test can jump past a deadline
(the 3 s interaction answer, the 15 min token life, a rate-limit window) without
waiting for it. Values are seconds on a monotonic scale.
"""

from __future__ import annotations

import time


class MonotonicClock:
    """Real monotonic time (the default)."""

    def now(self) -> float:
        return time.monotonic()


class AdjustableClock(MonotonicClock):
    """Real monotonic time plus an offset that a test moves forward with `advance`.

    Time keeps flowing, so the client's own real sleeps (discord.py sleeps out a
    `retry_after`) still line up with the stand-in's windows after a jump.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self.offset += seconds
