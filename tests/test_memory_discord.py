"""Long campaigns through Discord: the real KahaniBot, the stand-in and the fake LM Studio
on a small context (2,200 tokens). A story played past its budget gets a rolling summary
that the next scene's request carries; /chapter new closes a 300-scene chapter; players
see the memory (/story memory), fix it (Edit, Undo) and steer it (/story note, the note
field of Your action)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from core import messages as msg
from core import repository as repo
from core.models import InstructionKind, Story, Summary, SummaryKind
from core.prompts import AUTHOR_NOTE, SCENE_NOTE
from tests.discord_standin import DiscordStandin
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import InteractionRecord, Message
from tests.fakes.llm import SUMMARY_PROMPT_START, Reply, tags_in
from tests.harness import PlayWorld, ephemeral_answer, play_world, submit_new_story, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONTEXT_LENGTH = 2200
PROSE = " ".join(["The tide climbs the black rocks while the lamp turns above, slow and patient."] * 14)


class Tagged:
    """The fake's scenes, tagged with their depth in the story being played (``[#3]``)."""

    def __init__(self) -> None:
        self.depth = 0

    def __call__(self, body: dict[str, Any], n: int) -> Reply | None:
        if not body.get("stream"):
            return None  # summaries name the tags they were given; choices: the default
        depth, self.depth = self.depth, self.depth + 1
        return Reply(text=f"[#{depth}] {PROSE}\n\n### Choices\n1. Go on\n2. Wait\n3. Listen\n4. Hide")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[PlayWorld]:
    path = tmp_path_factory.mktemp("memory") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with play_world(path, llm={"context_length": CONTEXT_LENGTH, "token_rate": None}) as world:
        yield world


@pytest.fixture(scope="module")
def standin(world: PlayWorld) -> DiscordStandin:
    return world.standin


def scene_requests(world: PlayWorld) -> list[dict[str, Any]]:
    return [r for r in world.llm.chat_requests if r.get("stream")]


def remembered(request: dict[str, Any]) -> set[int]:
    return tags_in(" ".join(str(m["content"]) for m in request["messages"]))


async def new_story(world: PlayWorld, title: str) -> tuple[Story, Message, Any]:
    tagged = world.llm.responder = Tagged()
    submitted = await submit_new_story(world.standin, world.alice, world.general, title, mode="solo")
    await ephemeral_answer(world.standin, submitted)
    thread = next(c for c in world.standin.channels.values() if c.is_thread and c.name == title)
    first = await wait_scene(world.standin, thread)
    async with world.db.read() as s:
        story = await s.scalar(select(Story).where(Story.title == title))
    assert story is not None and tagged.depth == 1
    return story, first, thread


async def answer(world: PlayWorld, rec: InteractionRecord) -> Message:
    await rec.wait_response()
    if rec.response.type == 5:
        await world.standin.wait_until(lambda: rec.followups, what="the followup")
    return rec.followups[-1] if rec.followups else rec.original


async def test_a_story_played_past_its_budget_gets_a_rolling_summary_that_the_next_scene_carries(
    world: PlayWorld,
) -> None:
    story, scene, thread = await new_story(world, "The Long Tide")
    for depth in range(1, 8):
        await (await world.standin.click(world.alice, scene, "1. Go on")).wait_response()
        scene = await wait_scene(world.standin, thread, after=depth)
        missing = set(range(depth)) - remembered(scene_requests(world)[-1])
        assert not missing, f"scene {depth}'s request forgot scenes {sorted(missing)}"
    async with world.db.read() as s:
        rolling = await s.scalar(
            select(Summary).where(Summary.kind == SummaryKind.ROLLING.value).order_by(Summary.through_depth.desc())
        )
    assert rolling is not None, "the chapter outgrew the context but nothing was summarised"
    await (await world.standin.click(world.alice, scene, "1. Go on")).wait_response()
    await wait_scene(world.standin, thread, after=8)
    bible = scene_requests(world)[-1]["messages"][1]["content"]
    async with world.db.read() as s:
        newest = await repo.rolling_summary(s, await repo.active_path(s, story.id, limit=50))
    assert newest is not None and f"Earlier in this chapter: {newest.content}" in bible
    world.standin.assert_clean()


