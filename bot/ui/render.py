"""Live scene messages: a scene's text streamed into Discord, never waiting on a rate limit.

A :class:`SceneStreamer` turns text deltas into one or more messages in a channel:
the first update as soon as there is a little text, then about one a second, the
final text at once (docs/architecture.md, "Streaming a scene"). Nothing here knows about stories; cogs feed it.

Each message is a Components V2 card (:func:`card`): one container with the text in
text displays, the "still writing" line while it is written, and the components
(a classic :class:`discord.ui.View` whose rows become action rows) on the last message.
A message holds :data:`CARD_LIMIT` characters over all its text displays; longer texts
go on in more messages, split at paragraphs (:func:`split_text`). :data:`CLASSIC`
streams into plain content messages as the bot did before the cards (2,000 characters
each; ``bench/streaming.py`` compares the two).

Why it schedules instead of just calling ``message.edit`` once a second
-----------------------------------------------------------------------
Discord allows 5 message edits per 5 s per channel (a fixed window from the bucket's
first request; message creates are a separate bucket of the same size) and 50
requests per second per bot. discord.py sleeps a spent window out *inside* the
request that used its last token, and holds later requests until it ends, so a
queued edit blocks. Every streamer of the event loop therefore goes through one
:class:`StreamScheduler` that counts the budgets itself (:class:`ChannelBudget`,
:class:`GlobalBudget`) and only sends a request that can go at once. Updates are
coalesced: a request always carries the newest text, intermediate states are
skipped.

The edit window is spent so the final edit never waits: four updates are spread
over the window (about one a second) and the fifth, the reserve, is spent only in
the window's last :attr:`ChannelBudget.RESERVE_LEAD` seconds. A final text that
arrives before that takes the reserve; one that arrives after waits at most that
long for the next window. When the global limit is the bottleneck (hundreds of
streams), requests take turns, the stream that has waited longest first, with a
head start for final texts (they jump the queue, but not past a stream already
starved for ``FINAL_HEAD_START`` seconds, and never lose the turn their stream had
already waited for) and for first texts. A request counts against the global limit
until a second after its answer, not its sending: requests sent a second apart can
reach Discord closer together than that.

Using it from a cog
-------------------
::

    streamer = SceneStreamer(thread, first_message=placeholder, header=header, accent=colour)
    async for event in engine.next_scene(...):
        if isinstance(event, SceneText):
            await streamer.feed(event.text)          # returns at once
        elif isinstance(event, SceneDone):
            messages = await streamer.finish(event.content, view=view, footer=choices_list)
        elif isinstance(event, Failed):
            messages = await streamer.fail(event.reason, view=retry_view)
    await streamer.aclose()

``streamer.messages`` is the ordered list of messages that show the text (store their
ids, docs/architecture.md "Scene components"; components sit on the last one). A message or channel deleted under
the streamer, or a permission taken away, stops it quietly: ``streamer.error`` holds
the exception and ``finish``/``fail`` return what still exists. A server error or a
time-out only skips a running update; the final text is tried :data:`FINAL_TRIES` times,
and if Discord still fails it, ``streamer.gave_up`` is set (the caller posts the text
again: bot/player.py). To show another text over existing messages (variant
switching) use :func:`show_text`.

Model text never pings: every request carries ``AllowedMentions.none()``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any, TypeVar

import aiohttp
import discord

log = logging.getLogger(__name__)
T = TypeVar("T")

Clock = Callable[[], float]
AnyMessage = discord.Message | discord.PartialMessage

CARD_LIMIT = 4000  # characters over all text displays of a Components V2 message
MESSAGE_LIMIT = 2000  # characters of content per classic message (CLASSIC)
WRITING = " ▌"  # the "still writing" cursor at the end of a classic live message
WRITING_LINE = "-# ✍️ *writing…*"  # the "still writing" line under a card's text (callers may pass their own)
FAILED_LINE = "⚠️ {reason}"  # appended to what was written when a scene fails
EMPTY_TEXT = "…"  # Discord refuses an empty message, and an empty text display
FINAL_TRIES = 3  # attempts at a final text that Discord fails with a server error or a time-out
FIRST_CHARS = 20  # the first update waits for this much text…
FIRST_WAIT = 0.3  # …or at most this long after the first delta
# When the global budget is short, requests take turns, the longest-waiting first; a
# scene's final text counts as having waited this much longer, and its first text this:
FINAL_HEAD_START = 4.0
FIRST_HEAD_START = 2.0
NO_PINGS = discord.AllowedMentions.none()
UNKNOWN_CHANNEL = 10003  # Discord's error code: the channel (or thread) was deleted


# ----------------------------------------------------------------------- layouts ---

Page = tuple[str, ...]  # what one message shows: blocks of text (the scene's, its choices, a failure line)


def action_rows(view: discord.ui.View) -> list[discord.ui.ActionRow[Any]]:
    """A classic view's components as action rows, in the rows the view put them in (the
    items move to the rows)."""
    rows: dict[int, list[discord.ui.Item[Any]]] = {}
    for item in view.children:
        # The row View.add_item gave it: its own, or the first with room (a select
        # wrapped in a DynamicItem does not pass its row on).
        rows.setdefault(item._rendered_row or 0, []).append(item)
    return [discord.ui.ActionRow(*rows[n]) for n in sorted(rows)]


def card(blocks: Sequence[str], controls: discord.ui.View | None = None, *, accent: int | None = None,
         writing: str | None = None) -> discord.ui.LayoutView:
    """A Components V2 message: one container (``accent`` its colour) with ``blocks`` in
    text displays, the ``writing`` line under them while the text is written, and the
    components of ``controls`` in action rows."""
    container: discord.ui.Container[Any] = discord.ui.Container(accent_colour=accent)
    for block in [*blocks, *([writing] if writing else [])]:
        container.add_item(discord.ui.TextDisplay(block if block.strip() else EMPTY_TEXT))
    if controls is not None:
        for row in action_rows(controls):
            container.add_item(row)
    layout = discord.ui.LayoutView(timeout=None)
    layout.add_item(container)
    return layout


def card_edit(blocks: Sequence[str], controls: discord.ui.View | None = None, *, accent: int | None = None,
              writing: str | None = None) -> dict[str, Any]:
    """The arguments of an edit (``message.edit``, ``response.edit_message``…) that shows
    :func:`card`: content and embeds go (a message from before the cards becomes one),
    and its text pings nobody."""
    return {"content": None, "embed": None, "view": card(blocks, controls, accent=accent, writing=writing),
            "allowed_mentions": NO_PINGS}


class Layout:
    """How a scene's messages are made: Components V2 cards (:data:`CARDS`), or plain
    content as before them (:data:`CLASSIC`)."""

    def __init__(self, limit: int, writing: str, *, cards: bool) -> None:
        self.limit = limit  # characters of text per message
        self.writing = writing  # the default "still writing" marker
        self.cards = cards

    def size(self, page: Page) -> int:
        """The characters ``page`` costs of :attr:`limit`."""
        if self.cards:
            return sum(len(block) for block in page)
        return len("\n\n".join(page))

    def request(self, page: Page, controls: Any, *, writing: str | None, accent: int | None,
                create: bool) -> dict[str, Any]:
        """The arguments of the send or edit that shows ``page`` with ``controls`` (a
        view, None for none, :data:`KEEP` for those the message has — classic only)."""
        if self.cards:
            if controls is KEEP:
                raise ValueError("a card is sent whole: pass its controls")
            view = card(page, controls, accent=accent, writing=writing)
            return {"view": view} if create else {"content": None, "embed": None, "view": view}
        content = "\n\n".join(page) + (writing or "")
        if controls is KEEP or (create and controls is None):
            return {"content": content}
        return {"content": content, "view": controls}


CARDS = Layout(CARD_LIMIT, WRITING_LINE, cards=True)
CLASSIC = Layout(MESSAGE_LIMIT, WRITING, cards=False)


# --------------------------------------------------------------------- splitting ---

_SPACE_RUN = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*_~]*$")
_FENCED = re.compile(r"```.*?```", re.S)
_INLINE_CODE = re.compile(r"`[^`]*`")
_BULLET = re.compile(r"(?m)^[ \t]*\*[ \t]")


def _balanced(chunk: str) -> bool:
    """True when no markdown construct (code, bold, italics, strike, spoiler) is left open."""
    if chunk.count("```") % 2:
        return False
    chunk = _FENCED.sub("", chunk)
    if chunk.count("`") % 2:
        return False
    chunk = _INLINE_CODE.sub("", chunk)
    for mark in ("**", "__", "~~", "||"):
        if chunk.count(mark) % 2:
            return False
        chunk = chunk.replace(mark, "")
    return _BULLET.sub("", chunk).count("*") % 2 == 0


def _cut(window: str, limit: int) -> int:
    """Where a message that may hold ``limit`` characters ends, given the next ``limit + 1``.

    The chunk ``window[:cut]`` ends before a run of whitespace: preferably a paragraph
    break, else a line break, else a sentence end, else any word boundary (the latest
    of its kind, and not in the first quarter unless nothing else is left), and among
    these one that leaves no markdown construct open. Only when the window holds no
    whitespace at all is a word cut.
    The decision depends on ``window`` alone, so streamed and final splits agree.
    """
    candidates: list[tuple[bool, int, int]] = []
    for run in _SPACE_RUN.finditer(window):
        end = run.start()
        if end == 0 or end > limit:
            continue
        newlines = run.group().count("\n")
        if newlines >= 2:
            kind = 0
        elif newlines:
            kind = 1
        elif _SENTENCE_END.search(window, max(0, end - 8), end):
            kind = 2
        else:
            kind = 3
        candidates.append((end < limit // 4, kind, -end))
    if not candidates:
        return limit
    candidates.sort()
    for _, _, neg_end in candidates:
        if _balanced(window[:-neg_end]):
            return -neg_end
    return -candidates[0][2]


def _next_start(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def split_text(text: str, limit: int, *, first_limit: int | None = None) -> list[str]:
    """Split ``text`` into message-sized chunks (see :func:`_cut` for where).

    Chunks are consecutive slices of ``text``; between two chunks lies exactly the run
    of whitespace at that boundary (a paragraph break, usually), which belongs to no
    chunk: ``text`` is the chunks joined by those runs.
    """
    chunks: list[str] = []
    start = 0
    room = first_limit if first_limit is not None else limit
    while len(text) - start > room:
        end = start + _cut(text[start:start + room + 1], room)
        chunks.append(text[start:end])
        start = _next_start(text, end)
        room = limit
    if start < len(text) or not chunks:
        chunks.append(text[start:])
    return chunks


# ----------------------------------------------------------------------- budgets ---

class RateWindow:
    """One of Discord's fixed-window buckets, counted from our side.

    Discord opens the window at the bucket's first request and refuses the
    ``limit + 1``-th until it ends. We cannot see when Discord received that first
    request, only that it was between sending it and reading the answer, so the window
    is taken to end ``length`` after the answer — never before Discord's — and while the
    answer is outstanding its end is unknown (``inf``).
    """

    GUARD = 0.1  # nothing is sent in a window's last GUARD seconds: it could arrive after
    #              Discord's window ended, open the next one there, and count twice

    def __init__(self, limit: int, length: float) -> None:
        self.limit = limit
        self.length = length
        self.used = 0
        self.ends = -math.inf
        self._opener: object | None = None

    def refresh(self, now: float) -> None:
        if self.used and now >= self.ends:
            self.used = 0

    def left(self, now: float) -> int:
        """Requests that may still be sent in this window now (0 in its last GUARD)."""
        self.refresh(now)
        if self.used and now >= self.ends - self.GUARD:
            return 0
        return self.limit - self.used

    def take(self, now: float) -> object | None:
        """Count a request sent now. Returns a ticket when it opened a window: pass it
        to :meth:`answered` when the answer (or the error) arrives."""
        self.refresh(now)
        self.used += 1
        if self.used > 1:
            return None
        self.ends = math.inf
        self._opener = ticket = object()
        return ticket

    def answered(self, ticket: object | None, now: float) -> None:
        if ticket is not None and ticket is self._opener:
            self._opener = None
            self.ends = now + self.length


class GlobalBudget:
    """Discord's per-bot limit (50 requests/s), counted as a sliding window.

    A request counts from when it is sent until ``period`` after its answer: Discord saw
    it somewhere in between, and requests sent close together can reach Discord closer
    still (the first of a burst waits for the connection, the next one does not), so a
    count of send times alone lets ``limit + 1`` land in one of Discord's windows. Keeping
    every interval of ``period`` under ``limit`` this way holds whatever Discord's own
    window is; the default leaves a few requests a second for the rest of the bot.
    Requests other than final texts leave one request of every period free and, once a
    burst of ``limit // 2`` is spent, are spaced evenly (a token bucket), so a final text
    never waits for a burst to age out.
    """

    # A request whose answer was never reported (a caller that does not call
    # ``answered``) counts as answered this long after it was sent.
    UNANSWERED = 1.0

    def __init__(self, limit: int = 47, period: float = 1.0) -> None:
        if limit < 2:
            raise ValueError("the global budget needs room for at least 2 requests")
        self.limit = limit
        self.period = period
        self._counted: list[_Counted] = []  # requests still counted, oldest first
        self._rate = (limit - 1) / period
        self._burst = max(1.0, limit // 2)
        self._tokens = self._burst
        self._tokens_at = -math.inf

    def _refill(self, now: float) -> None:
        if now > self._tokens_at:
            self._tokens = min(self._burst, self._tokens + (now - self._tokens_at) * self._rate)
            self._tokens_at = now

    def _free_at(self, entry: _Counted, now: float) -> float:
        """When ``entry`` stops counting: ``period`` after its answer. One still in
        flight could be answered now at the earliest."""
        if entry.answered is None and now >= entry.sent + self.UNANSWERED:
            entry.answered = entry.sent + self.UNANSWERED
        return (now if entry.answered is None else entry.answered) + self.period

    def ready_at(self, now: float, *, final: bool = False) -> float:
        """The earliest time a request may be sent (``now`` if at once). With requests
        in flight this is a lower bound: look again when one is answered."""
        frees: list[float] = []
        counted: list[_Counted] = []
        for entry in self._counted:
            free = self._free_at(entry, now)
            if free > now:
                counted.append(entry)
                frees.append(free)
        self._counted = counted
        frees.sort()
        room = self.limit if final else self.limit - 1
        at = now
        if not final:
            self._refill(now)
            at = now if self._tokens >= 1 else now + (1 - self._tokens) / self._rate
        if len(frees) >= room:
            at = max(at, frees[len(frees) - room])
        return at

    def take(self, now: float, *, final: bool = False) -> _Counted:
        """Count a request sent now. Pass the returned ticket to :meth:`answered` when
        its answer (or error) arrives."""
        entry = _Counted(now)
        self._counted.append(entry)
        if not final:
            self._refill(now)
            self._tokens -= 1
        return entry

    def answered(self, ticket: _Counted, now: float) -> None:
        ticket.answered = now


@dataclass(eq=False, slots=True)
class _Counted:
    """A request the global budget counts: when it was sent and answered."""

    sent: float
    answered: float | None = None


class Urgency(IntEnum):
    """How an edit may spend a channel's window (lowest first)."""

    FINAL = 0  # a scene's final text or its failure: any token, the reserve too
    FIRST = 1  # the first text of a scene: at once, but not the reserve
    STREAM = 2  # the running text: paced, about one a second


