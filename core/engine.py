"""The story engine: scenes, variants, chapters and summaries, Discord-free
(docs/architecture.md, "The engine and the model").

Front ends (the Discord cogs, ``kahani play``, the tests) call a small public API. Every
generation is an **async stream of events** — :class:`SceneText` pieces while the model
writes, :class:`ChoicesReady`, :class:`UsageReport`, then exactly one of
:class:`SceneDone` or :class:`Failed` — so a front end renders while the model writes.

How a generation runs:

1. one short transaction takes the story's generation lease (one generation per story
   across processes) and reads what the prompt needs;
2. the model streams with no database session open; a heartbeat keeps the lease alive;
3. one short transaction writes the new scene or variant and its choices, and gives the
   lease back.

Any failure (server down, timeouts, a cut stream, an empty or garbage reply, a lost
lease, the caller cancelling) ends with :class:`Failed` and leaves the database exactly
as it was: nothing is written before step 3, and the lease is always released (when
the database itself is unreachable, as soon as it answers again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import logctx, servers, stories
from core import messages as msg
from core import repository as repo
from core.access import Actor
from core.choices import (
    CHOICE_COUNT,
    Choice,
    build_choices_request,
    merge_choices,
    needs_extra_call,
    parse_choices,
    parse_choices_reply,
)
from core.db import Database, unreachable
from core.errors import Conflict, KahaniError, NotFound
from core.llm import Finish, LLMClient, LLMError, TextDelta, Usage
from core.llmqueue import GenerationLimits, LLMQueue, RateLimited, Ticket, admit, check_limits, lane_for
from core.lore import Lore, LoreSelection, parse_proposals, select_lore
from core.models import (
    Chapter,
    InstructionKind,
    JobState,
    SceneVariant,
    Story,
    StoryStatus,
    Summary,
    SummaryKind,
    VariantKind,
    utcnow,
)
from core.prompts import (
    CharacterNote,
    SceneTurn,
    StoryFrame,
    bible_message,
    characters_block,
    lore_proposal_messages,
    notes_text,
    scene_max_tokens,
    scene_messages,
    system_message,
)
from core.repository import jobs
from core.streaming import SceneTextFilter, trim_to_last_sentence
from core.summaries import SummaryConfig, summarise
from core.text import storable
from core.tokens import TokenCounter

log = logging.getLogger(__name__)

# When the extra call cannot give choices either, the scene is not thrown away.
FALLBACK_CHOICES = (
    Choice("Look around carefully"),
    Choice("Press on"),
    Choice("Wait and see what happens"),
    Choice("Try something unexpected"),
)
_WORDS = re.compile(r"\w{2,}")


# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SceneText:
    """Newly visible story text (append it to what was shown before)."""

    text: str


@dataclass(frozen=True, slots=True)
class ChoicesReady:
    choices: tuple[Choice, ...]


@dataclass(frozen=True, slots=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class ContextReport:
    """How full the model's context is for the story's next scene."""

    context_length: int
    budget: int  # context − the reply's max tokens − a safety margin
    used: int  # tokens the next prompt needs with every unsummarised scene of the chapter

    @property
    def ratio(self) -> float:
        return self.used / self.budget if self.budget > 0 else 1.0

    @property
    def percent(self) -> int:
        return round(self.ratio * 100)

    def flagged(self, threshold: float = 0.8) -> bool:
        """True at ≥ 80 % of the budget: time to offer a new chapter."""
        return self.ratio >= threshold


@dataclass(frozen=True)
class Memory:
    """What the model will be given for the story's next scene and what each part costs
    in tokens (``/story memory``): the players can see what it remembers and fix it."""

    report: ContextReport
    reply_tokens: int  # max_tokens of the scene's reply
    frame_tokens: int  # the system message: premise, world, rules
    characters: list[str]
    characters_tokens: int
    lore: list[tuple[str, str]]  # (name, why) of the lore in the prompt
    lore_left_out: list[tuple[str, str]]  # triggered or pinned, but over the lore budget
    lore_tokens: int
    lore_budget: int
    chapters: list[tuple[str, int | None]]  # closed chapters: (title, summary tokens; None: being written)
    rolling: str | None  # the open chapter's rolling summary
    rolling_tokens: int
    author_note: str
    note_tokens: int
    scenes_kept: int  # recent scenes the prompt holds
    scenes_uncovered: int  # scenes no summary covers (more than kept: a summary comes first)
    scenes_tokens: int
    summaries_due: int  # summary jobs waiting or running


@dataclass(frozen=True, slots=True)
class SceneDone:
    """The scene (or variant) is written and stored. ``content`` is the final text: a
    front end replaces what it streamed with it (a reply cut short is trimmed)."""

    story_id: int
    scene_id: int
    variant_id: int
    kind: str
    content: str
    choices: tuple[Choice, ...]
    context: ContextReport


@dataclass(frozen=True, slots=True)
class Queued:
    """The generation waits for one of the LLM server's slots: ``position`` 1 is next
    (sent again each time the position changes)."""

    position: int


@dataclass(frozen=True, slots=True)
class SlotGranted:
    """The generation holds an LLM slot after waiting ``waited`` seconds (only when the
    queue is on); the model's text follows."""

    waited: float


@dataclass(frozen=True, slots=True)
class Summarising:
    """Older scenes must be summarised before this scene's prompt can hold the rest (the
    summary job had not run yet); the model's text follows."""


@dataclass(frozen=True, slots=True)
class Failed:
    """Nothing was stored; ``reason`` is a sentence for the player (offer Retry)."""

    reason: str
    kind: str


EngineEvent = Queued | SlotGranted | Summarising | SceneText | ChoicesReady | UsageReport | SceneDone | Failed


@dataclass(frozen=True)
class EngineConfig:
    safety_margin: int = 256
    flag_ratio: float = 0.8
    max_recent_scenes: int = 200  # never read more scenes than this for one prompt
    first_read: int = 40  # scenes read first; more only when the oldest is not summarised
    lease_ttl: timedelta = timedelta(seconds=30)
    heartbeat_interval: float = 5.0
    reasoning_headroom: int = 0
    summary_words: int = 200
    summary_max_tokens: int = 600
    # A rolling summary falls due when the next prompt would fill this share of the
    # budget; it folds the oldest scenes until the rest fill at most fold_target.
    fold_ratio: float = 0.9
    fold_target: float = 0.5
    # A model that ignores max_tokens is cut off after this many characters of reply
    # (None: eight per token of max_tokens, at least 4,000); the scene ends at its last
    # full sentence, as a reply cut short does.
    max_reply_chars: int | None = None
    lore_share: float = 0.15  # of the budget, for the lore a scene calls up
    lore_recent_scenes: int = 3  # whose text triggers lore (with the player's action)
    summary_claim_ttl: timedelta = timedelta(minutes=2)
    # A lease that could not be given back (the database was unreachable when the
    # generation ended) is tried again this often until it is: till then the story is busy.
    give_back_every: float = 1.0


