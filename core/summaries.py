"""Summaries: writing them in pieces that fit the model's context, and the worker that
runs due summary jobs (docs/architecture.md, "Memory: summaries and lore").

A long story stays inside a small context because older scenes are folded into summaries:
the open chapter's **rolling summary**, and each closed chapter's **chapter summary**.
Neither is written inside a scene's generation. When the engine stores a scene and the
next prompt is getting full, or when a chapter closes, it records a **summary job**
(``summary_jobs``, core/repository/jobs.py); each process runs one :class:`SummaryWorker`
that claims due jobs (one ``UPDATE … RETURNING``, so a job runs once across processes and
again after a crash), waits for an LLM slot behind the players' scenes, and writes them.
A scene whose prompt cannot hold the scenes no summary covers yet runs the job itself
first (StoryEngine), so no scene ever leaves the prompt unsummarised.

:func:`summarise` writes one summary of any number of texts: texts that fit one request
are summarised at once; more are summarised in parts that each fit, then the parts'
summaries are summarised the same way (so a 300-scene chapter closes on a 2k context).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from core import messages as msg
from core.db import Database
from core.errors import KahaniError
from core.llm import LLMClient, LLMError
from core.llmqueue import BACKGROUND_PREFIX, LLMQueue, SlotLost
from core.models import utcnow
from core.prompts import StoryFrame, summary_messages
from core.repository import jobs
from core.tokens import TokenCounter

if TYPE_CHECKING:
    from core.engine import StoryEngine

log = logging.getLogger(__name__)

# Summary jobs take turns in the LLM queue after every waiting scene (core/llmqueue.py).
BACKGROUND_LANE = f"{BACKGROUND_PREFIX}summaries"
_WORDS = re.compile(r"\w{2,}")


@dataclass(frozen=True)
class SummaryConfig:
    words: int = 200  # at most, for a large context; small contexts get shorter summaries
    max_tokens: int = 600
    safety_margin: int = 256
    claim_ttl: timedelta = timedelta(minutes=2)  # a crashed holder's job runs again after this
    attempts: int = 5  # then the job is marked failed (a scene that needs it still runs it)
    retry_after: timedelta = timedelta(seconds=30)  # times the attempt number
    poll_interval: float = 30.0  # seconds between looks for jobs other processes recorded


class SummaryFailed(KahaniError):
    """The model could not write a summary (down, timed out, or garbage)."""


@dataclass(frozen=True)
class Sizes:
    """How big one summary request may be on this context."""

    reply_tokens: int
    words: int
    input_budget: int  # tokens of texts (and previous summary) per request


def sizes(config: SummaryConfig, counter: TokenCounter, frame: StoryFrame, context_length: int) -> Sizes:
    reply = min(config.max_tokens, max(96, context_length // 8))
    words = min(config.words, max(40, int(reply / 1.35 * 0.8)))
    overhead = counter.count_messages(summary_messages(frame, "", [""], words=words)) + 16
    budget = context_length - reply - config.safety_margin - overhead
    # The recursion needs room for at least two part summaries per request.
    return Sizes(reply, words, max(budget, 2 * (reply + 16)))


async def summarise(
    llm: LLMClient,
    counter: TokenCounter,
    config: SummaryConfig,
    frame: StoryFrame,
    previous: str | None,
    texts: Sequence[str],
    *,
    context_length: int,
    on_progress: Callable[[], Awaitable[None]] | None = None,
) -> str:
    """One summary of ``previous`` (the summary so far) and ``texts``, every request
    within ``context_length``. ``on_progress`` runs after each request (keep a claim
    alive). Raises :class:`SummaryFailed`."""
    size = sizes(config, counter, frame, context_length)
    texts = [t for t in texts if t.strip()]
    if previous and counter.count(previous) > size.input_budget // 2:
        # An over-long summary so far (an owner's edit) is summarised like the scenes.
        texts, previous = [previous, *texts], None
    if not texts:
        return (previous or "").strip()
    room = size.input_budget - (counter.count(previous) + 16 if previous else 0)
    groups = _pack(counter, texts, room)
    if len(groups) == 1:
        return await _one(llm, config, size, frame, previous, groups[0], on_progress)
    parts = [await _one(llm, config, size, frame, None, group, on_progress) for group in groups]
    log.info("summarised %d texts in %d parts", len(texts), len(parts))
    return await summarise(llm, counter, config, frame, previous, parts,
                           context_length=context_length, on_progress=on_progress)


def _pack(counter: TokenCounter, texts: Sequence[str], room: int) -> list[list[str]]:
    """Consecutive texts grouped so that each group fits ``room`` tokens; a text longer
    than ``room`` on its own is cut into pieces at paragraph or sentence ends."""
    groups: list[list[str]] = [[]]
    used = 0
    for text in texts:
        for piece in _cut(counter, text, room):
            cost = counter.count(piece) + 8
            if groups[-1] and used + cost > room:
                groups.append([])
                used = 0
            groups[-1].append(piece)
            used += cost
    return groups


def _cut(counter: TokenCounter, text: str, room: int) -> list[str]:
    tokens = counter.count(text) + 8
    if tokens <= room:
        return [text]
    # Characters per token of this text; pieces a little under the room.
    width = max(200, int(len(text) * (room - 8) / tokens * 0.9))
    pieces: list[str] = []
    rest = text
    while len(rest) > width:
        cut = max(rest.rfind("\n", 0, width), rest.rfind(". ", 0, width) + 1)
        if cut < width // 2:
            cut = rest.rfind(" ", 0, width)
        if cut < width // 2:
            cut = width
        pieces.append(rest[:cut].strip())
        rest = rest[cut:]
    if rest.strip():
        pieces.append(rest.strip())
    return pieces


async def _one(
    llm: LLMClient, config: SummaryConfig, size: Sizes, frame: StoryFrame, previous: str | None,
    texts: Sequence[str], on_progress: Callable[[], Awaitable[None]] | None,
) -> str:
    try:
        reply = await llm.complete(
            summary_messages(frame, previous, texts, words=size.words), max_tokens=size.reply_tokens
        )
    except LLMError as exc:
        raise SummaryFailed(exc.reason) from exc
    text = reply.text.strip()
    if not _WORDS.search(text):
        raise SummaryFailed(msg.LLM_GARBAGE)
    if on_progress is not None:
        await on_progress()
    return text


class SummaryWorker:
    """Runs due summary jobs, one at a time per process, behind waiting scenes.

    ``start()`` begins the loop; ``wake()`` (the engine calls it when it records a job)
    looks at once; otherwise it looks every ``poll_interval`` seconds, for jobs that other
    processes recorded or whose holder crashed. ``drain()`` runs every due job now and
    returns (``kahani play`` between scenes, and tests).
    """

    def __init__(
        self,
        db: Database,
        engine: StoryEngine,
        *,
        queue: LLMQueue | None = None,
        config: SummaryConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        holder_prefix: str = "",
    ) -> None:
        self.db = db
        self.engine = engine
        self.queue = queue if queue is not None and queue.enabled else None
        self.config = config or engine.summary_config
        self.clock = clock
        self.holder = f"{holder_prefix or engine.holder_prefix}:summaries:{uuid.uuid4().hex[:8]}"
        self.ran = 0  # jobs this worker finished (for tests and metrics)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one job at a time, loop and drain alike
        engine.on_summary_due(self.wake)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="kahani-summaries")

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drain(self) -> int:
        """Run every job that is due now; returns how many ran."""
        ran = 0
        while await self._run_one():
            ran += 1
        return ran

    async def _loop(self) -> None:
        while True:
            try:
                if await self._run_one():
                    continue
            except Exception:
                log.exception("summary worker: unexpected error (it goes on)")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=await self._pause())

    async def _pause(self) -> float:
        """Seconds until the next job falls due or a claim lapses (at most the poll
        interval, which also finds jobs other processes recorded)."""
        try:
            async with self.db.read() as s:
                when = await jobs.next_due_at(s)
        except Exception:
            log.warning("summary worker: could not read when the next job is due", exc_info=True)
            return self.config.poll_interval
        if when is None:
            return self.config.poll_interval
        return min(self.config.poll_interval, max(0.05, (when - self.clock()).total_seconds() + 0.05))

    async def _run_one(self) -> bool:
        async with self._lock:
            async with self.db.transaction() as s:
                job = await jobs.claim_next(s, self.holder, now=self.clock(), ttl=self.config.claim_ttl)
            if job is None:
                return False
            job_id, story_id, attempts = job.id, job.story_id, job.attempts
            keepalive = asyncio.create_task(self._keep_claim(job_id))
            ticket = None
            try:
                if self.queue is not None:
                    ticket = await self.queue.enter(story_id, BACKGROUND_LANE)
                    async for _ in ticket.wait():
                        pass
                await self.engine.run_summary_job(job_id, self.holder)
                self.ran += 1
            except (KahaniError, SlotLost) as exc:
                await self._failed(job_id, attempts, exc.message if isinstance(exc, KahaniError) else str(exc))
            except Exception as exc:
                log.exception("summary job %s failed", job_id)
                await self._failed(job_id, attempts, repr(exc))
            finally:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive
                if ticket is not None:
                    await asyncio.shield(ticket.release())
            return True

    async def _keep_claim(self, job_id: int) -> None:
        every = self.config.claim_ttl.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                async with self.db.transaction() as s:
                    if not await jobs.extend(s, job_id, self.holder, now=self.clock(), ttl=self.config.claim_ttl):
                        return
            except Exception:
                log.warning("summary job %s: could not extend its claim", job_id, exc_info=True)

    async def _failed(self, job_id: int, attempts: int, error: str) -> None:
        now = self.clock()
        retry_at = now + self.config.retry_after * attempts if attempts < self.config.attempts else None
        log.warning("summary job %s failed (attempt %d): %s%s", job_id, attempts, error,
                    "" if retry_at else "; giving up until a scene needs it")
        try:
            async with self.db.transaction() as s:
                await jobs.finish(s, job_id, self.holder, now=now, error=error[:1000], retry_at=retry_at)
        except Exception:
            log.warning("summary job %s: could not record the failure (its claim lapses)", job_id, exc_info=True)
