"""Rate limits as Discord applies them to a bot.

Per-route buckets keyed by the route's bucket and its major parameter (channel,
guild or webhook): message creates and message edits are separate buckets of 5 per
5 s per channel, each a fixed window that starts at the bucket's first request.
A global limit of 50 requests per second applies to every bot-authenticated request
except interaction callbacks. Every answer carries `X-RateLimit-*` headers.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

from .clock import MonotonicClock


@dataclass(frozen=True)
class BucketRule:
    name: str
    limit: int
    window: float


MESSAGE_CREATE = BucketRule("message-create", 5, 5.0)
MESSAGE_EDIT = BucketRule("message-edit", 5, 5.0)
DEFAULT = BucketRule("default", 1000, 1.0)  # routes we do not model tightly: headers, no pressure

ROUTE_RULES = {
    ("POST", "/channels/{channel_id}/messages"): MESSAGE_CREATE,
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"): MESSAGE_EDIT,
}
MAJOR_PARAMETERS = ("channel_id", "guild_id", "webhook_id", "interaction_id")


@dataclass
class Window:
    limit: int
    length: float
    started: float | None = None
    used: int = 0

    def refresh(self, now: float) -> None:
        if self.started is not None and now >= self.started + self.length:
            self.started, self.used = None, 0

    def reset_after(self, now: float) -> float:
        return self.length if self.started is None else max(0.0, self.started + self.length - now)

    def take(self, now: float) -> bool:
        self.refresh(now)
        if self.used >= self.limit:
            return False
        if self.started is None:
            self.started = now
        self.used += 1
        return True


@dataclass
class Decision:
    allowed: bool
    headers: dict[str, str]
    retry_after: float = 0.0
    is_global: bool = False
    bucket: str = ""


def _retry_after(seconds: float) -> float:
    # Rounded up to the millisecond so a client sleeping exactly this long is past the window.
    return math.ceil(seconds * 1000) / 1000


@dataclass
class RateLimiter:
    clock: MonotonicClock = field(default_factory=MonotonicClock)
    global_limit: int = 50
    route_rules: dict[tuple[str, str], BucketRule] = field(default_factory=lambda: dict(ROUTE_RULES))
    windows: dict[tuple[str, str], Window] = field(default_factory=dict)
    global_window: Window | None = None

    def check(self, method: str, template: str, params: dict[str, str], *, counts_globally: bool) -> Decision:
        now = self.clock.now()
        rule = self.route_rules.get((method, template), DEFAULT)
        bucket_name = rule.name if rule is not DEFAULT else f"{method} {template}"
        bucket_hash = hashlib.sha1(bucket_name.encode()).hexdigest()[:32]
        major = "+".join(params[k] for k in MAJOR_PARAMETERS if k in params)
        window = self.windows.setdefault((bucket_hash, major), Window(rule.limit, rule.window))

        if counts_globally:
            if self.global_window is None:
                self.global_window = Window(self.global_limit, 1.0)
            if not self.global_window.take(now):
                retry = _retry_after(self.global_window.reset_after(now))
                headers = {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
                return Decision(False, self._with_retry(headers, retry), retry, True, "global")

        allowed = window.take(now)
        reset_after = window.reset_after(now)
        headers = {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(max(0, window.limit - window.used)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{_retry_after(reset_after):.3f}",
            "X-RateLimit-Bucket": bucket_hash,
        }
        if allowed:
            return Decision(True, headers, bucket=bucket_name)
        retry = _retry_after(reset_after)
        headers["X-RateLimit-Scope"] = "user"
        return Decision(False, self._with_retry(headers, retry), retry, False, bucket_name)

    @staticmethod
    def _with_retry(headers: dict[str, str], retry: float) -> dict[str, str]:
        return {**headers, "Retry-After": str(math.ceil(retry)), "Via": "1.1 google"}