def default_holder_prefix() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- what one generation needs -----------------------------------------------------------


@dataclass
class _Plan:
    """A prompt, what it costs, and what to do with the reply."""

    story_id: int
    purpose: str
    model: str
    frame: StoryFrame
    messages: list[dict[str, str]]
    estimated_tokens: int
    max_tokens: int
    report: ContextReport
    save: Callable[[AsyncSession, str, Sequence[Choice], int], Awaitable[tuple[int, int]]]
    kind: str
    prefix: str = ""  # shown before the stream (continue: the text being extended)
    need: _Need | None = None  # a summary to write before this prompt can be sent
    lane: str = ""  # whose turn it is in the LLM queue (core/llmqueue.py)
    heartbeat: asyncio.Task[None] | None = None  # keeps the lease while the model writes
    giving_back: bool = False  # the save's transaction gives the lease back


@dataclass(frozen=True)
class _ModelFacts:
    """What the server told us, asked before any transaction opens."""

    model: str
    context_length: int


@dataclass(frozen=True)
class _Need:
    """A summary without which the prompt would drop scenes no summary covers."""

    kind: SummaryKind
    variant_id: int  # rolling: the path's end; chapter: the chapter's last variant
    chapter_id: int


@dataclass(frozen=True)
class _Fit:
    """A prompt fitted into the budget (StoryEngine._budget)."""

    messages: list[dict[str, str]]
    report: ContextReport
    estimate: int  # the prompt's tokens, as counted here
    max_tokens: int
    budget: int
    need: _Need | None
    lore: LoreSelection
    kept: int  # uncovered scenes the prompt holds
    uncovered: int  # uncovered scenes in all (more than kept: a summary is due first)


def _unread(ctx: _Context) -> bool:
    """Whether scenes no summary covers lie before the part of the path that was read:
    the oldest scene read is not covered, or a closed chapter still waiting for its
    summary is not read back to its start (or to its rolling summary)."""
    path = ctx.path
    return bool(path) and ((path[0].depth > 0 and not ctx.covered(path[0])) or _unread_chapter(ctx) is not None)


def _unread_chapter(ctx: _Context) -> int | None:
    """The oldest closed chapter waiting for its summary whose uncovered scenes were not
    all read (its summary must be written before a prompt can leave them out)."""
    for c in ctx.chapters:
        if c.summary is not None or c.chapter.id not in ctx.closing:
            continue  # summarised, or the open chapter
        read = [p for p in ctx.path if p.chapter_id == c.chapter.id]
        rolling = ctx.rolling.get(c.chapter.id)
        if not read:
            return c.chapter.id
        at_start = read[0].scene_id == c.chapter.start_scene_id
        if not at_start and (rolling is None or read[0].depth > rolling.through_depth + 1):
            return c.chapter.id
    return None


def _refresh(plan: _Plan, new: _Plan) -> None:
    """Take ``new``'s prompt into ``plan`` after a summary was written; the running
    generation's own fields (its lease heartbeat) stay."""
    for name in ("frame", "messages", "estimated_tokens", "max_tokens", "report", "need", "prefix"):
        setattr(plan, name, getattr(new, name))


@dataclass
class _Context:
    """What a prompt is built from: the story, its path up to a point, its bible.

    A scene of the path is **covered** when its chapter is closed with a summary, or
    when its chapter's rolling summary reaches its depth; the prompt holds the scenes
    that are not, newest first, as many as fit, and never drops one (docs/architecture.md,
    "Memory: summaries and lore").
    """

    story: Story
    path: list[repo.PathScene]  # oldest first, ends at the scene the next one follows
    chapter_id: int | None  # the chapter the generated scene belongs to
    chapters: list[repo.PathChapter]
    characters: list[CharacterNote]
    rolling: dict[int, Summary]  # chapter id → its newest rolling summary on this path
    closing: dict[int, int]  # closed chapter id → the variant it closed at
    lore: list[Lore]
    content_notes: str = ""  # the server's (core/servers.py)

    def summarised(self, chapter_id: int) -> bool:
        return any(c.chapter.id == chapter_id and c.summary is not None for c in self.chapters)

    def covered(self, p: repo.PathScene) -> bool:
        rolling = self.rolling.get(p.chapter_id)
        return self.summarised(p.chapter_id) or (rolling is not None and p.depth <= rolling.through_depth)

    @property
    def open_rolling(self) -> Summary | None:
        return self.rolling.get(self.chapter_id) if self.chapter_id is not None else None


