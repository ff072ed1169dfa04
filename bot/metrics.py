"""Prometheus metrics and a health check, served over HTTP when ``METRICS_PORT`` is set.

Every bot has its own :class:`Metrics` (its own ``CollectorRegistry``, not
prometheus-client's global one: tests run several bots in one process). They are fed
from the Discord layer, so the story engine stays Discord-free and metric-free:

- generations: :meth:`Metrics.watch` wraps the engine's event stream where
  ``ScenePlayer.play`` (bot/player.py) consumes it (started, finished, failed, time to first token, tokens/s);
- Discord REST: an ``aiohttp.TraceConfig`` on discord.py's HTTP session (every request,
  interaction callbacks and webhooks included, and the 429s among them);
- narration underruns and vote closes: :meth:`Metrics.instrument` wraps the narration
  cog's "job ended" callback and the vote service's two close paths once the cogs are
  loaded (a reloaded cog is no longer counted).

:func:`serve` runs ``GET /metrics`` (Prometheus text format) and ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import discord.http
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import text

from core.engine import EngineEvent, Failed, Queued, SceneDone, SceneText, SlotGranted, UsageReport
from core.errors import KahaniError

if TYPE_CHECKING:
    from bot.app import KahaniBot
    from bot.settings import Settings

log = logging.getLogger(__name__)

# Seconds each /healthz check may take; a slower service is reported as "error".
HEALTH_TIMEOUT = 3.0
# Retry kinds (cogs/stories.py) whose first SceneText is the old text shown again, not
# the model's first token.
_PREFIXED_KINDS = frozenset({"cont"})


class MetricsError(KahaniError):
    """The metrics endpoint cannot start (the port is taken, the host is wrong)."""


class Metrics:
    """One bot's metrics, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.generations_started = Counter(
            "kahani_generations_started", "Generations started, by kind (open, choose, act, regen, cont, branch)",
            ["kind"], registry=r)
        self.generations_finished = Counter(
            "kahani_generations_finished", "Generations written and stored, by kind", ["kind"], registry=r)
        self.generations_failed = Counter(
            "kahani_generations_failed",
            "Generations that stored nothing, by kind and failure kind (the engine's, or interrupted)",
            ["kind", "reason"], registry=r)
        self.first_token = Histogram(
            "kahani_generation_first_token_seconds", "Seconds from starting a generation to its first story text",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 180), registry=r)
        self.tokens_per_second = Histogram(
            "kahani_generation_tokens_per_second",
            "Completion tokens (as the server reports them) per second of streaming after the first token",
            buckets=(1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000), registry=r)
        self.rest_requests = Counter(
            "kahani_discord_rest_requests", "Discord REST requests answered, by method and status",
            ["method", "status"], registry=r)
        self.rest_ratelimited = Counter(
            "kahani_discord_rest_ratelimited", "Discord REST 429 answers, by X-RateLimit-Scope",
            ["scope"], registry=r)
        self.narrations = Counter("kahani_narrations_finished", "Narrations that ended", registry=r)
        self.narration_underruns = Counter(
            "kahani_narration_underruns", "Gaps in narration audio (played silence after audio had started)",
            registry=r)
        self.queue_wait = Histogram(
            "kahani_llm_queue_wait_seconds",
            "Seconds a generation waited for an LLM slot (LLM_MAX_CONCURRENCY), when it had to wait",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=r)
        self.queue_length = Gauge(
            "kahani_llm_queue_length",
            "Generations waiting for an LLM slot, across all processes (as this process last saw it)",
            registry=r)
        self.queue_running = Gauge(
            "kahani_llm_queue_running", "LLM slots in use, across all processes (as this process last saw it)",
            registry=r)
        self.vote_closes = Counter(
            "kahani_vote_closes", "Ballots this process closed, by reason (deadline, everyone, host)",
            ["reason"], registry=r)

    # --- generations -------------------------------------------------------------------

    async def watch(self, events: AsyncIterator[EngineEvent], kind: str) -> AsyncIterator[EngineEvent]:
        """``events`` passed through unchanged, counted on the way."""
        self.generations_started.labels(kind).inc()
        started = time.perf_counter()
        first_at: float | None = None
        skip_text = kind in _PREFIXED_KINDS
        outcome = False
        waited = False
        try:
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    if isinstance(event, Queued):
                        waited = True
                    elif isinstance(event, SlotGranted):
                        if waited:
                            self.queue_wait.observe(event.waited)
                        started = time.perf_counter()  # time to first token: from the slot on
                    elif isinstance(event, SceneText):
                        if skip_text:
                            skip_text = False
                        elif first_at is None:
                            first_at = time.perf_counter()
                            self.first_token.observe(first_at - started)
                    elif isinstance(event, UsageReport) and first_at is not None:
                        seconds = time.perf_counter() - first_at
                        if seconds > 0 and event.completion_tokens > 1:
                            self.tokens_per_second.observe(event.completion_tokens / seconds)
                    elif isinstance(event, SceneDone):
                        outcome = True
                        self.generations_finished.labels(kind).inc()
                    elif isinstance(event, Failed):
                        outcome = True
                        self.generations_failed.labels(kind, event.kind).inc()
                    yield event
        finally:
            if not outcome:  # cancelled (shutdown) or the front end gave up on it
                self.generations_failed.labels(kind, "interrupted").inc()

    # --- Discord REST ------------------------------------------------------------------

    def discord_trace(self) -> aiohttp.TraceConfig:
        """For ``discord.Client(http_trace=...)``: counts the REST answers (not the
        gateway's websocket) and the 429s among them."""
        trace = aiohttp.TraceConfig()

        async def on_end(_: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
            if not str(params.url).startswith(discord.http.Route.BASE):
                return
            status = params.response.status
            self.rest_requests.labels(params.method, str(status)).inc()
            if status == 429:
                self.rest_ratelimited.labels(params.response.headers.get("X-RateLimit-Scope", "unknown")).inc()

        trace.on_request_end.append(on_end)
        return trace

    # --- narration and votes -----------------------------------------------------------

    def narration_ended(self, stats: Any) -> None:
        """A narration job's ``PlaybackStats`` when it ended."""
        self.narrations.inc()
        self.narration_underruns.inc(stats.underruns)

    def vote_settled(self, settled: Any) -> None:
        """A ``Settled`` from the vote service (None: someone else settled it)."""
        if settled is not None and not settled.extended:
            self.vote_closes.labels(str(settled.state.closed_by)).inc()

    def instrument(self, bot: KahaniBot) -> None:
        """Listen to the events the cogs dispatch (a narration finished, a vote settled)
        and read the LLM queue's length whenever the metrics are scraped."""
        queue = bot.llm_queue
        self.queue_length.set_function(lambda: queue.waiting)
        self.queue_running.set_function(lambda: queue.running)
        bot.add_listener(self._on_narration_finished, "on_kahani_narration_finished")
        bot.add_listener(self._on_vote_settled, "on_kahani_vote_settled")

    async def _on_narration_finished(self, guild_id: int, job: Any) -> None:
        self.narration_ended(job.source.stats)

    async def _on_vote_settled(self, settled: Any) -> None:
        self.vote_settled(settled)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# --- health ------------------------------------------------------------------------------


async def _check(name: str, probe: Awaitable[Any]) -> str:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            result = await probe
    except Exception:  # any failure (or the timeout) means "not reachable"
        log.debug("health: %s is not reachable", name, exc_info=True)
        return "error"
    return "error" if result is False else "ok"


async def _database_ok(bot: KahaniBot) -> None:
    async with bot.db.read() as s:
        await s.execute(text("SELECT 1"))


async def health(bot: KahaniBot) -> tuple[dict[str, str], int]:
    """``{"database", "llm", "kokoro"}`` → "ok" or "error", and the HTTP status: 200
    while the database answers (the bot works, and says so, without the LLM or Kokoro),
    503 when it does not (the bot can do nothing)."""
    database, llm, kokoro = await asyncio.gather(
        _check("database", _database_ok(bot)),
        _check("llm", bot.llm.list_models()),
        _check("kokoro", bot.tts.health()),
    )
    report = {"database": database, "llm": llm, "kokoro": kokoro}
    return report, 200 if database == "ok" else 503


# --- the HTTP endpoint -----------------------------------------------------------------


def make_app(bot: KahaniBot) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=bot.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def healthz(_: web.Request) -> web.Response:
        report, status = await health(bot)
        return web.Response(text=json.dumps(report), status=status, content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


@contextlib.asynccontextmanager
async def serve(settings: Settings, bot: KahaniBot) -> AsyncIterator[None]:
    """Serve /metrics and /healthz on METRICS_HOST:METRICS_PORT while the block runs
    (nothing when METRICS_PORT is not set)."""
    if settings.metrics_port is None:
        yield
        return
    runner = web.AppRunner(make_app(bot), access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
        except OSError as exc:
            raise MetricsError(
                f"METRICS_PORT: cannot listen on {settings.metrics_host}:{settings.metrics_port}: {exc.strerror or exc}"
            ) from exc
        log.info("metrics and health at http://%s:%d/metrics and /healthz",
                 settings.metrics_host, settings.metrics_port)
        yield
    finally:
        await runner.cleanup()
