"""What the storyteller remembers, and what players can see and fix: lore in the prompt,
the author's note and a one-off note, the memory report, and editing summaries with Undo
(engine level, both databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from core import repository as repo
from core import stories
from core.access import Actor
from core.db import Database
from core.engine import EngineConfig, SceneDone, StoryEngine
from core.errors import Conflict, KahaniError
from core.llm import LLMClient
from core.models import InstructionKind, LoreStatus, Summary
from core.prompts import AUTHOR_NOTE, SCENE_NOTE
from core.summaries import SummaryWorker
from tests.clocks import FakeClock
from tests.fakes.llm import FakeLLM, Reply

SCENE = "The tide climbs the lighthouse rocks while the keeper waits.\n\n### Choices\n1. a\n2. b\n3. c\n4. d"


@pytest.fixture
async def engine(db: Database, fake_llm: FakeLLM) -> AsyncIterator[StoryEngine]:
    fake_llm.token_rate = None
    client = LLMClient(fake_llm.base_url)
    yield StoryEngine(db, client, clock=FakeClock(), config=EngineConfig(heartbeat_interval=3600))
    await client.aclose()


async def new_story(db: Database, **options: Any) -> tuple[int, int]:
    async with db.transaction() as s:
        owner = await repo.get_or_create_user(s, 1001, "Asha")
        story = await repo.create_story(s, owner, "The Lighthouse", genre="mystery", **options)
        return story.id, owner.id


async def scene(engine: StoryEngine, fake: FakeLLM, story_id: int, text: str = SCENE, *,
                action: str = "", note: str = "") -> dict[str, Any]:
    """Play one scene (the player's ``action``, else a choice); returns the request sent."""
    async with engine.db.read() as s:
        tip = await repo.tip(s, story_id)
    fake.script(text)
    kind = InstructionKind.ACTION if action else InstructionKind.CHOICE
    events = [e async for e in engine.next_scene(
        story_id, instruction_kind=kind if tip else InstructionKind.OPENING, instruction=action or "a",
        after_variant_id=tip.variant.id if tip else None, note=note)]
    assert isinstance(events[-1], SceneDone), events[-1]
    return [r for r in fake.chat_requests if r.get("stream")][-1]


def bible(request: dict[str, Any]) -> str:
    return request["messages"][1]["content"]


async def test_lore_comes_into_the_prompt_when_its_keyword_comes_up(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id, owner = await new_story(db)
    async with db.transaction() as s:
        await repo.add_lore(s, story_id, "The Drowned Bell", keywords="bell, Bellmouth",
                            content="A bronze bell under the bay; it rings before a death.", user_id=owner)
        await repo.add_lore(s, story_id, "Keeper's Oath", keywords="oath", pinned=True,
                            content="Keepers swear never to let the light go out.", user_id=owner)
    first = await scene(engine, fake_llm, story_id)
    assert "Keeper's Oath: Keepers swear" in bible(first)  # pinned: always in
    assert "Drowned Bell" not in str(first["messages"])
    # The player's action names it: in for this scene.
    asked = await scene(engine, fake_llm, story_id, action="I listen for the BELL's toll")
    assert "The Drowned Bell: A bronze bell under the bay" in bible(asked)
    # A scene that names it keeps it in; once three newer scenes follow it, it has gone quiet.
    await scene(engine, fake_llm, story_id, "Far below, the bell of Bellmouth tolls.\n\n### Choices\n1. a\n2. b")
    for _ in range(3):
        later = await scene(engine, fake_llm, story_id)
        assert "Drowned Bell" in bible(later)  # still among the last three scenes
    later = await scene(engine, fake_llm, story_id)
    assert "Drowned Bell" not in bible(later)
    assert "Keeper's Oath" in bible(later)


async def test_the_authors_note_closes_every_prompt_and_a_scene_note_only_its_own(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id, owner = await new_story(db)
    async with db.transaction() as s:
        await stories.set_author_note(s, story_id, Actor(owner), "Keep it grim.\x00")
    await scene(engine, fake_llm, story_id)
    noted = await scene(engine, fake_llm, story_id, action="I open the door", note="Mara is lying")
    last = noted["messages"][-1]["content"]
    assert last.endswith(AUTHOR_NOTE.format(note="Keep it grim.") + "\n" + SCENE_NOTE.format(note="Mara is lying"))
    assert last.startswith("The player does this: I open the door")
    after = await scene(engine, fake_llm, story_id)
    text = str(after["messages"])
    assert "Mara is lying" not in text  # the one-off note steered one scene and is not stored
    assert after["messages"][-1]["content"].endswith(AUTHOR_NOTE.format(note="Keep it grim."))
    async with db.read() as s:
        path = await repo.active_path(s, story_id)
        assert all("Mara is lying" not in p.variant.instruction for p in path)


async def test_an_over_long_authors_note_is_refused_and_changes_nothing(engine: StoryEngine, db: Database) -> None:
    story_id, owner = await new_story(db)
    with pytest.raises(KahaniError, match="at most 1000"):
        async with db.transaction() as s:
            await stories.set_author_note(s, story_id, Actor(owner), "x" * 1001)
    async with db.read() as s:
        assert (await repo.get_story(s, story_id)).author_note == ""
    with pytest.raises(KahaniError):  # someone else may not
        async with db.transaction() as s:
            await stories.set_author_note(s, story_id, Actor(owner + 1), "grim")


async def test_the_memory_report_names_every_part_and_its_cost(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id, owner = await new_story(db)
    async with db.transaction() as s:
        await repo.add_character(s, story_id, "Mara", description="The keeper's daughter.")
        await repo.add_lore(s, story_id, "Bell", keywords="bell", content="It rings before a death.")
        await stories.set_author_note(s, story_id, Actor(owner), "Keep it grim.")
    await scene(engine, fake_llm, story_id, "The bell rings once.\n\n### Choices\n1. a\n2. b")
    await scene(engine, fake_llm, story_id)
    await engine.new_chapter(story_id)
    memory = await engine.memory(story_id)
    assert memory.characters == ["Mara"] and memory.characters_tokens > 0
    assert [name for name, _ in memory.lore] == ["Bell"] and memory.lore[0][1] == "keyword 'bell' in the 2nd-last scene"
    assert memory.chapters == [("Chapter 1", None)] and memory.summaries_due == 1  # being written
    assert (memory.scenes_kept, memory.scenes_uncovered) == (2, 2)  # chapter 1's scenes stay in meanwhile
    assert memory.author_note == "Keep it grim." and memory.note_tokens > 0
    parts = (memory.frame_tokens + memory.characters_tokens + memory.lore_tokens + memory.rolling_tokens
             + memory.note_tokens + memory.scenes_tokens)
    assert parts <= memory.report.used <= parts * 1.5 + 200  # the parts are the prompt
    await SummaryWorker(db, engine).drain()
    memory = await engine.memory(story_id)
    assert memory.chapters[0][1] and memory.summaries_due == 0
    assert (memory.scenes_kept, memory.scenes_uncovered) == (1, 1)  # the last one stays for continuity


async def test_a_summary_is_edited_in_place_and_undo_restores_it(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id, _ = await new_story(db)
    await scene(engine, fake_llm, story_id)
    await scene(engine, fake_llm, story_id)
    fake_llm.enqueue(Reply(text="Asha reached the lighthouse."))
    chapter = await engine.new_chapter(story_id)
    await SummaryWorker(db, engine).drain()
    [(closed, text), _] = await engine.story_so_far(story_id)
    assert text == "Asha reached the lighthouse." and chapter.number == 2
    assert not await engine.summary_edited(story_id, closed.id)
    with pytest.raises(Conflict):
        await engine.undo_summary(story_id, closed.id)
    async with db.read() as s:
        before = (await s.get_one(Summary, 1)).through_depth
    await engine.edit_summary(story_id, closed.id, "Asha reached the lighthouse; Mara lied.")
    assert (await engine.story_so_far(story_id))[0][1] == "Asha reached the lighthouse; Mara lied."
    assert await engine.summary_edited(story_id, closed.id)
    async with db.read() as s:
        rows = list((await s.execute(Summary.__table__.select())).all())
        assert len(rows) == 1 and rows[0].through_depth == before  # the same scenes covered
    assert await engine.undo_summary(story_id, closed.id) == "Asha reached the lighthouse."
    assert await engine.undo_summary(story_id, closed.id) == "Asha reached the lighthouse; Mara lied."  # redo
    # The next scene's prompt carries the edited summary.
    request = await scene(engine, fake_llm, story_id)
    assert "Chapter 1: Asha reached the lighthouse; Mara lied." in bible(request)


PROPOSALS = (
    '```json\n{"entries": [{"name": "The Drowned Bell", "keywords": ["bell", "Bellmouth"], '
    '"text": "A bronze bell under the bay."}, {"name": "Mara", "keywords": ["Mara"], '
    '"text": "Mara lied about the keeper."}, {"name": "", "text": "no name: skipped"}]}\n```'
)


async def test_a_closed_chapter_brings_lore_proposals_that_change_nothing_until_accepted(
    engine: StoryEngine, fake_llm: FakeLLM, db: Database
) -> None:
    story_id, owner = await new_story(db)
    async with db.transaction() as s:
        await repo.add_lore(s, story_id, "Mara", keywords="Mara", content="The keeper's daughter.")
    await scene(engine, fake_llm, story_id)
    told: list[tuple[int, list[str]]] = []

    async def tell(story: int, names: list[str]) -> None:
        told.append((story, names))

    engine.on_lore_proposed(tell)
    await engine.new_chapter(story_id)
    fake_llm.enqueue(Reply(text="Asha heard the bell."), Reply(text=PROPOSALS))
    await SummaryWorker(db, engine).drain()
    assert told == [(story_id, ["The Drowned Bell", "Mara (update)"])]
    async with db.read() as s:
        active = {e.name: e.content for e in await repo.list_lore(s, story_id)}
        proposed = list(await repo.list_lore(s, story_id, status=LoreStatus.PROPOSED))
    assert active == {"Mara": "The keeper's daughter."}  # nothing added without a yes
    request = await scene(engine, fake_llm, story_id, action="I ring the bell")
    assert "bronze bell" not in str(request["messages"])
    by_name = {e.name: e for e in proposed}
    async with db.transaction() as s:
        await repo.accept_lore(s, story_id, by_name["The Drowned Bell"].id, user_id=owner)
        updated = await repo.accept_lore(s, story_id, by_name["Mara (update)"].id, user_id=owner)
    assert (updated.name, updated.content) == ("Mara", "Mara lied about the keeper.")
    async with db.transaction() as s:  # the change is an edit: Undo brings the old text back
        assert (await repo.undo_lore(s, story_id, "Mara")).content == "The keeper's daughter."
    request = await scene(engine, fake_llm, story_id, action="I ring the bell")
    assert "The Drowned Bell: A bronze bell under the bay." in bible(request)


async def test_garbage_lore_proposals_are_ignored(engine: StoryEngine, fake_llm: FakeLLM, db: Database) -> None:
    story_id, _ = await new_story(db)
    await scene(engine, fake_llm, story_id)
    await engine.new_chapter(story_id)
    fake_llm.enqueue(Reply(text="Asha heard the bell."), Reply(text="Sure! Here are some ideas: a bell, a boat."))
    await SummaryWorker(db, engine).drain()
    async with db.read() as s:
        assert list(await repo.list_lore(s, story_id, status=None)) == []
        assert (await engine.story_so_far(story_id))[0][1] == "Asha heard the bell."