class StoryEngine:
    """The public API of Kahani's story engine. One per process; safe to share."""

    def __init__(
        self,
        db: Database,
        llm: LLMClient,
        *,
        counter: TokenCounter | None = None,
        config: EngineConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        holder_prefix: str | None = None,
        queue: LLMQueue | None = None,
        limits: GenerationLimits | None = None,
    ) -> None:
        self.db = db
        self.llm = llm
        self.counter = counter or TokenCounter()
        self.config = config or EngineConfig()
        self.clock = clock
        self.holder_prefix = holder_prefix or default_holder_prefix()
        # At most LLM_MAX_CONCURRENCY generations at once across processes; None or a
        # limit of 0: every generation streams at once.
        self.queue = queue if queue is not None and queue.enabled else None
        self.limits = limits or GenerationLimits()
        self.summary_config = SummaryConfig(
            words=self.config.summary_words, max_tokens=self.config.summary_max_tokens,
            safety_margin=self.config.safety_margin, claim_ttl=self.config.summary_claim_ttl,
        )
        self._summary_due: list[Callable[[], None]] = []
        self._lore_proposed: list[Callable[[int, list[str]], Awaitable[None]]] = []
        self._owed: dict[str, int] = {}  # leases not given back yet: holder → story
        self._giving_back: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Stop trying to give back leases the database did not take back (they expire)."""
        if self._giving_back is not None:
            self._giving_back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._giving_back

    def on_summary_due(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a summary job is recorded (a worker wakes up)."""
        self._summary_due.append(callback)

    def on_lore_proposed(self, callback: Callable[[int, list[str]], Awaitable[None]]) -> None:
        """Await ``callback(story_id, names)`` when the storyteller proposed lore entries
        at a chapter's end (a front end tells the owner)."""
        self._lore_proposed.append(callback)

    # --- generations ---------------------------------------------------------------

    def next_scene(
        self,
        story_id: int,
        *,
        instruction_kind: InstructionKind = InstructionKind.OPENING,
        instruction: str = "",
        after_variant_id: int | None = None,
        user_id: int | None = None,
        frontend_ref: str | None = None,
        note: str = "",
    ) -> AsyncIterator[EngineEvent]:
        """Write the next scene of the story's path (the first one when it has none).

        ``after_variant_id`` is the variant the player acted on; if it is no longer the
        end of the path, the request fails with a clear reason and nothing changes.
        ``note`` is the player's note to the storyteller for this scene only (not stored,
        not part of the story).
        """

        async def plan(s: AsyncSession, facts: _ModelFacts) -> _Plan:
            story = await self._playable_story(s, story_id)
            tip = await repo.tip(s, story_id)
            if after_variant_id is not None and (tip is None or tip.variant.id != after_variant_id):
                raise Conflict(msg.NOT_LAST_SCENE)
            parent_id = tip.variant.id if tip else None
            chapter_id = await repo.current_chapter_id(s, story_id)
            ctx = await self._context(s, story, parent_id, chapter_id)
            kind = instruction_kind if tip else InstructionKind.OPENING

            async def save(s2: AsyncSession, content: str, choices: Sequence[Choice], tokens: int) -> tuple[int, int]:
                scene, variant = await repo.add_scene(
                    s2, story_id, parent_id, content, _specs(choices),
                    instruction_kind=kind, instruction=instruction if tip else "",
                    token_count=tokens, model=facts.model, created_by_id=user_id,
                )
                return scene.id, variant.id

            return self._plan(ctx, facts, "scene", VariantKind.ORIGINAL, kind, instruction, save, note=note)

        return self._generate(story_id, "scene", frontend_ref, plan, user_id)

    def regenerate(
        self, variant_id: int, *, user_id: int | None = None, frontend_ref: str | None = None
    ) -> AsyncIterator[EngineEvent]:
        """A new version of the variant's scene from the same starting point and the same
        instruction (the choice that led here is kept)."""
        return self._new_version(variant_id, VariantKind.REGENERATE, None, user_id, frontend_ref)

    def branch(
        self, variant_id: int, direction: str, *, user_id: int | None = None, frontend_ref: str | None = None
    ) -> AsyncIterator[EngineEvent]:
        """A new version of the variant's scene that goes in ``direction`` instead."""
        return self._new_version(variant_id, VariantKind.BRANCH, direction, user_id, frontend_ref)

    def continue_scene(
        self, variant_id: int, *, user_id: int | None = None, frontend_ref: str | None = None
    ) -> AsyncIterator[EngineEvent]:
        """A new variant holding the variant's text plus a streamed extension; the old
        variant and its choices stay as they are."""

        async def plan(s: AsyncSession, facts: _ModelFacts) -> _Plan:
            story_id = await repo.variant_story_id(s, variant_id)
            story = await self._playable_story(s, story_id)
            source = await repo.get_variant(s, variant_id)
            scene_chapter = (await repo.ancestry(s, variant_id, limit=1))[0].chapter_id
            ctx = await self._context(s, story, variant_id, scene_chapter)
            prefix = source.content.rstrip() + "\n\n"

            async def save(s2: AsyncSession, content: str, choices: Sequence[Choice], tokens: int) -> tuple[int, int]:
                variant = await repo.add_variant(
                    s2, source.scene_id, VariantKind.CONTINUE, content, _specs(choices),
                    source_variant_id=source.id, token_count=tokens,
                    model=facts.model, created_by_id=user_id,
                )
                return variant.scene_id, variant.id

            plan_ = self._plan(ctx, facts, "continue", VariantKind.CONTINUE, InstructionKind.OPENING, "", save,
                               continue_last=True)
            plan_.prefix = prefix
            return plan_

        return self._generate_for_variant(variant_id, "continue", frontend_ref, plan, user_id)

    def edit_scene(
        self, variant_id: int, text: str, *, keep_choices: bool = True, user_id: int | None = None
    ) -> AsyncIterator[EngineEvent]:
        """Store a player's own text for the scene as a new ``edit`` variant; its choices
        are the old ones, or new ones asked from the model."""
        return self._edit(variant_id, text, keep_choices, user_id)

    # --- the rest of the API ---------------------------------------------------------

    async def select_variant(self, variant_id: int) -> repo.PathScene:
        """Make a variant active (switching the story's path); returns the new tip."""
        async with self.db.transaction() as s:
            await repo.set_active_variant(s, variant_id)
            story_id = await repo.variant_story_id(s, variant_id)
            tip = await repo.tip(s, story_id)
            assert tip is not None
            return tip

    async def rate(self, variant_id: int, *, rating: int | None = None, favourite: bool | None = None) -> SceneVariant:
        async with self.db.transaction() as s:
            return await repo.rate_variant(s, variant_id, rating=rating, favourite=favourite)

    async def check_limits(self, session: AsyncSession, story: Story, user_id: int | None) -> None:
        """Raise :class:`RateLimited` when ``user_id`` (or the story's server) may not
        start another generation now; front ends ask before they post anything."""
        if self.limits.active:
            await check_limits(session, self.limits, user_id=user_id, guild_id=story.guild_id, now=self.clock())

    async def context_report(self, story_id: int) -> ContextReport:
        """How full the context is for the story's next scene (for ``/story info``)."""
        return (await self._next_prompt(story_id))[0]

    async def _next_prompt(self, story_id: int) -> tuple[ContextReport, _Context, _Fit]:
        context_length = await self.llm.context_length()
        async with self.db.read() as s:
            story = await repo.get_story(s, story_id)
            tip = await repo.tip(s, story_id)
            chapter_id = await repo.current_chapter_id(s, story_id)
            ctx = await self._context(s, story, tip.variant.id if tip else None, chapter_id)
        fit = self._budget(ctx, context_length, InstructionKind.CHOICE, "", False)
        return fit.report, ctx, fit

    async def memory(self, story_id: int) -> Memory:
        """What the next scene's prompt holds, part by part, with token costs."""
        report, ctx, fit = await self._next_prompt(story_id)
        async with self.db.read() as s:
            due = len(await jobs.pending_jobs(s, story_id))
        count = self.counter.count
        frame = _frame(ctx.story, ctx.content_notes)
        chapters: list[tuple[str, int | None]] = []
        for c in ctx.chapters:
            if c.chapter.id == ctx.chapter_id:
                continue
            chapters.append((c.chapter.title, count(c.summary.content) if c.summary is not None else None))
        rolling = ctx.open_rolling
        kept = self._candidates(ctx, False)[fit.uncovered - fit.kept:]
        note = notes_text(ctx.story.author_note)
        return Memory(
            report=report, reply_tokens=fit.max_tokens,
            frame_tokens=count(system_message(frame)),
            characters=[c.name for c in ctx.characters],
            characters_tokens=count(characters_block(ctx.characters)),
            lore=[(lore.name, fit.lore.why.get(lore.id, "")) for lore in fit.lore.included],
            lore_left_out=[(lore.name, fit.lore.why.get(lore.id, "")) for lore in fit.lore.left_out],
            lore_tokens=fit.lore.tokens, lore_budget=int(fit.budget * self.config.lore_share),
            chapters=chapters, rolling=rolling.content if rolling else None,
            rolling_tokens=count(rolling.content) if rolling else 0,
            author_note=ctx.story.author_note, note_tokens=count(note) if note else 0,
            scenes_kept=fit.kept, scenes_uncovered=fit.uncovered,
            scenes_tokens=sum(self._cost(p) for p in kept), summaries_due=due,
        )

    async def _after_scene(self, story_id: int) -> ContextReport:
        """The context report for the next scene; records the summary that scene will
        need (or soon would) so the worker writes it while the players read."""
        report, ctx, fit = await self._next_prompt(story_id)
        need = fit.need
        if need is None and ctx.path and ctx.chapter_id is not None and report.ratio >= self.config.fold_ratio:
            need = _Need(SummaryKind.ROLLING, ctx.path[-1].variant.id, ctx.chapter_id)
        if need is not None:
            await self._schedule(story_id, need)
        return report

    async def _schedule(self, story_id: int, need: _Need, *, wake: bool = True) -> int:
        async with self.db.transaction() as s:
            job_id = await jobs.schedule_summary(s, story_id, need.kind, need.variant_id, need.chapter_id,
                                                 now=self.clock())
        if wake:
            for callback in self._summary_due:
                callback()
        return job_id

    async def story_so_far(self, story_id: int) -> list[tuple[Chapter, str | None]]:
        """The chapters of the active path with their summaries (the open one: its
        rolling summary, if any; a closed one whose summary is not written yet: None)."""
        async with self.db.read() as s:
            chapters = await repo.path_chapters(s, story_id)
            path = await repo.active_path(s, story_id, limit=self.config.max_recent_scenes)
            out: list[tuple[Chapter, str | None]] = []
            for pc in chapters:
                text = pc.summary.content if pc.summary else None
                if pc.summary is None and pc is chapters[-1]:
                    rolling = await repo.rolling_summary(s, path, pc.chapter.id)
                    text = rolling.content if rolling else None
                out.append((pc.chapter, text))
            return out

    async def new_chapter(self, story_id: int, *, title: str = "", user_id: int | None = None,
                          actor: Actor | None = None) -> Chapter:
        """Close the current chapter and open the next. With ``actor``, only if the policy
        lets them moderate the story (core/access.py).

        The closed chapter's summary is a job (core/summaries.py): the worker writes it
        behind the players' scenes, in pieces when the chapter is longer than the context;
        until then the next scenes' prompts hold the chapter's recent scenes, and a scene
        that cannot writes it first.
        """
        holder = self._holder()
        async with self.db.transaction() as s:
            if actor is not None:
                await stories.moderated(s, story_id, actor)
            await self._playable_story(s, story_id)
            tip = await repo.tip(s, story_id)
            if tip is None:
                raise Conflict(msg.CHAPTER_NEEDS_A_SCENE)
            chapter_id = await repo.current_chapter_id(s, story_id)
            if chapter_id != tip.chapter_id:
                raise Conflict(msg.CHAPTER_ALREADY_NEW)
            # Not while a scene is being written (it would land in the closed chapter).
            if not await repo.acquire_lease(s, story_id, holder, now=self.clock(), ttl=self.config.lease_ttl,
                                            purpose="chapter"):
                raise Conflict(msg.STILL_WRITING)
            chapter = await repo.open_chapter(s, story_id, tip.variant.id, summary=None, title=title)
            await jobs.schedule_summary(s, story_id, SummaryKind.CHAPTER, tip.variant.id, tip.chapter_id,
                                        now=self.clock())
            await repo.release_lease(s, story_id, holder)
        for wake in self._summary_due:
            wake()
        return chapter

    async def edit_summary(self, story_id: int, chapter_id: int, text: str, *, user_id: int | None = None) -> None:
        """Replace a closed chapter's summary, or the open chapter's rolling summary, in
        place (it covers the same scenes); the text before is kept for Undo."""
        async with self.db.transaction() as s:
            row = await self._summary_row(s, story_id, chapter_id)
            row.previous_content, row.content = row.content, storable(text).strip()
            row.token_count = self.counter.count(row.content)
            row.edited_by_id = user_id

    async def undo_summary(self, story_id: int, chapter_id: int, *, user_id: int | None = None) -> str:
        """Put back the summary's text before its last edit (again: redo); returns it."""
        async with self.db.transaction() as s:
            row = await self._summary_row(s, story_id, chapter_id)
            if row.previous_content is None:
                raise Conflict(msg.SUMMARY_NOTHING_TO_UNDO)
            row.previous_content, row.content = row.content, row.previous_content
            row.token_count = self.counter.count(row.content)
            row.edited_by_id = user_id
            return row.content

    async def summary_edited(self, story_id: int, chapter_id: int) -> bool:
        """Whether the chapter's summary has an edit to undo."""
        async with self.db.read() as s:
            try:
                return (await self._summary_row(s, story_id, chapter_id)).previous_content is not None
            except KahaniError:
                return False

    async def _summary_row(self, s: AsyncSession, story_id: int, chapter_id: int) -> Summary:
        """A chapter's closing summary, else its rolling summary on the active path."""
        chain = await repo.path_chapters(s, story_id)
        entry = next((c for c in chain if c.chapter.id == chapter_id), None)
        if entry is None:
            raise NotFound(msg.CHAPTER_NOT_ON_PATH)
        if entry.summary is not None:
            return entry.summary
        path = await repo.active_path(s, story_id, limit=self.config.max_recent_scenes)
        rolling = await repo.rolling_summary(s, path, chapter_id)
        if rolling is None:
            raise Conflict(msg.SUMMARY_NOTHING_TO_EDIT)
        return rolling

    # --- internals: planning ---------------------------------------------------------

    def _holder(self) -> str:
        return f"{self.holder_prefix}:{uuid.uuid4().hex[:12]}"

    async def _playable_story(self, s: AsyncSession, story_id: int) -> Story:
        story = await repo.get_story(s, story_id)
        if story.status == StoryStatus.ENDED:
            raise Conflict(msg.STORY_ENDED)
        return story

    async def _context(
        self, s: AsyncSession, story: Story, end_variant_id: int | None, chapter_id: int | None,
        *, limit: int | None = None,
    ) -> _Context:
        """The story's context at ``end_variant_id``. Without ``limit``, the last
        ``first_read`` scenes are read first, and up to ``max_recent_scenes`` only when
        the oldest of them is not covered by a summary yet: the summaries keep the
        uncovered scenes few, so a prompt's cost does not grow with the story."""
        chapters = await repo.chapter_chain(s, chapter_id) if chapter_id is not None else []
        closing = {
            c.chapter.id: after.chapter.opened_after_variant_id
            for c, after in zip(chapters, chapters[1:], strict=False)
            if after.chapter.opened_after_variant_id is not None
        }
        characters = [
            CharacterNote(c.name, c.description, c.personality)
            for c in await repo.list_characters(s, story.id)
        ]
        lore = [Lore.of(entry) for entry in await repo.list_lore(s, story.id)]
        notes = await servers.content_notes(s, story.guild_id)
        reads = [limit] if limit else [min(self.config.first_read, self.config.max_recent_scenes),
                                       self.config.max_recent_scenes]
        for n, read in enumerate(reads):
            path = await repo.ancestry(s, end_variant_id, limit=read) if end_variant_id is not None else []
            rolling: dict[int, Summary] = {}
            for c in chapters:  # the open chapter, and closed ones whose summary is not written yet
                if c.summary is None:
                    found = await repo.rolling_summary(s, path, c.chapter.id)
                    if found is not None:
                        rolling[c.chapter.id] = found
            ctx = _Context(story=story, path=path, chapter_id=chapter_id, chapters=chapters,
                           characters=characters, rolling=rolling, closing=closing, lore=lore,
                           content_notes=notes)
            if n == len(reads) - 1 or len(path) < read or not _unread(ctx):
                break
        return ctx

    def _bible(self, ctx: _Context, lore: str = "") -> str:
        closed: list[tuple[str, str]] = []
        for c in ctx.chapters:
            if c.summary is not None:
                closed.append((c.chapter.title, c.summary.content))
            elif c.chapter.id != ctx.chapter_id and c.chapter.id in ctx.rolling:
                closed.append((c.chapter.title, ctx.rolling[c.chapter.id].content))
        open_rolling = ctx.open_rolling
        return bible_message(ctx.characters, closed, open_rolling.content if open_rolling else None, lore)

    def _candidates(self, ctx: _Context, continue_last: bool) -> list[repo.PathScene]:
        """The scenes of the path no summary covers, oldest first. Right after a new
        chapter the last scene before it stays for continuity."""
        candidates = [p for p in ctx.path if not ctx.covered(p)]
        if not candidates and ctx.path:
            candidates = ctx.path[-1:]
        if continue_last and ctx.path and ctx.path[-1] not in candidates:
            candidates.append(ctx.path[-1])
        return candidates

    def _budget(
        self, ctx: _Context, context_length: int, kind: str, instruction: str, continue_last: bool,
        note: str = "",
    ) -> _Fit:
        """Fit the prompt into the budget: every scene no summary covers, newest last.

        When they do not all fit, or older ones were not even read (more than
        ``max_recent_scenes``), the fit names the summary to write first (``need``);
        the prompt then holds the newest that fit, for the report.
        """
        frame = _frame(ctx.story, ctx.content_notes)
        max_tokens = scene_max_tokens(frame.scene_length, reasoning_headroom=self.config.reasoning_headroom)
        budget = max(256, context_length - max_tokens - self.config.safety_margin)
        lore = select_lore(
            ctx.lore, recent=[p.variant.content for p in ctx.path[-self.config.lore_recent_scenes:]],
            action=f"{instruction}\n{note}", budget=int(budget * self.config.lore_share), count=self.counter.count,
        )
        bible = self._bible(ctx, lore.block)
        notes = notes_text(ctx.story.author_note, note)
        candidates = self._candidates(ctx, continue_last)
        fixed = scene_messages(frame, bible, [], kind, instruction, continue_last=False, notes=notes)
        fixed_tokens = self.counter.count_messages(fixed) + 16
        costs = [self._cost(p) for p in candidates]
        report = ContextReport(context_length, budget, self.counter.adjust(fixed_tokens + sum(costs)))

        # Newest first, as many as fit; the scene being continued must be there whatever
        # it costs.
        start, spent = len(candidates), fixed_tokens
        while start > 0:
            must = continue_last and start == len(candidates)
            if not must and self.counter.adjust(spent + costs[start - 1]) > budget:
                break
            start -= 1
            spent += costs[start]
        unread = _unread(ctx)
        need = self._need(ctx, candidates[0] if candidates else None) if start > 0 or unread else None
        kept = candidates[start:]
        turns = [SceneTurn(p.variant.instruction_kind, p.variant.instruction, p.variant.content) for p in kept]
        messages = scene_messages(frame, bible, turns, kind, instruction, continue_last=continue_last, notes=notes)
        return _Fit(messages, report, self.counter.count_messages(messages), max_tokens, budget, need,
                    lore, len(kept), len(candidates))

    def _cost(self, p: repo.PathScene) -> int:
        content = p.variant.token_count or self.counter.count(p.variant.content)
        return content + self.counter.count(p.variant.instruction) + 24

    def _need(self, ctx: _Context, oldest: repo.PathScene | None) -> _Need | None:
        """The summary that covers the oldest uncovered scenes: a closed chapter's summary
        when they belong to one, else the open chapter's rolling summary."""
        pending = _unread_chapter(ctx)
        if pending is not None:
            return _Need(SummaryKind.CHAPTER, ctx.closing[pending], pending)
        if oldest is not None and oldest.chapter_id != ctx.chapter_id and oldest.chapter_id in ctx.closing:
            return _Need(SummaryKind.CHAPTER, ctx.closing[oldest.chapter_id], oldest.chapter_id)
        if not ctx.path or ctx.chapter_id is None:
            return None
        return _Need(SummaryKind.ROLLING, ctx.path[-1].variant.id, ctx.chapter_id)

    def _fold_set(self, ctx: _Context, context_length: int) -> list[repo.PathScene]:
        """The open chapter's oldest uncovered scenes to fold into its rolling summary:
        enough that the rest fill at most ``fold_target`` of the budget (the next scenes
        then fit for a while instead of folding one scene every time). The newest scene
        always stays."""
        frame = _frame(ctx.story, ctx.content_notes)
        max_tokens = scene_max_tokens(frame.scene_length, reasoning_headroom=self.config.reasoning_headroom)
        budget = max(256, context_length - max_tokens - self.config.safety_margin)
        fixed = self.counter.count_messages(
            scene_messages(frame, self._bible(ctx), [], InstructionKind.CHOICE, "", continue_last=False)
        ) + 16
        candidates = [p for p in ctx.path if not ctx.covered(p) and p.chapter_id == ctx.chapter_id]
        target = int(budget * self.config.fold_target)
        start, spent = len(candidates), fixed
        while start > 1 and self.counter.adjust(spent + self._cost(candidates[start - 1])) <= target:
            start -= 1
            spent += self._cost(candidates[start])
        if start == len(candidates):  # not even the newest fits the target: keep it anyway
            start -= 1
        return candidates[:max(start, 0)]

    def _plan(
        self,
        ctx: _Context,
        facts: _ModelFacts,
        purpose: str,
        variant_kind: VariantKind,
        kind: str,
        instruction: str,
        save: Callable[[AsyncSession, str, Sequence[Choice], int], Awaitable[tuple[int, int]]],
        *,
        continue_last: bool = False,
        note: str = "",
    ) -> _Plan:
        fit = self._budget(ctx, facts.context_length, kind, instruction, continue_last, note)
        return _Plan(
            story_id=ctx.story.id,
            purpose=purpose,
            model=facts.model,
            frame=_frame(ctx.story, ctx.content_notes),
            messages=fit.messages,
            estimated_tokens=fit.estimate,
            max_tokens=fit.max_tokens,
            report=fit.report,
            save=save,
            kind=variant_kind.value,
            need=fit.need,
            lane=lane_for(ctx.story.guild_id, ctx.story.owner_id),
        )

    # --- internals: summaries ----------------------------------------------------------

    async def _cover(self, story_id: int, need: _Need) -> None:
        """Write the summary a prompt needs now: claim its job (recording it if the
        worker has not), or wait while another holder writes it."""
        job_id = await self._schedule(story_id, need, wake=False)
        holder = self._holder()
        deadline = self.clock() + self.summary_config.claim_ttl
        while True:
            async with self.db.transaction() as s:
                job = await jobs.claim(s, job_id, holder, now=self.clock(), ttl=self.summary_config.claim_ttl)
            if job is not None:
                break
            # Another process (or this one's worker) is writing it: wait, then re-plan.
            async with self.db.read() as s:
                job = await jobs.get_job(s, job_id)
            if job is None or job.state != JobState.RUNNING or self.clock() > deadline:
                return
            await asyncio.sleep(0.2)
        try:
            await self.run_summary_job(job_id, holder)
        except KahaniError as exc:
            async with self.db.transaction() as s:
                await jobs.finish(s, job_id, holder, now=self.clock(), error=exc.message,
                                  retry_at=self.clock() + self.summary_config.retry_after)
            raise

    async def run_summary_job(self, job_id: int, holder: str) -> None:
        """Write the summary of a claimed job and mark it done (core/summaries.py). The
        summary is stored only if the claim is still ``holder``'s. Raises KahaniError."""
        context_length = await self.llm.context_length()
        async with self.db.read() as s:
            job = await jobs.get_job(s, job_id)
            if job is None:
                return  # the story was deleted
            kind, variant_id, chapter_id = SummaryKind(job.kind), job.variant_id, job.chapter_id
            story = await repo.get_story(s, job.story_id)
            ctx = await self._context(s, story, variant_id, chapter_id)
            if ctx.path and not ctx.covered(ctx.path[0]) and ctx.path[0].depth > 0:
                # More uncovered scenes than a prompt reads: read all of the chapter's.
                ctx = await self._context(s, story, variant_id, chapter_id, limit=ctx.path[-1].depth + 1)
        frame = _frame(story)

        async def keep_claim() -> None:
            async with self.db.transaction() as s2:
                if not await jobs.extend(s2, job_id, holder, now=self.clock(), ttl=self.summary_config.claim_ttl):
                    raise Conflict(msg.SUMMARY_CLAIM_LOST)

        rolling = ctx.rolling.get(chapter_id)
        if kind == SummaryKind.CHAPTER:
            scenes = [p for p in ctx.path if p.chapter_id == chapter_id and not ctx.covered(p)]
            through = (variant_id, ctx.path[-1].depth if ctx.path else 0)
        else:
            scenes = self._fold_set(ctx, context_length)
            through = (scenes[-1].variant.id, scenes[-1].depth) if scenes else (variant_id, 0)
        if kind == SummaryKind.ROLLING and not scenes:
            text = None  # nothing to fold (a scene's own fold came first)
        else:
            text = await summarise(
                self.llm, self.counter, self.summary_config, frame, rolling.content if rolling else None,
                [p.variant.content for p in scenes], context_length=context_length, on_progress=keep_claim,
            )
        async with self.db.transaction() as s:
            if not await jobs.finish(s, job_id, holder, now=self.clock()):
                log.info("summary job %s: claim lost; another holder finishes it", job_id)
                return
            if text is not None:
                await repo.set_summary(s, through[0], chapter_id, kind, text, through_depth=through[1],
                                       token_count=self.counter.count(text))
        log.info("story %s: %s summary written (%d scenes)", story.id, kind.value, len(scenes))
        if kind == SummaryKind.CHAPTER and text:
            await self._propose_lore(story.id, frame, text, context_length)

    async def _propose_lore(self, story_id: int, frame: StoryFrame, summary: str, context_length: int) -> None:
        """The storyteller's lore proposals from a closed chapter's summary, stored as
        proposed entries for a person to accept, edit or dismiss. Best effort: a failure
        leaves the story's lore as it was."""
        try:
            async with self.db.read() as s:
                known = [entry.name for entry in await repo.list_lore(s, story_id, status=None)]
            reply = await self.llm.complete(lore_proposal_messages(frame, summary, known),
                                            max_tokens=min(700, max(200, context_length // 6)))
            proposals = parse_proposals(reply.text)
            if not proposals:
                return
            async with self.db.transaction() as s:
                names = [entry.name for entry in await repo.propose_lore(s, story_id, proposals)]
        except (LLMError, KahaniError) as exc:
            log.info("story %s: no lore proposals (%s)", story_id, exc)
            return
        log.info("story %s: the storyteller proposed %d lore entries", story_id, len(names))
        for callback in self._lore_proposed:
            try:
                await callback(story_id, names)
            except Exception:
                log.exception("story %s: telling about lore proposals failed", story_id)

    def _new_version(
        self, variant_id: int, kind: VariantKind, direction: str | None, user_id: int | None,
        frontend_ref: str | None,
    ) -> AsyncIterator[EngineEvent]:
        async def plan(s: AsyncSession, facts: _ModelFacts) -> _Plan:
            story_id = await repo.variant_story_id(s, variant_id)
            story = await self._playable_story(s, story_id)
            source = await repo.get_variant(s, variant_id)
            here = (await repo.ancestry(s, variant_id, limit=2))
            scene = here[-1]
            parent_id = here[0].variant.id if len(here) == 2 else None
            ctx = await self._context(s, story, parent_id, scene.chapter_id)
            if direction is None:
                instruction_kind, instruction = source.instruction_kind, source.instruction
            else:
                instruction_kind, instruction = InstructionKind.DIRECTOR.value, direction
            if parent_id is None and direction is None:
                instruction_kind = InstructionKind.OPENING.value

            async def save(s2: AsyncSession, content: str, choices: Sequence[Choice], tokens: int) -> tuple[int, int]:
                variant = await repo.add_variant(
                    s2, source.scene_id, kind, content, _specs(choices),
                    instruction_kind=InstructionKind(instruction_kind), instruction=instruction,
                    source_variant_id=source.id, token_count=tokens,
                    model=facts.model, created_by_id=user_id,
                )
                return variant.scene_id, variant.id

            prompt_kind = instruction_kind
            if parent_id is None and direction is not None:
                # A branch of the opening scene: a director's note on how to begin.
                prompt_kind = InstructionKind.DIRECTOR.value
            return self._plan(ctx, facts, kind.value, kind, prompt_kind, instruction, save)

        return self._generate_for_variant(variant_id, kind.value, frontend_ref, plan, user_id)

    async def _generate_for_variant(
        self, variant_id: int, purpose: str, frontend_ref: str | None,
        plan: Callable[[AsyncSession, _ModelFacts], Awaitable[_Plan]], user_id: int | None,
    ) -> AsyncIterator[EngineEvent]:
        try:
            async with self.db.read() as s:
                story_id = await repo.variant_story_id(s, variant_id)
        except KahaniError as exc:
            yield Failed(exc.message, "invalid")
            return
        async for event in self._generate(story_id, purpose, frontend_ref, plan, user_id):
            yield event

    # --- internals: running a generation ---------------------------------------------

    async def _generate(
        self, story_id: int, purpose: str, frontend_ref: str | None,
        build: Callable[[AsyncSession, _ModelFacts], Awaitable[_Plan]],
        user_id: int | None = None,
    ) -> AsyncIterator[EngineEvent]:
        logctx.bind(story=story_id)  # every line of this generation names its story
        try:
            # Network first (cached after the first call), never inside a transaction.
            facts = _ModelFacts(await self.llm.resolve_model(), await self.llm.context_length())
        except LLMError as exc:
            yield Failed(exc.reason, exc.kind)
            return
        holder = self._holder()
        # The lease in one short write; the prompt is read without holding the write
        # lock (SQLite has one writer at a time: other players' clicks must not wait).
        try:
            async with self.db.transaction() as s:
                acquired = await repo.acquire_lease(
                    s, story_id, holder, now=self.clock(), ttl=self.config.lease_ttl,
                    purpose=purpose, frontend_ref=frontend_ref,
                )
                if acquired and self.limits.active:  # over a limit: the lease is not taken either
                    guild_id = await s.scalar(select(Story.guild_id).where(Story.id == story_id))
                    await admit(s, self.limits, user_id=user_id, guild_id=guild_id, now=self.clock())
        except RateLimited as exc:
            yield Failed(exc.message, "rate_limited")
            return
        if not acquired:
            yield Failed(msg.STILL_WRITING, "busy")
            return
        try:
            async with self.db.read() as s:
                plan = await build(s, facts)
        except KahaniError as exc:
            await self._release(story_id, holder)
            yield Failed(exc.message, "invalid")
            return
        except BaseException:
            await self._release(story_id, holder)
            raise

        log.info("%s: started (%d prompt tokens, max %d)", purpose, plan.estimated_tokens, plan.max_tokens)
        heartbeat = plan.heartbeat = asyncio.create_task(self._heartbeat(plan, holder))
        ticket: Ticket | None = None
        try:
            if self.queue is not None:
                ticket = await self.queue.enter(story_id, plan.lane)
                try:
                    async for position in ticket.wait():
                        log.debug("%s: waiting for an LLM slot, %s in line", purpose, position)
                        yield Queued(position)
                except KahaniError as exc:
                    yield Failed(exc.message, "queue")
                    return
                if ticket.waited >= 0.05:
                    log.info("%s: got an LLM slot after %.1f s in line", purpose, ticket.waited)
                yield SlotGranted(ticket.waited)
            for _ in range(4):
                if plan.need is None:
                    break
                # Scenes no summary covers would not fit: summarise them first.
                yield Summarising()
                try:
                    await self._cover(story_id, plan.need)
                    async with self.db.read() as s:
                        _refresh(plan, await build(s, facts))
                except KahaniError as exc:
                    yield Failed(exc.message, "summary")
                    return
            if plan.need is not None:
                yield Failed(msg.SUMMARY_BEHIND, "summary")
                return
            async for event in self._stream_and_save(plan, holder, ticket):
                if isinstance(event, Failed):
                    log.info("%s: failed (%s): %s", purpose, event.kind, event.reason)
                yield event
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            if ticket is not None:
                await asyncio.shield(ticket.release())
            await self._release(story_id, holder)

    async def _heartbeat(self, plan: _Plan, holder: str) -> None:
        story_id = plan.story_id
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            try:
                async with self.db.transaction() as s:
                    if not await repo.heartbeat_lease(s, story_id, holder, now=self.clock(), ttl=self.config.lease_ttl):
                        if not plan.giving_back:  # (not a race with the save that gave it back)
                            log.warning("story %s: generation lease %s was lost", story_id, holder)
                        return
            except Exception:  # the final write re-checks the lease; keep trying
                log.exception("story %s: lease heartbeat failed", story_id)

    async def _release(self, story_id: int, holder: str) -> None:
        try:
            # Shielded: a cancelled generation still gives its lease back.
            await asyncio.shield(self._release_now(story_id, holder))
        except Exception as exc:
            # The database went away (the generation probably failed for that reason):
            # give the lease back as soon as it answers, not when the lease expires, so
            # Retry works at once when it is back.
            log.warning("story %s: could not give lease %s back (%r); trying again every %.0f s",
                        story_id, holder, exc, self.config.give_back_every, exc_info=not unreachable(exc))
            self._owed[holder] = story_id
            if self._giving_back is None or self._giving_back.done():
                self._giving_back = asyncio.create_task(self._give_back(), name="kahani-give-back-leases")

    async def _give_back(self) -> None:
        while self._owed:
            await asyncio.sleep(self.config.give_back_every)
            for holder, story_id in list(self._owed.items()):
                try:
                    await self._release_now(story_id, holder)
                except Exception:
                    break  # still unreachable: all of them wait for the next round
                del self._owed[holder]
                log.info("story %s: lease %s given back", story_id, holder)

    async def _release_now(self, story_id: int, holder: str) -> None:
        async with self.db.transaction() as s:
            await repo.release_lease(s, story_id, holder)

    async def _stream_and_save(self, plan: _Plan, holder: str, ticket: Ticket | None) -> AsyncIterator[EngineEvent]:
        text_filter = SceneTextFilter()
        finish = "stop"
        saw_content = False
        cap = self.config.max_reply_chars or max(4000, plan.max_tokens * 8)
        received = 0
        if plan.prefix:
            yield SceneText(plan.prefix)
        try:
            async with contextlib.aclosing(
                self.llm.stream_chat(plan.messages, max_tokens=plan.max_tokens, model=plan.model)
            ) as stream:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        saw_content = saw_content or bool(event.text.strip())
                        received += len(event.text)
                        if received > cap:  # past max_tokens: the model does not stop
                            log.warning("%s: the reply passed %d characters; cut there", plan.purpose, cap)
                            finish = "length"
                            break
                        visible = text_filter.feed(event.text)
                        if visible:
                            yield SceneText(visible)
                    elif isinstance(event, Usage):
                        self.counter.observe(plan.estimated_tokens, event.prompt_tokens)
                        yield UsageReport(event.prompt_tokens, event.completion_tokens)
                    elif isinstance(event, Finish):
                        finish = event.reason
        except LLMError as exc:
            log.info("story %s: %s failed: %r %s", plan.story_id, plan.purpose, exc, exc.detail)
            yield Failed(exc.reason, exc.kind)
            return

        result = text_filter.finish()
        if result.tail:
            yield SceneText(result.tail)
        scene = result.scene_text
        if result.block_found:
            choices = parse_choices(result.choice_block)
        else:
            choices = []
            if finish == "length":
                scene = trim_to_last_sentence(scene)
        scene = scene.strip()
        if not scene and (result.marker_found or result.choice_block.strip()):
            yield Failed(msg.LLM_GARBAGE, "garbage")  # choices but no scene
            return
        if not scene:
            reason = msg.LLM_ONLY_REASONING if saw_content else msg.LLM_EMPTY_REPLY
            yield Failed(reason, "empty_reply")
            return
        if not _WORDS.search(scene):
            yield Failed(msg.LLM_GARBAGE, "garbage")
            return
        content = storable(plan.prefix + scene if plan.prefix else scene)
        choices = [Choice(storable(c.text), storable(c.label)) for c in choices]

        if needs_extra_call(choices):
            choices = await self._more_choices(plan.frame, content, choices)
        yield ChoicesReady(tuple(choices))

        token_count = self.counter.count(content)
        try:
            async with self.db.transaction() as s:
                if not await repo.heartbeat_lease(s, plan.story_id, holder, now=self.clock(),
                                                  ttl=self.config.lease_ttl):
                    raise Conflict(msg.LEASE_LOST)
                scene_id, variant_id = await plan.save(s, content, choices, token_count)
                # Free the story in the same transaction: players may act on the new
                # scene the moment a front end shows it.
                plan.giving_back = True
                await repo.release_lease(s, plan.story_id, holder)
        except KahaniError as exc:
            yield Failed(exc.message, "conflict")
            return
        if plan.heartbeat is not None:  # the lease is given back: nothing to keep alive
            plan.heartbeat.cancel()
        log.info("%s: stored scene %s, variant %s (%d tokens)", plan.purpose, scene_id, variant_id, token_count)
        if ticket is not None:
            await asyncio.shield(ticket.release())  # the next in line need not wait for the front end
        try:
            report = await self._after_scene(plan.story_id)
        except Exception:  # the scene is stored: a summary not recorded now is recorded later
            log.warning("story %s: could not look ahead for summaries", plan.story_id, exc_info=True)
            report = plan.report
        yield SceneDone(plan.story_id, scene_id, variant_id, plan.kind, content, tuple(choices), report)

    async def _more_choices(self, frame: StoryFrame, scene: str, found: list[Choice]) -> list[Choice]:
        """The one short extra call for choices; generic ones if even that fails."""
        request = build_choices_request(scene, story_context=_story_context(frame))
        try:
            reply = await self.llm.complete(
                request.messages, max_tokens=request.max_tokens,
                response_format=request.response_format, fallback_messages=request.plain_messages,
            )
            found = merge_choices(found, parse_choices_reply(reply.text))
        except LLMError as exc:
            log.warning("extra choices call failed: %r", exc)
        if len(found) < CHOICE_COUNT:
            found = merge_choices(found, list(FALLBACK_CHOICES))
        return found

    async def _edit(
        self, variant_id: int, text: str, keep_choices: bool, user_id: int | None
    ) -> AsyncIterator[EngineEvent]:
        text = text.strip()
        if not text:
            yield Failed(msg.EDIT_EMPTY, "invalid")
            return
        try:
            async with self.db.read() as s:
                source = await repo.get_variant(s, variant_id)
                story_id = await repo.variant_story_id(s, variant_id)
                story = await self._playable_story(s, story_id)
                old = [Choice(c.text, c.label) for c in await repo.get_choices(s, variant_id)]
        except KahaniError as exc:
            yield Failed(exc.message, "invalid")
            return
        choices = old if keep_choices and old else await self._more_choices(_frame(story), text, [])
        yield SceneText(text)
        yield ChoicesReady(tuple(choices))
        holder = self._holder()
        try:
            async with self.db.transaction() as s:
                if not await repo.acquire_lease(s, story_id, holder, now=self.clock(), ttl=self.config.lease_ttl,
                                                purpose="edit"):
                    raise Conflict(msg.STILL_WRITING)
                variant = await repo.add_variant(
                    s, source.scene_id, VariantKind.EDIT, text, _specs(choices),
                    source_variant_id=source.id, token_count=self.counter.count(text), created_by_id=user_id,
                )
                await repo.release_lease(s, story_id, holder)
        except KahaniError as exc:
            yield Failed(exc.message, "conflict")
            return
        context = await self.context_report(story_id)
        yield SceneDone(story_id, variant.scene_id, variant.id, VariantKind.EDIT.value, text, tuple(choices), context)


def _specs(choices: Sequence[Choice]) -> list[repo.ChoiceSpec]:
    return [repo.ChoiceSpec(c.text, c.label) for c in choices]


def _frame(story: Story, content_notes: str = "") -> StoryFrame:
    return StoryFrame(
        content_notes=content_notes,
        title=story.title,
        genre=story.genre,
        tone=story.tone,
        world_setting=story.world_setting,
        premise=story.premise,
        point_of_view=story.point_of_view,
        scene_length=story.scene_length,
    )


def _story_context(frame: StoryFrame) -> str:
    parts = [f"Story: {frame.title}"]
    parts += [f"{k}: {v}" for k, v in (("Genre", frame.genre), ("Tone", frame.tone)) if v]
    return "\n".join(parts)
