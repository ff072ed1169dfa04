"""Long campaigns: summaries are jobs, written in pieces that fit, and no scene ever
leaves the prompt without a summary that covers it (both databases).

Scenes carry tags (``[#7]``: the scene at depth 7) and the fake LLM's summaries name the
tags they were given (``Covers #0-#41.``), so every prompt can be checked for what it
remembers: each earlier scene is either one of its turns or in one of its summaries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from core import repository as repo
from core.db import Database
from core.engine import EngineConfig, Failed, SceneDone, StoryEngine, Summarising
from core.llm import LLMClient
from core.models import InstructionKind, JobState, Summary, SummaryJob, SummaryKind
from core.repository import jobs
from core.summaries import SummaryWorker
from tests.clocks import FakeClock
from tests.fakes.llm import SUMMARY_PROMPT_START, FakeLLM, Fault, Reply, tags_in

CONTEXT = 2048
PROSE = "The keeper's lamp burned low while the sea rose against the black rocks below."


def scene_text(depth: int, sentences: int = 6) -> str:
    return f"[#{depth}] " + " ".join([PROSE] * sentences)


def tagged_scenes(start: int = 0) -> Callable[[dict[str, Any], int], Reply | None]:
    """A responder: each streamed scene request gets the next tagged scene."""
    depth = iter(range(start, 10**6))

    def respond(body: dict[str, Any], n: int) -> Reply | None:
        if not body.get("stream"):
            return None  # summaries and choices: the fake's defaults
        return Reply(text=f"{scene_text(next(depth))}\n\n### Choices\n1. a\n2. b\n3. c\n4. d")

    return respond


def is_summary(body: dict[str, Any]) -> bool:
    return str(body["messages"][0]["content"]).startswith(SUMMARY_PROMPT_START)


def scene_requests(fake: FakeLLM) -> list[dict[str, Any]]:
    return [r for r in fake.chat_requests if r.get("stream")]


def remembered(body: dict[str, Any]) -> set[int]:
    return tags_in(" ".join(str(m["content"]) for m in body["messages"]))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def small_llm(fake_llm_factory: Any) -> AsyncIterator[tuple[FakeLLM, LLMClient]]:
    # The fake refuses (400) any request longer than its context, as LM Studio does.
    fake = await fake_llm_factory(context_length=CONTEXT, token_rate=None)
    client = LLMClient(fake.base_url, context_length=CONTEXT)
    yield fake, client
    await client.aclose()


def make_engine(db: Database, llm: LLMClient, clock: FakeClock) -> StoryEngine:
    return StoryEngine(db, llm, clock=clock, config=EngineConfig(heartbeat_interval=3600))


@dataclass
class Table:
    """The small-context fake, an engine on it and a summary worker (not started)."""

    fake: FakeLLM
    engine: StoryEngine
    summaries: SummaryWorker


@pytest.fixture
def table(db: Database, small_llm: tuple[FakeLLM, LLMClient], clock: FakeClock) -> Table:
    fake, llm = small_llm
    engine = make_engine(db, llm, clock)
    return Table(fake, engine, SummaryWorker(db, engine, clock=clock))


async def closed_chapter(db: Database, engine: StoryEngine, scenes: int) -> int:
    """A story whose first chapter of ``scenes`` seeded scenes was just closed."""
    story_id = await new_story(db)
    await seed_scenes(db, story_id, scenes)
    await engine.new_chapter(story_id)
    return story_id


async def new_story(db: Database, **options: Any) -> int:
    async with db.transaction() as s:
        owner = await repo.get_or_create_user(s, 1001, "Asha")
        story = await repo.create_story(s, owner, "The Lighthouse", genre="mystery", **options)
        return story.id


async def play(engine: StoryEngine, story_id: int, *, may_summarise: bool = True) -> SceneDone:
    async with db_tip(engine, story_id) as tip:
        after = tip.variant.id if tip else None
    kind = InstructionKind.CHOICE if after else InstructionKind.OPENING
    events = [e async for e in engine.next_scene(story_id, instruction_kind=kind, instruction="a",
                                                 after_variant_id=after)]
    assert isinstance(events[-1], SceneDone), events[-1]
    assert may_summarise or not any(isinstance(e, Summarising) for e in events), "the scene waited for a summary"
    return events[-1]


class db_tip:  # noqa: N801 - reads like a function
    def __init__(self, engine: StoryEngine, story_id: int) -> None:
        self.engine, self.story_id = engine, story_id

    async def __aenter__(self) -> repo.PathScene | None:
        async with self.engine.db.read() as s:
            return await repo.tip(s, self.story_id)

    async def __aexit__(self, *exc: object) -> None:
        return None


async def seed_scenes(db: Database, story_id: int, count: int, start: int = 0) -> int:
    """``count`` tagged scenes written straight to the database; returns the last variant."""
    async with db.transaction() as s:
        tip = await repo.tip(s, story_id)
        parent = tip.variant.id if tip else None
        for depth in range(start, start + count):
            _, variant = await repo.add_scene(
                s, story_id, parent, scene_text(depth), [repo.ChoiceSpec("a")],
                instruction_kind=InstructionKind.CHOICE if parent else InstructionKind.OPENING,
                instruction="a" if parent else "",
            )
            parent = variant.id
    assert parent is not None
    return parent


async def job_rows(db: Database) -> list[SummaryJob]:
    async with db.read() as s:
        return list(await s.scalars(select(SummaryJob).order_by(SummaryJob.id)))


# --- the prompt never forgets ------------------------------------------------------------


@pytest.mark.parametrize("worker", [True, False], ids=["worker", "scene-writes-it"])
async def test_no_scene_leaves_the_prompt_without_a_summary_in_a_long_story(
    db: Database, small_llm: tuple[FakeLLM, LLMClient], clock: FakeClock, worker: bool
) -> None:
    """60 scenes on a 2,048-token context: every scene request fits (the fake refuses
    any that does not), and remembers every earlier scene, as a turn or in a summary.
    With the worker, summaries are written between scenes; without it, the scene that
    needs one writes it first."""
    fake, llm = small_llm
    fake.responder = tagged_scenes()
    engine = make_engine(db, llm, clock)
    summaries = SummaryWorker(db, engine, clock=clock)
    story_id = await new_story(db, scene_length="short")
    for depth in range(60):
        await play(engine, story_id, may_summarise=not worker)
        if worker:
            await summaries.drain()
        request = scene_requests(fake)[-1]
        missing = set(range(depth)) - remembered(request)
        assert not missing, f"scene {depth}'s prompt forgot scenes {sorted(missing)}"
    summary_calls = [r for r in fake.chat_requests if is_summary(r)]
    assert 60 // 20 <= len(summary_calls) <= 60 // 2  # folds several scenes at a time
    async with db.read() as s:
        rolling = await s.scalar(select(func.count()).select_from(Summary).where(Summary.kind == "rolling"))
    assert rolling and rolling >= 3
    if worker:  # written between scenes by the worker, never inside a scene
        assert summaries.ran >= 3


async def test_a_scene_that_needs_a_summary_says_so_and_writes_it_first(
    db: Database, small_llm: tuple[FakeLLM, LLMClient], clock: FakeClock
) -> None:
    fake, llm = small_llm
    fake.responder = tagged_scenes(40)
    engine = make_engine(db, llm, clock)
    story_id = await new_story(db, scene_length="short")
    await seed_scenes(db, story_id, 40)  # older than any summary: a whole chapter unsummarised
    async with db_tip(engine, story_id) as tip:
        assert tip is not None
    events = [e async for e in engine.next_scene(story_id, instruction_kind=InstructionKind.CHOICE,
                                                 instruction="a", after_variant_id=tip.variant.id)]
    assert any(isinstance(e, Summarising) for e in events)
    assert isinstance(events[-1], SceneDone)
    assert set(range(40)) <= remembered(scene_requests(fake)[-1])
    assert [r.state for r in await job_rows(db)][0] == JobState.DONE


async def test_a_scene_whose_summary_cannot_be_written_fails_and_stores_nothing(
    db: Database, small_llm: tuple[FakeLLM, LLMClient], clock: FakeClock
) -> None:
    fake, llm = small_llm
    engine = make_engine(db, llm, clock)
    story_id = await new_story(db, scene_length="short")
    last = await seed_scenes(db, story_id, 40)
    fake.script(fault=Fault.HTTP_500)  # the summary call
    events = [e async for e in engine.next_scene(story_id, instruction_kind=InstructionKind.CHOICE,
                                                 instruction="a", after_variant_id=last)]
    assert isinstance(events[-1], Failed) and events[-1].kind == "summary"
    assert not scene_requests(fake)  # the scene was not asked for without its memory
    async with db.read() as s:
        assert (await repo.tip(s, story_id)).variant.id == last
        assert await repo.get_lease(s, story_id) is None
    # Retry works once the model is back.
    fake.responder = tagged_scenes(40)
    events = [e async for e in engine.next_scene(story_id, instruction_kind=InstructionKind.CHOICE,
                                                 instruction="a", after_variant_id=last)]
    assert isinstance(events[-1], SceneDone)


# --- chapters -----------------------------------------------------------------------------


async def test_a_new_chapter_opens_at_once_and_its_summary_is_written_by_the_worker(
    db: Database, small_llm: tuple[FakeLLM, LLMClient], clock: FakeClock
) -> None:
    fake, llm = small_llm
    fake.responder = tagged_scenes(3)
    engine = make_engine(db, llm, clock)
    summaries = SummaryWorker(db, engine, clock=clock)
    story_id = await new_story(db, scene_length="short")
    await seed_scenes(db, story_id, 3)
    before = len(fake.chat_requests)
    chapter = await engine.new_chapter(story_id, title="The Stair")
    assert chapter.number == 2 and len(fake.chat_requests) == before  # no model call
    assert [(j.kind, j.state) for j in await job_rows(db)] == [("chapter", "due")]
    # Before the summary is written, the next prompt still holds chapter 1's scenes.
    await play(engine, story_id)
    assert {0, 1, 2} <= remembered(scene_requests(fake)[-1])
    assert await summaries.drain() == 1
    so_far = await engine.story_so_far(story_id)
    assert [c.title for c, _ in so_far] == ["Chapter 1", "The Stair"]
    assert tags_in(so_far[0][1] or "") == {0, 1, 2}
    await play(engine, story_id)
    bible = scene_requests(fake)[-1]["messages"][1]["content"]
    assert f"Chapter 1: {so_far[0][1]}" in bible
    assistant = [m["content"] for m in scene_requests(fake)[-1]["messages"] if m["role"] == "assistant"]
    assert not any(tags_in(a) & {0, 1, 2} for a in assistant)  # covered now: no longer turns


async def test_a_chapter_of_300_scenes_is_summarised_in_pieces_that_fit(
    db: Database, table: Table, clock: FakeClock
) -> None:
    fake, engine, summaries = table.fake, table.engine, table.summaries
    story_id = await closed_chapter(db, engine, 300)
    assert await summaries.drain() == 1
    calls = [r for r in fake.chat_requests if is_summary(r)]
    assert len(calls) > 10  # parts, then summaries of the parts
    assert all(r["max_tokens"] <= CONTEXT // 8 for r in calls)
    so_far = await engine.story_so_far(story_id)
    assert tags_in(so_far[0][1] or "") == set(range(300))
    assert [j.state for j in await job_rows(db)] == ["done"]


async def test_a_failed_summary_job_is_retried_later(
    db: Database, table: Table, clock: FakeClock
) -> None:
    fake, engine, summaries = table.fake, table.engine, table.summaries
    story_id = await closed_chapter(db, engine, 2)
    fake.script(fault=Fault.HTTP_500)
    assert await summaries.drain() == 1
    [job] = await job_rows(db)
    assert (job.state, job.attempts) == ("due", 1) and "internal error" in (job.error or "").lower()
    assert await summaries.drain() == 0  # not due yet
    clock.advance(31)
    assert await summaries.drain() == 1
    [job] = await job_rows(db)
    assert (job.state, job.attempts, job.error) == ("done", 2, None)
    assert (await engine.story_so_far(story_id))[0][1]


async def test_a_summary_job_runs_once_when_two_workers_race(
    db: Database, small_llm: tuple[FakeLLM, LLMClient], clock: FakeClock
) -> None:
    fake, llm = small_llm
    engine_a, engine_b = make_engine(db, llm, clock), make_engine(db, llm, clock)
    a, b = SummaryWorker(db, engine_a, clock=clock), SummaryWorker(db, engine_b, clock=clock)
    story_id = await new_story(db)
    await seed_scenes(db, story_id, 2)
    await engine_a.new_chapter(story_id)
    ran = await asyncio.gather(a.drain(), b.drain())
    assert sorted(ran) == [0, 1]
    assert len([r for r in fake.chat_requests if is_summary(r)]) == 1


async def test_a_crashed_holders_job_is_taken_over_after_its_claim_lapses(
    db: Database, table: Table, clock: FakeClock
) -> None:
    engine, summaries = table.engine, table.summaries
    await closed_chapter(db, engine, 2)
    async with db.transaction() as s:  # a process claims it, then dies
        assert await jobs.claim_next(s, "dead:1", now=clock(), ttl=summaries.config.claim_ttl)
    assert await summaries.drain() == 0
    clock.advance(summaries.config.claim_ttl.total_seconds() + 1)
    assert await summaries.drain() == 1
    [job] = await job_rows(db)
    assert (job.state, job.holder) == ("done", summaries.holder)
    # The dead holder cannot finish it afterwards.
    async with db.transaction() as s:
        assert not await jobs.finish(s, job.id, "dead:1", now=clock())


async def test_scheduling_a_job_twice_records_it_once(db: Database, clock: FakeClock) -> None:
    story_id = await new_story(db)
    last = await seed_scenes(db, story_id, 1)
    async with db.transaction() as s:
        chapter_id = await repo.current_chapter_id(s, story_id)
        assert chapter_id is not None
        first = await jobs.schedule_summary(s, story_id, SummaryKind.ROLLING, last, chapter_id, now=clock())
        again = await jobs.schedule_summary(s, story_id, SummaryKind.ROLLING, last, chapter_id, now=clock())
    assert first == again and len(await job_rows(db)) == 1


async def test_a_chapter_still_waiting_for_its_summary_beyond_the_scenes_read_is_summarised_first(
    db: Database, small_llm: tuple[FakeLLM, LLMClient], clock: FakeClock
) -> None:
    """Chapter 1 (60 scenes) closed but its summary job has not run; chapter 2 has 45
    scenes, the older ones in its rolling summary. The prompt reads only the recent
    scenes, so chapter 1 is not among them: it must be summarised before the scene."""
    fake, llm = small_llm
    fake.responder = tagged_scenes(105)
    engine = make_engine(db, llm, clock)
    story_id = await new_story(db, scene_length="short")
    await seed_scenes(db, story_id, 60)
    await engine.new_chapter(story_id)
    last = await seed_scenes(db, story_id, 45, start=60)
    async with db.transaction() as s:
        chapter_id = await repo.current_chapter_id(s, story_id)
        path = await repo.active_path(s, story_id, limit=10)
        covered_to = next(p for p in path if p.depth == 101)
        assert chapter_id is not None
        await repo.set_summary(s, covered_to.variant.id, chapter_id, SummaryKind.ROLLING,
                               "Chapter two went on. Covers #60-#101.", through_depth=101)
    events = [e async for e in engine.next_scene(story_id, instruction_kind=InstructionKind.CHOICE,
                                                 instruction="a", after_variant_id=last)]
    assert isinstance(events[-1], SceneDone), events[-1]
    assert any(isinstance(e, Summarising) for e in events)
    assert set(range(105)) <= remembered(scene_requests(fake)[-1])