class ChannelBudget:
    """Message edit and create windows of one channel, shared by every streamer in it.

    Pure accounting (times come from ``clock`` or are passed in), so the pacing can be
    tested with a fake clock. Code that edits or posts in a streamed channel outside a
    streamer can keep the count true with :meth:`note_edit` / :meth:`note_create`.
    """

    INTERVAL = 1.0  # target gap between updates of the running text
    MAX_GAP = 1.4  # longest planned gap: the window's last edits are spread up to this
    RESERVE_LEAD = 0.2  # the reserve edit may be spent this long before the window ends

    def __init__(self, channel_id: int, *, clock: Clock = time.monotonic, limit: int = 5,
                 window: float = 5.0) -> None:
        self.channel_id = channel_id
        self.clock = clock
        self.edits = RateWindow(limit, window)
        self.creates = RateWindow(limit, window)
        self.last_update: float | None = None  # last edit or create sent in the channel
        self._used_up = False  # the last edit window was spent to the end

    @classmethod
    def for_channel(cls, channel_id: int) -> ChannelBudget:
        """The budget the running event loop's shared :class:`StreamScheduler` keeps."""
        return StreamScheduler.shared().budget(channel_id)

    def edit_ready_at(self, urgency: Urgency, now: float | None = None) -> float:
        """The earliest time an edit of this urgency may be sent (``now`` if at once)."""
        now = self.clock() if now is None else now
        window = self.edits
        left = window.left(now)
        if left <= 0:
            return window.ends
        if urgency <= Urgency.FINAL:
            return now
        if left == 1 and window.used:  # the reserve: only in the window's last moments
            return max(now, window.ends - self.RESERVE_LEAD)
        if left == 1:  # no window open (a limit of 1)
            return now
        if urgency <= Urgency.FIRST or self.last_update is None:
            return now
        if window.used == 0:  # a fresh window: at once after a spent one, else paced
            return now if self._used_up else max(now, self.last_update + self.INTERVAL)
        spread = window.ends - self.RESERVE_LEAD - (left - 1) * self.MAX_GAP
        return max(now, self.last_update + self.INTERVAL, spread)

    def create_ready_at(self, now: float | None = None) -> float:
        """The earliest time a message may be posted. The window's last create is never
        used: discord.py would sleep the window out inside it, holding back the new
        message's id that the next edits need."""
        now = self.clock() if now is None else now
        return now if self.creates.left(now) > 1 else self.creates.ends

    def take_edit(self, now: float) -> object | None:
        ticket = self.edits.take(now)
        if ticket is not None:
            self._used_up = False
        if self.edits.used >= self.edits.limit:
            self._used_up = True
        self.last_update = now
        return ticket

    def take_create(self, now: float) -> object | None:
        self.last_update = now
        return self.creates.take(now)

    def note_edit(self) -> None:
        """Count an edit some other code made in this channel (answered already)."""
        now = self.clock()
        self.edits.answered(self.take_edit(now), now)

    def note_create(self) -> None:
        """Count a message some other code posted in this channel (answered already)."""
        now = self.clock()
        self.creates.answered(self.take_create(now), now)

    def idle(self, now: float) -> bool:
        return self.edits.left(now) == self.edits.limit and self.creates.left(now) == self.creates.limit