async def test_chapter_new_on_a_300_scene_chapter_succeeds_in_pieces(world: PlayWorld) -> None:
    story, scene, thread = await new_story(world, "Three Hundred Tides")
    async with world.db.transaction() as s:  # 299 more scenes, as if played over weeks
        parent = (await repo.tip(s, story.id)).variant.id
        for depth in range(1, 300):
            _, variant = await repo.add_scene(s, story.id, parent, f"[#{depth}] {PROSE}",
                                              [repo.ChoiceSpec("Go on")], instruction_kind=InstructionKind.CHOICE,
                                              instruction="Go on")
            parent = variant.id
    before = len(world.llm.chat_requests)
    done = await answer(world, await world.standin.slash(world.alice, thread, "chapter new", title="Landfall"))
    assert done.content == msg.CHAPTER_CLOSED.format(closed=1, name="Chapter 2: Landfall")
    await world.bot.summaries.drain()
    calls = [r for r in world.llm.chat_requests[before:]
             if str(r["messages"][0]["content"]).startswith(SUMMARY_PROMPT_START)]
    assert len(calls) > 10  # in pieces, each within the context (the fake refuses anything longer)
    [(_, summary), _] = await world.bot.engine.story_so_far(story.id)
    assert tags_in(summary or "") == set(range(300))
    shown = await answer(world, await world.standin.slash(world.alice, thread, "chapter summary"))
    assert shown.embeds[0]["description"] == summary


async def test_story_memory_shows_the_parts_and_the_owner_edits_the_summary_with_undo(world: PlayWorld) -> None:
    story, scene, thread = await new_story(world, "The Keeper's Log")
    async with world.db.transaction() as s:
        await repo.add_character(s, story.id, "Mara", description="The keeper's daughter.")
        await repo.add_lore(s, story.id, "The Lamp", keywords="lamp", content="It has not gone out in a century.")
        tip = await repo.tip(s, story.id)
        chapter_id = await repo.current_chapter_id(s, story.id)
        assert tip is not None and chapter_id is not None
        await repo.set_summary(s, tip.variant.id, chapter_id, SummaryKind.ROLLING, "Mara climbed the tower.",
                               through_depth=tip.depth)
    shown = await answer(world, await world.standin.slash(world.alice, thread, "story memory"))
    embed = shown.embeds[0]
    names = [f["name"] for f in embed["fields"]]
    assert embed["title"] == msg.MEMORY_TITLE.format(title="The Keeper's Log")
    assert any(n.startswith("Characters") for n in names) and "Mara" in str(embed["fields"])
    assert "**The Lamp** — keyword 'lamp' in the last scene" in str(embed["fields"])
    assert "Mara climbed the tower." in str(embed["fields"])
    labels = [c.get("label") for c in shown.component_items()]
    assert labels == [msg.SUMMARY_EDIT_BUTTON]  # nothing to undo yet

    click = await world.standin.click(world.alice, shown, msg.SUMMARY_EDIT_BUTTON)
    assert (await click.wait_response()).type == 9  # the form
    form = world.standin.modals_for(world.alice)[-1]
    saved = await world.standin.submit_modal(world.alice, form, {"summary": "Mara climbed the tower; she lied."})
    assert (await saved.wait_response()).type == 7
    assert [c.get("label") for c in shown.component_items()] == [msg.SUMMARY_EDIT_BUTTON, msg.SUMMARY_UNDO_BUTTON]
    memory = await world.bot.engine.memory(story.id)
    assert memory.rolling == "Mara climbed the tower; she lied."
    undo = await world.standin.click(world.alice, shown, msg.SUMMARY_UNDO_BUTTON)
    await undo.wait_response()
    await world.standin.wait_until(lambda: shown.content == msg.SUMMARY_RESTORED, what="the restored summary")
    assert (await world.bot.engine.memory(story.id)).rolling == "Mara climbed the tower."

    # Someone else: the story is not theirs to see (a solo story).
    refused = await answer(world, await world.standin.slash(world.bob, thread, "story memory"))
    assert refused.content == msg.STORY_NOT_FOUND


