"""The story engine end to end: real openai client → fake LM Studio → database (both engines)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core import messages as msg
from core import repository as repo
from core.db import Database
from core.engine import (
    FALLBACK_CHOICES,
    ChoicesReady,
    EngineConfig,
    EngineEvent,
    Failed,
    SceneDone,
    SceneText,
    StoryEngine,
    UsageReport,
)
from core.llm import LLMClient, LLMTimeouts
from core.models import Base, InstructionKind
from tests.clocks import FakeClock
from tests.fakes.llm import FakeLLM, Fault

SCENE_1 = (
    "The lighthouse door creaks open. Salt wind fills the stair, and somewhere above a "
    "lantern swings.\n\n### Choices\n1. Climb the stair\n2. Call out\n3. Light your own lantern\n"
    "4. Close the door behind you"
)
SCENE_2 = (
    "You climb. Each step groans, and the keeper's logbook lies open on the landing.\n\n"
    "### Choices\n1. Read the logbook\n2. Keep climbing\n3. Pocket the logbook\n4. Listen"
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def llm(fake_llm: FakeLLM) -> AsyncIterator[LLMClient]:
    client = LLMClient(fake_llm.base_url, timeouts=LLMTimeouts(connect=2, first_token=2, idle=0.5, request=5))
    yield client
    await client.aclose()


@pytest.fixture
def engine(db: Database, llm: LLMClient, clock: FakeClock) -> StoryEngine:
    return StoryEngine(db, llm, clock=clock, config=EngineConfig(heartbeat_interval=3600))


async def new_story(db: Database, **options: object) -> int:
    async with db.transaction() as s:
        owner = await repo.get_or_create_user(s, 1001, "Asha")
        story = await repo.create_story(s, owner, "The Lighthouse", genre="mystery", tone="eerie", **options)
        return story.id


async def collect(events: AsyncIterator[EngineEvent]) -> list[EngineEvent]:
    return [event async for event in events]


def done(events: list[EngineEvent]) -> SceneDone:
    assert isinstance(events[-1], SceneDone), events[-1]
    return events[-1]


def streamed(events: list[EngineEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, SceneText))


async def snapshot(db: Database) -> dict[str, int]:
    async with db.read() as s:
        return {
            name: await s.scalar(select(func.count()).select_from(table))
            for name, table in Base.metadata.tables.items()
        }


async def first_scene(engine: StoryEngine, fake: FakeLLM, story_id: int) -> SceneDone:
    fake.script(SCENE_1)
    return done(await collect(engine.next_scene(story_id)))


def choose(engine: StoryEngine, story_id: int, choice: str, after: int | None = None) -> AsyncIterator[EngineEvent]:
    """The next scene after the player took ``choice`` (acting on variant ``after``)."""
    return engine.next_scene(story_id, instruction_kind=InstructionKind.CHOICE, instruction=choice,
                             after_variant_id=after)


# --- generation ---------------------------------------------------------------------------


async def test_the_first_scene_streams_and_is_stored_with_four_choices(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    fake_llm.script(SCENE_1, prompt_tokens=300)
    events = await collect(engine.next_scene(story_id))

    result = done(events)
    assert "### Choices" not in streamed(events)
    assert streamed(events) == result.content
    assert result.content.startswith("The lighthouse door creaks open.")
    assert [c.text for c in result.choices] == [
        "Climb the stair", "Call out", "Light your own lantern", "Close the door behind you"
    ]
    assert any(isinstance(e, ChoicesReady) for e in events)
    assert [e.prompt_tokens for e in events if isinstance(e, UsageReport)] == [300]
    assert [type(e) for e in events if not isinstance(e, SceneText)][-1] is SceneDone

    async with db.read() as s:
        [scene] = await repo.active_path(s, story_id)
        assert scene.variant.content == result.content
        assert scene.variant.token_count > 0
        assert scene.variant.model == fake_llm.model
        assert [c.label for c in await repo.get_choices(s, scene.variant.id)] == [c.label for c in result.choices]
        assert await repo.get_lease(s, story_id) is None

    [request] = fake_llm.chat_requests
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert request["max_tokens"] == 666  # medium: 300 words × 1.35 × 1.25 + 160
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["system", "user"]
    assert "### Choices" in request["messages"][0]["content"]
    assert "Genre: mystery" in request["messages"][0]["content"]
    assert request["messages"][1]["content"] == "Begin the story with its opening scene."


async def test_a_choice_is_the_last_message_after_the_previous_scenes(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    first = await first_scene(engine, fake_llm, story_id)
    fake_llm.script(SCENE_2)
    second = done(await collect(choose(engine, story_id, "Climb the stair", first.variant_id)))
    messages = fake_llm.chat_requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == first.content  # the scene, without its choice block
    assert messages[3]["content"].startswith("The player chooses: Climb the stair")
    async with db.read() as s:
        path = await repo.active_path(s, story_id)
    assert [p.variant.id for p in path] == [first.variant_id, second.variant_id]
    assert path[1].variant.instruction == "Climb the stair"


async def test_acting_on_an_old_scene_is_refused_and_changes_nothing(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    first = await first_scene(engine, fake_llm, story_id)
    fake_llm.script(SCENE_2)
    done(await collect(choose(engine, story_id, "Call out", first.variant_id)))
    before = await snapshot(db)
    events = await collect(choose(engine, story_id, "Call out", first.variant_id))
    assert events == [Failed(msg.NOT_LAST_SCENE, "invalid")]
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (dict(fault=Fault.HTTP_500), "internal error"),
        (dict(fault=Fault.CONTEXT_OVERFLOW), "no longer fits in the model's context window"),
        (dict(text=SCENE_2, fault=Fault.DROP, fault_after=5), "lost mid-scene"),
        (dict(text=SCENE_2, fault=Fault.STALL, fault_after=3, stall=5), "stopped writing"),
        (dict(text=SCENE_2, fault=Fault.STALL, fault_after=0, stall=5), "did not start writing"),
        (dict(fault=Fault.EMPTY), "empty reply"),
        (dict(text="<think>The player wants drama. Let me plan it all out.</think>"), "whole reply thinking"),
        (dict(text="... --- ***"), "not a scene"),
        (dict(text="### Choices\n1. a\n2. b\n3. c\n4. d"), "not a scene"),
        (dict(text=SCENE_2, fault=Fault.NOT_JSON, fault_after=2), "could not read"),
    ],
    ids=["500", "overflow", "drop", "idle-stall", "first-token-stall", "empty", "only-thinking",
         "garbage", "only-choices", "not-json"],
)
async def test_every_failure_leaves_the_story_exactly_as_it_was(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database, reply: dict, reason: str
) -> None:
    story_id = await new_story(db)
    first = await first_scene(engine, fake_llm, story_id)
    before = await snapshot(db)
    fake_llm.script(**reply)
    events = await collect(choose(engine, story_id, "Call out", first.variant_id))
    assert isinstance(events[-1], Failed), events[-1]
    assert reason in events[-1].reason
    assert not any(isinstance(e, SceneDone) for e in events)
    assert await snapshot(db) == before  # no half scene, no lease left held


async def test_an_unreachable_server_fails_cleanly(db: Database, clock: FakeClock, closed_port: int) -> None:
    llm = LLMClient(f"http://127.0.0.1:{closed_port}/v1", model="m", context_length=8192)
    try:
        engine = StoryEngine(db, llm, clock=clock)
        story_id = await new_story(db)
        before = await snapshot(db)
        [event] = await collect(engine.next_scene(story_id))
        assert isinstance(event, Failed) and "not reachable" in event.reason
        assert await snapshot(db) == before
    finally:
        await llm.aclose()


async def test_a_second_generation_while_one_streams_is_refused(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    fake_llm.script(SCENE_1, token_rate=40)
    first = engine.next_scene(story_id)
    assert isinstance(await anext(first), SceneText)  # streaming now, holding the lease
    assert await collect(engine.next_scene(story_id)) == [Failed(msg.STILL_WRITING, "busy")]
    rest = await collect(first)
    assert isinstance(rest[-1], SceneDone)


async def test_a_cancelled_generation_stores_nothing_and_frees_the_story(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    before = await snapshot(db)
    fake_llm.script(SCENE_1, token_rate=40)
    stream = engine.next_scene(story_id)
    assert isinstance(await anext(stream), SceneText)
    await stream.aclose()  # the player (or the bot shutting down) gave up
    await fake_llm.client_gone.wait()  # the HTTP stream was closed too
    assert await snapshot(db) == before
    fake_llm.script(SCENE_1)
    assert isinstance((await collect(engine.next_scene(story_id)))[-1], SceneDone)


async def test_a_lost_lease_stores_nothing(engine: StoryEngine, fake_llm: FakeLLM, db: Database, clock: FakeClock) -> None:
    story_id = await new_story(db)
    fake_llm.script(SCENE_1, token_rate=40)
    stream = engine.next_scene(story_id)
    assert isinstance(await anext(stream), SceneText)
    # The generation stalls past its lease (no heartbeat) and another process takes over.
    async with db.transaction() as s:
        assert await repo.acquire_lease(s, story_id, "other-process", now=clock.now + timedelta(seconds=31))
    events = await collect(stream)
    assert events[-1] == Failed(msg.LEASE_LOST, "conflict")
    async with db.read() as s:
        assert await repo.active_path(s, story_id) == []
        assert (await repo.get_lease(s, story_id)).holder == "other-process"


# --- choices ---------------------------------------------------------------------------


async def test_missing_choices_come_from_one_extra_json_schema_call(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    fake_llm.script("The stair spirals up into the dark. Something moves above you.")
    fake_llm.script('{"choices": ["Go up", "Go down", "Hide", "Shout a greeting"]}')
    result = done(await collect(engine.next_scene(story_id)))
    assert [c.text for c in result.choices] == ["Go up", "Go down", "Hide", "Shout a greeting"]
    extra = fake_llm.chat_requests[-1]
    assert extra["response_format"]["type"] == "json_schema"
    assert not extra.get("stream")
    assert "Something moves above you." in extra["messages"][-1]["content"]


async def test_a_server_without_json_schema_gets_the_plain_extra_call(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    fake_llm.reject_json_schema = True
    story_id = await new_story(db)
    fake_llm.script("The stair spirals up into the dark.\n\n### Choices\n1. Go up")
    fake_llm.script("(refused: the json_schema request never gets this)")
    fake_llm.script("1. Go down\n2. Hide\n3. Shout a greeting\n4. Wait")
    result = done(await collect(engine.next_scene(story_id)))
    assert [c.text for c in result.choices] == ["Go up", "Go down", "Hide", "Shout a greeting"]
    assert "response_format" not in fake_llm.chat_requests[-1]


async def test_choices_fall_back_to_generic_ones_when_the_extra_call_fails(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    fake_llm.script("The stair spirals up into the dark.")
    fake_llm.script(fault=Fault.HTTP_500)
    result = done(await collect(engine.next_scene(story_id)))
    assert result.choices == FALLBACK_CHOICES
    assert result.content == "The stair spirals up into the dark."


async def test_a_reply_cut_short_keeps_the_last_full_sentence(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    fake_llm.script("The stair spirals up. A door waits at the top. You reach for the han",
                    finish_reason="length")
    fake_llm.script('{"choices": ["Open it", "Knock", "Listen", "Go back"]}')
    result = done(await collect(engine.next_scene(story_id)))
    assert result.content == "The stair spirals up. A door waits at the top."


async def test_reasoning_is_never_story_text(engine: StoryEngine, fake_llm: FakeLLM, db: Database) -> None:
    story_id = await new_story(db)
    fake_llm.script("<think>Plan: spooky.</think>" + SCENE_1, reasoning="secret plan")
    events = await collect(engine.next_scene(story_id))
    assert "Plan" not in streamed(events) and "secret" not in streamed(events)
    assert "Plan" not in done(events).content


# --- variants ----------------------------------------------------------------------------


async def test_regenerate_keeps_the_choice_that_led_here(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    first = await first_scene(engine, fake_llm, story_id)
    fake_llm.script(SCENE_2)
    second = done(await collect(choose(engine, story_id, "Climb the stair", first.variant_id)))
    fake_llm.script("You climb faster than you meant to.\n\n### Choices\n1. a\n2. b\n3. c\n4. d")
    again = done(await collect(engine.regenerate(second.variant_id)))

    assert again.kind == "regenerate" and again.scene_id == second.scene_id
    assert fake_llm.chat_requests[-1]["messages"][-1]["content"].startswith("The player chooses: Climb the stair")
    assert fake_llm.chat_requests[-1]["messages"] [:-1] == fake_llm.chat_requests[-2]["messages"][:-1]
    async with db.read() as s:
        variants = await repo.list_variants(s, second.scene_id)
        assert [(v.kind, v.is_active, v.instruction) for v in variants] == [
            ("original", False, "Climb the stair"), ("regenerate", True, "Climb the stair")
        ]


async def test_branch_takes_a_new_direction_from_the_same_point(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    first = await first_scene(engine, fake_llm, story_id)
    fake_llm.script("A storm breaks over the lighthouse.\n\n### Choices\n1. a\n2. b\n3. c\n4. d")
    branch = done(await collect(engine.branch(first.variant_id, "Start with a storm")))
    last = fake_llm.chat_requests[-1]["messages"][-1]["content"]
    assert last.startswith("Director's note") and "Start with a storm" in last
    async with db.read() as s:
        [tip] = await repo.active_path(s, story_id)
        assert tip.variant.id == branch.variant_id and tip.variant.kind == "branch"
        assert tip.variant.instruction == "Start with a storm"


async def test_continue_is_a_new_variant_and_the_old_one_keeps_its_choices(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    first = await first_scene(engine, fake_llm, story_id)
    fake_llm.script("The lantern above goes out.\n\n### Choices\n1. Run\n2. Hide\n3. Wait\n4. Call")
    events = await collect(engine.continue_scene(first.variant_id))
    result = done(events)
    assert result.kind == "continue"
    assert result.content == first.content + "\n\nThe lantern above goes out."
    assert streamed(events) == result.content
    assert fake_llm.chat_requests[-1]["messages"][-2] == {"role": "assistant", "content": first.content}
    async with db.read() as s:
        assert [c.text for c in await repo.get_choices(s, first.variant_id)] == [c.text for c in first.choices]
        assert [c.text for c in await repo.get_choices(s, result.variant_id)] == ["Run", "Hide", "Wait", "Call"]


async def test_edit_keeps_or_renews_the_choices(engine: StoryEngine, fake_llm: FakeLLM, db: Database) -> None:
    story_id = await new_story(db)
    first = await first_scene(engine, fake_llm, story_id)
    kept = done(await collect(engine.edit_scene(first.variant_id, "My own words.", keep_choices=True)))
    assert kept.content == "My own words." and kept.choices == first.choices
    fake_llm.script('{"choices": ["One", "Two", "Three", "Four"]}')
    renewed = done(await collect(engine.edit_scene(first.variant_id, "Other words.", keep_choices=False)))
    assert [c.text for c in renewed.choices] == ["One", "Two", "Three", "Four"]
    assert await collect(engine.edit_scene(first.variant_id, "   ")) == [Failed(msg.EDIT_EMPTY, "invalid")]


async def test_selecting_an_earlier_variant_switches_what_the_next_scene_follows(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id = await new_story(db)
    first = await first_scene(engine, fake_llm, story_id)
    fake_llm.script(SCENE_2)
    done(await collect(choose(engine, story_id, "Climb the stair", first.variant_id)))
    fake_llm.script("A storm.\n\n### Choices\n1. a\n2. b\n3. c\n4. d")
    storm = done(await collect(engine.branch(first.variant_id, "A storm")))
    tip = await engine.select_variant(storm.variant_id)
    assert tip.variant.id == storm.variant_id
    fake_llm.script(SCENE_2)
    done(await collect(choose(engine, story_id, "a")))
    assert fake_llm.chat_requests[-1]["messages"][2]["content"] == "A storm."
    tip = await engine.select_variant(first.variant_id)
    assert tip.depth == 1  # the old continuation came back


# --- context budget, chapters, summaries -------------------------------------------------


LONG_SCENE = " ".join(["The keeper's lamp burned low while the sea rose against the rocks."] * 30)


async def test_the_chapter_is_flagged_at_80_percent_of_the_budget(
    fake_llm: FakeLLM, db: Database, clock: FakeClock
) -> None:
    fake_llm.context_length = 4096
    fake_llm.token_rate = None  # as fast as it can: long scenes, nothing timed
    llm = LLMClient(fake_llm.base_url, context_length=4096)
    engine = StoryEngine(db, llm, clock=clock, config=EngineConfig(heartbeat_interval=3600))
    try:
        story_id = await new_story(db, scene_length="short")
        reports = []
        parent = None
        for n in range(6):  # up to ~90 %: flagged, but everything still fits (no fold)
            fake_llm.script(f"{LONG_SCENE} ({n})\n\n### Choices\n1. a\n2. b\n3. c\n4. d")
            result = done(await collect(choose(engine, story_id, "a", parent)))
            parent = result.variant_id
            reports.append(result.context)
        percents = [r.percent for r in reports]
        assert percents == sorted(percents)
        assert not reports[0].flagged() and reports[-1].flagged()
        assert (await engine.context_report(story_id)).percent == reports[-1].percent
    finally:
        await llm.aclose()


async def test_a_slow_front_end_after_the_scene_is_stored_is_not_a_lost_lease(
    db: Database, llm: LLMClient, fake_llm: FakeLLM, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The lease is given back with the scene; its heartbeat stops then, not when the
    front end (a paced final edit, seconds under load) asks for the next event."""
    engine = StoryEngine(db, llm, clock=clock, config=EngineConfig(heartbeat_interval=0.01))
    story_id = await new_story(db)
    fake_llm.script(SCENE_1)
    events = engine.next_scene(story_id)
    async for event in events:
        if isinstance(event, SceneDone):
            await asyncio.sleep(0.1)  # the front end's final edit: ten heartbeat intervals
    assert not [r for r in caplog.records if "was lost" in r.getMessage()]
    async with db.read() as s:
        assert await repo.get_lease(s, story_id) is None