# --------------------------------------------------------------------- scheduler ---

class _Kind(Enum):
    CREATE = "create"
    EDIT = "edit"
    DELETE = "delete"


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()  # a view argument meaning "leave the message's components alone"


@dataclass(eq=False)
class _Op:
    stream: SceneStreamer
    part: _Part
    kind: _Kind
    urgency: Urgency
    key: tuple[Any, ...]
    not_before: float = -math.inf


class StreamScheduler:
    """Sends the requests of every :class:`SceneStreamer` of one event loop.

    One task picks, whenever a budget allows, the most urgent request that can go at
    once, and sleeps (on an event, with a timeout to the next budget opening) otherwise.
    ``StreamScheduler.shared()`` is the loop's default; a bot may create its own and
    pass it to its streamers (e.g. with a smaller ``global_limit`` when other traffic
    is heavy).
    """

    _shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamScheduler] = weakref.WeakKeyDictionary()

    def __init__(self, *, clock: Clock = time.monotonic, global_limit: int = 47, global_period: float = 1.0) -> None:
        self.clock = clock
        self.global_budget = GlobalBudget(global_limit, global_period)
        self._budgets: dict[int, ChannelBudget] = {}
        self._streams: dict[SceneStreamer, None] = {}  # insertion-ordered set
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._requests: set[asyncio.Task[None]] = set()
        self._waiters: set[asyncio.Future[None]] = set()  # see changed()

    @classmethod
    def shared(cls) -> StreamScheduler:
        loop = asyncio.get_running_loop()
        scheduler = cls._shared.get(loop)
        if scheduler is None:
            scheduler = cls._shared[loop] = cls()
        return scheduler

    def set_global_limit(self, limit: int) -> None:
        """Requests per period this process may send in all (e.g. its shards' share of
        Discord's 50/s when several processes share one bot token)."""
        if limit != self.global_budget.limit:
            self.global_budget = GlobalBudget(limit, self.global_budget.period)

    def budget(self, channel_id: int) -> ChannelBudget:
        budget = self._budgets.get(channel_id)
        if budget is None:
            budget = self._budgets[channel_id] = ChannelBudget(channel_id, clock=self.clock)
        return budget

    def attach(self, stream: SceneStreamer) -> None:
        self._streams[stream] = None
        self.poke()

    def detach(self, stream: SceneStreamer) -> None:
        self._streams.pop(stream, None)

    def poke(self) -> None:
        """Something changed: look again for a request to send."""
        self._wake.set()
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._streams and (self._runner is None or self._runner.done()):
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="kahani-scene-render")

    async def _run(self) -> None:
        while self._streams:
            now = self.clock()
            best, best_final, wake_at = self._pick(now)
            sent = False
            for op in (best, best_final):  # a final text may use the request kept for finals
                if op is None:
                    continue
                free_at = self.global_budget.ready_at(now, final=op.urgency is Urgency.FINAL)
                if free_at <= now:
                    self._dispatch(op, now)
                    sent = True
                    break
                wake_at = min(wake_at, free_at)
            if sent:
                continue
            self._wake.clear()
            try:
                async with asyncio.timeout(None if math.isinf(wake_at) else max(0.0, wake_at - now)):
                    await self._wake.wait()
            except TimeoutError:
                pass
        now = self.clock()
        for channel_id in [c for c, b in self._budgets.items() if b.idle(now)]:
            del self._budgets[channel_id]

    def _ready_at(self, op: _Op, now: float) -> float:
        if op.kind is _Kind.DELETE:
            return max(now, op.not_before)
        budget = self.budget(op.stream.channel_id)
        at = budget.create_ready_at(now) if op.kind is _Kind.CREATE else budget.edit_ready_at(op.urgency, now)
        return max(at, op.not_before)

    def _pick(self, now: float) -> tuple[_Op | None, _Op | None, float]:
        """The first ready request in turn, the first ready final one, and when the
        next one that is not ready yet will be."""
        best: _Op | None = None
        best_final: _Op | None = None
        wake_at = math.inf
        for stream in self._streams:
            for op in stream._ops(now):
                at = self._ready_at(op, now)
                if at > now:
                    wake_at = min(wake_at, at)
                    continue
                if best is None or op.key < best.key:
                    best = op
                if op.urgency is Urgency.FINAL and (best_final is None or op.key < best_final.key):
                    best_final = op
        return best, best_final, wake_at

    def _dispatch(self, op: _Op, now: float) -> None:
        budget = self.budget(op.stream.channel_id)
        window: RateWindow | None = None
        ticket = None
        if op.kind is _Kind.EDIT:
            window, ticket = budget.edits, budget.take_edit(now)
        elif op.kind is _Kind.CREATE:
            window, ticket = budget.creates, budget.take_create(now)
        counted = self.global_budget.take(now, final=op.urgency is Urgency.FINAL)
        request = op.stream._start(op, now)
        task = asyncio.get_running_loop().create_task(self._perform(request, window, ticket, counted))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _perform(self, request: Any, window: RateWindow | None, ticket: object | None,
                       counted: _Counted) -> None:
        try:
            await request
        finally:
            now = self.clock()
            if window is not None:
                window.answered(ticket, now)
            self.global_budget.answered(counted, now)
            self.poke()

    async def changed(self, until: float) -> None:
        """Wait until a request is answered (a budget may have room again) or ``until``."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            async with asyncio.timeout(None if math.isinf(until) else max(0.0, until - self.clock())):
                await waiter
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)


# ---------------------------------------------------------------------- streamer ---

@dataclass(eq=False)
class _Part:
    """One message of a streamed text."""

    message: AnyMessage | None = None  # None until posted
    want: Page | None = None  # what it must show; None: leave it (the live part's is computed)
    shown: tuple[Page, bool] | None = None  # what Discord shows, as far as we know (page, writing line on)
    view: Any = KEEP  # components to send with its next request (a View, None to remove, KEEP)
    controls: Any = None  # the components it has, as far as we know (a card is sent whole)
    foreign: bool = False  # a message the caller passed in (it may carry components)
    busy: bool = False  # a request for it is in flight
    sent_len: int = -1  # live part: length of the streamed text its last request carried
    drop: bool = False  # the final text needs fewer messages: delete it
    gone: bool = False  # deleted (by us, or found deleted)
    tries: int = 0  # failed attempts at its final text (server errors, time-outs)


class _State(Enum):
    STREAMING = "streaming"
    SETTLING = "settling"  # finish/fail called: the final layout is being sent
    DONE = "done"


class SceneStreamer:
    """Streams one scene's text into ``channel`` (see the module docstring).

    ``first_message`` (or ``messages``, several) are existing messages to write into, in
    order — e.g. a "the storyteller is writing…" placeholder; without them the first
    text is posted as a new message. ``header`` precedes the text in the first message.
    Messages are cards of colour ``accent`` (``layout``: :data:`CARDS`, or :data:`CLASSIC`
    content); ``indicator`` is the "still writing" marker of the live one.
    """

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        header: str = "",
        first_message: AnyMessage | None = None,
        messages: Sequence[AnyMessage] = (),
        scheduler: StreamScheduler | None = None,
        indicator: str | None = None,
        accent: int | None = None,
        layout: Layout = CARDS,
    ) -> None:
        if first_message is not None:
            messages = [first_message, *messages]
        self.channel = channel
        self.channel_id: int = channel.id  # type: ignore[attr-defined]
        self.header = header
        self.layout = layout
        self.indicator = layout.writing if indicator is None else indicator
        self.accent = accent
        self.room = layout.limit - len(self.indicator)  # text per message (the same while streaming and after)
        self.first_room = self.room - len(header)
        if self.first_room <= 0:
            raise ValueError("the header leaves no room for text")
        self.error: Exception | None = None  # why streaming stopped (discord.NotFound, .Forbidden…)
        # Discord kept failing the final text (server errors, time-outs): it is not shown,
        # and the messages may still show the text as it was while being written.
        self.gave_up = False
        self.first_delta_at: float | None = None
        self._scheduler = scheduler or StreamScheduler.shared()
        self._clock = self._scheduler.clock
        self._parts = [_Part(message=m, foreign=True) for m in messages]
        if not self._parts:
            self._parts.append(_Part())
        self._text = ""
        self._live_index = 0  # the part the running text goes to
        self._live_start = 0  # where its text starts in self._text
        self._state = _State.STREAMING
        self._settled_at = 0.0
        self._last_sent = -math.inf
        self._final_turn = 0.0  # the place in the queue of the final text's requests
        self._notified = False  # the scheduler knows this stream has something to send
        self._done = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    # ------------------------------------------------------------- public API ---
    @property
    def messages(self) -> list[AnyMessage]:
        """The messages showing the text, in order (components sit on the last)."""
        return [p.message for p in self._parts if p.message is not None and not p.gone and not p.drop]

    @property
    def text(self) -> str:
        """Everything fed so far."""
        return self._text

    async def feed(self, delta: str) -> None:
        """Append streamed text. Returns at once; the scheduler sends it when it can."""
        if not delta or self._state is not _State.STREAMING or self.error is not None or self._closed:
            return
        if self.first_delta_at is None:
            self.first_delta_at = self._clock()
        before = len(self._text) - self._live_start
        self._text += delta
        self._reflow()
        crossed = before < FIRST_CHARS <= len(self._text) - self._live_start
        if not self._notified or (crossed and self._last_sent == -math.inf):
            self._notified = True
            self._scheduler.attach(self)

    async def finish(self, final_text: str, *, view: discord.ui.View | None = None,
                     footer: str = "", reserve: int = 0) -> list[AnyMessage]:
        """Replace the streamed text with ``final_text`` (it may differ, e.g. trimmed),
        ``footer`` (e.g. the choices) under it, and put ``view`` on the last message, in
        one final edit per message that changed. ``reserve`` characters of the last
        message are kept free (for what its caller adds later, e.g. a vote's tally): a
        footer that does not fit beside the text goes on in a message of its own.
        Returns the messages, in order, once Discord has them."""
        pages = self._pages(final_text)
        footer = footer.strip()
        if footer:
            if self.layout.size(pages[-1] + (footer,)) + reserve <= self.layout.limit:
                pages[-1] += (footer,)
            else:  # long choices (a model may write 700 characters each): messages of their own
                pages.extend((chunk,) for chunk in split_text(footer, self.room))
        return await self._settle(pages, view)

    async def fail(self, reason: str, *, view: discord.ui.View | None = None) -> list[AnyMessage]:
        """Keep what was written, add a short failure line and ``view`` (e.g. Retry)."""
        line = FAILED_LINE.format(reason=reason)
        if not self._text.strip():
            pages = [(self.header + line,)]
        else:
            pages = self._pages(self._text)
            if self.layout.size(pages[-1] + (line,)) <= self.layout.limit:
                pages[-1] += (line,)
            else:
                pages.append((line,))
        return await self._settle(pages, view)

    async def aclose(self) -> None:
        """Stop: nothing more is sent (call finish or fail first to leave a final text).
        Waits for requests already in flight."""
        self._closed = True
        await self._idle.wait()
        self._scheduler.detach(self)
        self._done.set()

    async def __aenter__(self) -> SceneStreamer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------ the layout ---
    def _pages(self, text: str) -> list[Page]:
        """The final pages: the same split as while streaming, so closed messages stay."""
        chunks = split_text(text, self.room, first_limit=self.first_room)
        chunks[0] = self.header + chunks[0]
        return [(c if c.strip() else EMPTY_TEXT,) for c in chunks]

    def _reflow(self) -> None:
        """Close the live message when its text no longer fits; the rest goes on in the
        next one. A closed message's text is final."""
        if self._live_index > 0:  # a fresh message never starts with the boundary's whitespace
            self._live_start = _next_start(self._text, self._live_start)
        while True:
            room = self.first_room if self._live_index == 0 else self.room
            start = self._live_start
            if len(self._text) - start <= room:
                return
            end = start + _cut(self._text[start:start + room + 1], room)
            part = self._parts[self._live_index]
            part.want = ((self.header if self._live_index == 0 else "") + self._text[start:end],)
            self._live_index += 1
            if self._live_index == len(self._parts):
                self._parts.append(_Part())
            self._live_start = _next_start(self._text, end)

    def _live_page(self) -> Page:
        head = self.header if self._live_index == 0 else ""
        return (head + self._text[self._live_start:],)

    # ------------------------------------------------- what the scheduler asks ---
    def _ops(self, now: float) -> Iterator[_Op]:
        """The requests this stream could send now (budgets aside)."""
        if self.error is not None or self._closed or self._state is _State.DONE:
            return
        settling = self._state is _State.SETTLING
        first = self._last_sent == -math.inf
        posted = True  # every earlier part has its message: a new one may be posted
        for index, part in enumerate(self._parts):
            kind = self._needs(index, part)
            if kind is _Kind.CREATE and not posted:
                kind = None  # messages are posted in order
            if not part.drop:
                posted = posted and part.message is not None
            if kind is None or part.busy:
                continue
            # Round-robin, longest-waiting first, with head starts: a final text goes
            # before any stream that has waited less than FINAL_HEAD_START, so finals
            # jump the queue without starving the streams still being written. A final
            # keeps the turn its stream already waited for, if that comes sooner.
            if settling:
                yield _Op(self, part, kind, Urgency.FINAL, (self._final_turn, index))
            elif first:
                early = len(self._text) - self._live_start < FIRST_CHARS
                assert self.first_delta_at is not None
                not_before = self.first_delta_at + FIRST_WAIT if early else -math.inf
                key = (self.first_delta_at - FIRST_HEAD_START, index)
                yield _Op(self, part, kind, Urgency.FIRST, key, not_before)
            else:
                yield _Op(self, part, kind, Urgency.STREAM, (self._last_sent, index))

    def _needs(self, index: int, part: _Part) -> _Kind | None:
        if part.drop:
            return _Kind.DELETE if part.message is not None and not part.gone else None
        if self._state is _State.STREAMING and index == self._live_index:
            if len(self._text) <= self._live_start or part.sent_len == len(self._text):
                return None
        elif part.want is None or ((part.want, False) == part.shown and part.view is KEEP):
            return None
        return _Kind.CREATE if part.message is None else _Kind.EDIT

    def _start(self, op: _Op, now: float) -> Any:
        """Mark the op's part busy and return the coroutine that performs it."""
        part = op.part
        part.busy = True
        self._idle.clear()
        self._last_sent = now
        self._notified = False
        live = self._state is _State.STREAMING and part is self._parts[self._live_index]
        if live:
            part.sent_len = len(self._text)
            page = self._live_page()
        else:
            page = part.want or (EMPTY_TEXT,)
        return self._perform(op, page, part.view, live)

    async def _perform(self, op: _Op, page: Page, view: Any, live: bool) -> None:
        part = op.part
        # A card is sent whole: without new components it keeps the ones it has.
        controls = part.controls if view is KEEP and self.layout.cards else view
        try:
            if op.kind is _Kind.DELETE:
                await self._partial(part).delete()
            else:
                request = self.layout.request(page, controls, writing=self.indicator if live else None,
                                              accent=self.accent, create=op.kind is _Kind.CREATE)
                if op.kind is _Kind.CREATE:
                    part.message = await self.channel.send(allowed_mentions=NO_PINGS, **request)
                else:
                    part.message = await self._partial(part).edit(allowed_mentions=NO_PINGS, **request)
        except discord.NotFound as exc:
            part.gone = True
            if exc.code == UNKNOWN_CHANNEL:
                for other in self._parts:
                    other.gone = True
            if op.kind is not _Kind.DELETE:
                self._stop(exc)
        except (TimeoutError, discord.DiscordServerError, discord.RateLimited, aiohttp.ClientError, OSError) as exc:
            # Discord failed this request but may take the next (discord.py has already
            # retried a 500 or 502). A running update is only skipped: the next one
            # carries the text, newer. The final text is tried FINAL_TRIES times; then the
            # stream gives up and says so (``gave_up``): its caller shows it another way.
            if live:
                part.sent_len = -1
            if op.urgency is not Urgency.FINAL:
                log.info("scene message %s in channel %s: %s; the next update carries it",
                         op.kind.value, self.channel_id, exc)
            else:
                part.tries += 1
                if part.tries >= FINAL_TRIES:
                    self.gave_up = True
                    self._stop(exc)
                else:
                    log.info("scene message %s in channel %s: %s; trying again", op.kind.value, self.channel_id, exc)
        except discord.HTTPException as exc:  # 403 and anything else Discord refuses
            self._stop(exc)
        except Exception as exc:  # a bug here must not pass silently, nor reach the caller
            log.exception("scene message %s in channel %s failed", op.kind.value, self.channel_id)
            self._stop(exc)
        else:
            part.tries = 0
            if op.kind is _Kind.DELETE:
                part.gone = True
            else:
                part.shown = (page, live)
                if view is not KEEP:
                    part.controls = view
                if part.view is view:
                    part.view = KEEP
        finally:
            part.busy = False
            if not any(p.busy for p in self._parts):
                self._idle.set()
            self._check_done()

    def _partial(self, part: _Part) -> discord.PartialMessage:
        # Always the channel route: an interaction's own route expires with its token.
        assert part.message is not None
        return self.channel.get_partial_message(part.message.id)  # type: ignore[attr-defined]

    def _stop(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
            log.warning("scene streaming in channel %s stopped: %s", self.channel_id, exc)

    # ------------------------------------------------------------- settling ---
    async def _settle(self, pages: list[Page], view: discord.ui.View | None) -> list[AnyMessage]:
        if self._state is _State.STREAMING and not self._closed:
            self._state = _State.SETTLING
            self._settled_at = self._clock()
            self._final_turn = min(self._settled_at - FINAL_HEAD_START, self._last_sent)
            for index, page in enumerate(pages):
                if index == len(self._parts):
                    self._parts.append(_Part())
                part = self._parts[index]
                part.want, part.drop = page, False
                if part.foreign and self._may_have_components(part):
                    part.view = None  # a middle message keeps no components
            for part in self._parts[len(pages):]:
                part.drop = True
            self._parts[len(pages) - 1].view = view
            self._scheduler.attach(self)
            self._check_done()
        await self._done.wait()
        return self.messages

    def _may_have_components(self, part: _Part) -> bool:
        """Whether a message the caller passed in may carry components. A card this stream
        sent has those it was sent with; else its own say (a partial message: perhaps)."""
        if self.layout.cards and part.shown is not None:
            return part.controls is not None
        return bool(getattr(part.message, "components", True))

    def _check_done(self) -> None:
        if self._done.is_set() or any(p.busy for p in self._parts):
            return
        stopped = self.error is not None or self._closed
        if stopped or (self._state is _State.SETTLING and next(self._ops(self._clock()), None) is None):
            self._state = _State.DONE
            self._scheduler.detach(self)
            self._done.set()


async def _room(scheduler: StreamScheduler, ready_at: Callable[[float], float]) -> float:
    """Wait until ``ready_at(now)`` is now; returns now."""
    while True:
        now = scheduler.clock()
        ready = ready_at(now)
        if ready <= now:
            return now
        await scheduler.changed(ready)  # the budget opens then, or when a request in flight is answered


async def within_global_budget(scheduler: StreamScheduler, request: Callable[[], Awaitable[T]]) -> T:
    """Send one REST request that no stream or channel budget counts (creating a thread,
    adding its player) within the bot's global limit, which the streams share: a burst of
    them (30 ``/story new`` at once) waits for room instead of drawing a 429."""
    now = await _room(scheduler, scheduler.global_budget.ready_at)
    counted = scheduler.global_budget.take(now)
    try:
        return await request()
    finally:
        scheduler.global_budget.answered(counted, scheduler.clock())
        scheduler.poke()


async def post_paced(channel: discord.abc.Messageable, content: str | None = None, *,
                     scheduler: StreamScheduler | None = None, **kwargs: Any) -> discord.Message:
    """Post a message outside a stream (e.g. a "the storyteller is writing…" placeholder,
    a card: ``view=card(...)`` without content) within the budgets the streams share: it
    waits for the channel's create window and the bot's global limit instead of drawing
    a 429 when many scenes start at once."""
    scheduler = scheduler or StreamScheduler.shared()
    budget = scheduler.budget(channel.id)  # type: ignore[attr-defined]
    now = await _room(scheduler, lambda now: max(budget.create_ready_at(now), scheduler.global_budget.ready_at(now)))
    ticket = budget.take_create(now)
    counted = scheduler.global_budget.take(now)
    try:
        if content is not None:
            kwargs["content"] = content
        return await channel.send(allowed_mentions=discord.AllowedMentions.none(), **kwargs)
    finally:
        now = scheduler.clock()
        budget.creates.answered(ticket, now)
        scheduler.global_budget.answered(counted, now)
        scheduler.poke()


async def edit_paced(message: discord.Message, *, scheduler: StreamScheduler | None = None,
                     **kwargs: Any) -> discord.Message:
    """Edit a message outside a stream (e.g. a button that shows a new state) within the
    budgets the streams share: it waits for the channel's edit window (as a running update
    does) and the bot's global limit instead of drawing a 429. Pings nobody."""
    scheduler = scheduler or StreamScheduler.shared()
    budget = scheduler.budget(message.channel.id)
    now = await _room(scheduler, lambda now: max(budget.edit_ready_at(Urgency.STREAM, now),
                                                scheduler.global_budget.ready_at(now)))
    ticket = budget.take_edit(now)
    counted = scheduler.global_budget.take(now)
    try:
        return await message.edit(allowed_mentions=discord.AllowedMentions.none(), **kwargs)
    finally:
        now = scheduler.clock()
        budget.edits.answered(ticket, now)
        scheduler.global_budget.answered(counted, now)
        scheduler.poke()


async def show_text(
    channel: discord.abc.Messageable,
    messages: Sequence[AnyMessage],
    text: str,
    *,
    header: str = "",
    footer: str = "",
    view: discord.ui.View | None = None,
    scheduler: StreamScheduler | None = None,
    accent: int | None = None,
    reserve: int = 0,
    indicator: str | None = None,
) -> list[AnyMessage]:
    """Show a finished ``text`` over existing ``messages`` (e.g. another variant of a
    scene): edits them in place, posts more or deletes the tail as the text needs, and
    puts ``view`` on the last (see :meth:`SceneStreamer.finish`; ``indicator`` only sets
    the room per message, as the streamer that wrote it had). Returns the messages now
    showing it, in order."""
    streamer = SceneStreamer(channel, header=header, messages=messages, scheduler=scheduler, accent=accent,
                             indicator=indicator)
    try:
        return await streamer.finish(text, view=view, footer=footer, reserve=reserve)
    finally:
        await streamer.aclose()