async def test_the_authors_note_and_a_note_with_your_action_steer_the_scene(world: PlayWorld) -> None:
    story, scene, thread = await new_story(world, "Grim Harbour")
    set_note = await answer(world, await world.standin.slash(world.alice, thread, "story note", text="Keep it grim."))
    assert set_note.content == msg.NOTE_SET.format(title="Grim Harbour", note="Keep it grim.")
    shown = await answer(world, await world.standin.slash(world.alice, thread, "story note"))
    assert "Keep it grim." in shown.content
    refused = await answer(world, await world.standin.slash(world.bob, thread, "story note", text="Be silly."))
    assert refused.content == msg.STORY_NOT_FOUND

    click = await world.standin.click(world.alice, scene, "Your action")
    await click.wait_response()
    form = world.standin.modals_for(world.alice)[-1]
    await world.standin.submit_modal(world.alice, form, {"What do you do?": "I open the harbour gate",
                                                        msg.SCENE_NOTE_LABEL: "Mara is lying"})
    scene = await wait_scene(world.standin, thread, after=1)
    last = scene_requests(world)[-1]["messages"][-1]["content"]
    assert last.endswith(AUTHOR_NOTE.format(note="Keep it grim.") + "\n" + SCENE_NOTE.format(note="Mara is lying"))
    await (await world.standin.click(world.alice, scene, "1. Go on")).wait_response()
    await wait_scene(world.standin, thread, after=2)
    after = scene_requests(world)[-1]
    assert "Mara is lying" not in str(after["messages"])  # steered one scene only
    assert after["messages"][-1]["content"].endswith(AUTHOR_NOTE.format(note="Keep it grim."))

    cleared = await answer(world, await world.standin.slash(world.alice, thread, "story note", clear=True))
    assert cleared.content == msg.NOTE_CLEARED.format(title="Grim Harbour")
    async with world.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Story).where(Story.author_note != "")) == 0


async def test_lore_proposed_at_a_chapters_end_is_announced_and_reviewed_by_the_owner(world: PlayWorld) -> None:
    story, scene, thread = await new_story(world, "The Bell Chapter")
    world.llm.enqueue(
        Reply(text="Asha found the drowned bell."),
        Reply(text='{"entries": [{"name": "Drowned Bell", "keywords": ["bell"], "text": "Bronze, under the bay."},'
                   ' {"name": "Bellmouth", "keywords": ["Bellmouth"], "text": "A fishing village."},'
                   ' {"name": "Old Tom", "keywords": ["Tom"], "text": "The ferryman."}]}'),
    )
    await answer(world, await world.standin.slash(world.alice, thread, "chapter new"))
    await world.bot.summaries.drain()
    notice = await world.standin.wait_for_message(thread, lambda m: "/lore proposals" in m.content)
    assert "**Drowned Bell**" in notice.content and "<@" not in notice.content

    shown = await answer(world, await world.standin.slash(world.alice, thread, "lore proposals"))
    assert [f["name"] for f in shown.embeds[0]["fields"]] == ["Bellmouth", "Drowned Bell", "Old Tom"]
    await (await world.standin.click(world.alice, shown, f"{msg.LORE_ACCEPT_BUTTON}: Drowned Bell")).wait_response()
    await world.standin.wait_until(lambda: shown.content == msg.LORE_ACCEPTED.format(name="Drowned Bell"),
                                   what="the accepted proposal")
    await (await world.standin.click(world.alice, shown, f"{msg.LORE_DISMISS_BUTTON}: Old Tom")).wait_response()
    await world.standin.wait_until(lambda: shown.content == msg.LORE_DISMISSED.format(name="Old Tom"),
                                   what="the dismissed proposal")
    click = await world.standin.click(world.alice, shown, f"{msg.LORE_EDIT_BUTTON}: Bellmouth")
    assert (await click.wait_response()).type == 9
    form = world.standin.modals_for(world.alice)[-1]
    await answer(world, await world.standin.submit_modal(world.alice, form, {"text": "A village of liars."}))
    async with world.db.read() as s:
        active = {e.name: e.content for e in await repo.list_lore(s, story.id)}
        left = list(await repo.list_lore(s, story.id, status=None))
    assert active == {"Drowned Bell": "Bronze, under the bay.", "Bellmouth": "A village of liars."}
    assert len(left) == 2  # Old Tom is gone
    refused = await answer(world, await world.standin.slash(world.bob, thread, "lore proposals"))
    assert refused.content == msg.STORY_NOT_FOUND