# --- bounded: a scene's time and size --------------------------------------------------------


async def test_a_model_that_trickles_forever_is_stopped_at_the_scene_deadline(
    db: Database, fake_llm: FakeLLM, clock: FakeClock
) -> None:
    """Tokens keep coming (never idle long enough for the idle timeout), but the scene
    as a whole has a deadline: it fails with a reason and nothing is stored."""
    client = LLMClient(fake_llm.base_url, timeouts=LLMTimeouts(connect=2, first_token=5, idle=5, total=0.5))
    engine = StoryEngine(db, client, clock=clock, config=EngineConfig(heartbeat_interval=3600))
    try:
        story_id = await new_story(db)
        fake_llm.script(SCENE_1 * 3, token_rate=20)  # ~15 s of text; the deadline is 0.5 s
        before = await snapshot(db)
        events = await collect(engine.next_scene(story_id))
        assert isinstance(events[-1], Failed) and events[-1].kind == "total_timeout"
        assert "0.5 s" in events[-1].reason
        assert await snapshot(db) == before
        async with db.read() as s:
            assert await repo.get_lease(s, story_id) is None
    finally:
        await client.aclose()


async def test_a_model_that_ignores_max_tokens_is_cut_at_the_cap_and_ends_at_a_sentence(
    db: Database, llm: LLMClient, fake_llm: FakeLLM, clock: FakeClock
) -> None:
    engine = StoryEngine(db, llm, clock=clock, config=EngineConfig(heartbeat_interval=3600, max_reply_chars=400))
    story_id = await new_story(db)
    endless = " ".join(f"The lamp turned for the {n}th time." for n in range(200))  # no marker, no end
    fake_llm.script(endless)
    result = done(await collect(engine.next_scene(story_id)))
    assert len(result.content) <= 400 and result.content.endswith("time.")
    assert len(result.choices) == 4  # from the extra call
    async with db.read() as s:
        [stored] = await repo.active_path(s, story_id)
        assert stored.variant.content == result.content


async def test_nul_and_control_characters_from_the_model_are_never_stored(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    """PostgreSQL refuses NUL in text; SQLite would keep it. Both store the scene without it."""
    story_id = await new_story(db)
    fake_llm.script("The door\x00 creaks\x07 open.\r\nWind.\n\n### Choices\n1. Go\x00 in\n2. b\n3. c\n4. d")
    result = done(await collect(engine.next_scene(story_id)))
    assert result.content == "The door creaks open.\nWind."
    async with db.read() as s:
        [stored] = await repo.active_path(s, story_id)
        assert stored.variant.content == "The door creaks open.\nWind."
        assert [c.text for c in await repo.get_choices(s, stored.variant.id)][0] == "Go in"
