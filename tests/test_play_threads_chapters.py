"""Private story threads and the New chapter button, end to end: the real KahaniBot
against the Discord stand-in and the fake LM Studio (with a small context window, so a
few scenes fill it past 80 %)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from cogs.chapters import chapter_name
from core import messages as msg
from core import repository as repo
from core.models import Chapter, Story
from tests.discord_standin import Channel, DiscordStandin, Permissions
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import PRIVATE_THREAD, Message
from tests.harness import (
    PlayWorld,
    ephemeral_answer,
    play_world,
    scripted_scene,
    submit_new_story,
    wait_scene,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONTEXT_LENGTH = 2200  # tokens: the prompt budget is this minus a medium scene's reply and a margin
LONG_SCENE = " ".join(
    ["The tide climbs the black rocks while the lamp turns above, slow and patient, as it has for a century."] * 9
)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[PlayWorld]:
    path = tmp_path_factory.mktemp("threads") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with play_world(path, llm={"context_length": CONTEXT_LENGTH}) as world:
        yield world


@pytest.fixture(scope="module")
def standin(world: PlayWorld) -> DiscordStandin:
    return world.standin


async def story_of(world: PlayWorld, title: str) -> Story | None:
    async with world.db.read() as s:
        return await s.scalar(select(Story).where(Story.title == title))


def threads(world: PlayWorld) -> list[Channel]:
    return [c for c in world.standin.channels.values() if c.is_thread]


def has_button(message: Message, label: str) -> bool:
    return any(c.get("label") == label for c in message.component_items())


# --- private threads --------------------------------------------------------------------


async def test_a_private_story_gets_a_private_thread_with_its_starter_and_streams_into_it(world: PlayWorld) -> None:
    world.llm.script(scripted_scene("Fog hides the harbour. Somewhere a bell rings twice."))
    submitted = await submit_new_story(world.standin, world.alice, world.general, "Secret Harbour",
                                       private=True, mode="solo")
    text = await ephemeral_answer(world.standin, submitted)
    thread = next(c for c in threads(world) if c.name == "Secret Harbour")
    assert f"<#{thread.id}>" in text
    assert thread.type == PRIVATE_THREAD and thread.parent is world.general
    assert world.alice.id in thread.thread_members
    assert world.standin.permissions_for(world.bob, thread) == 0  # bob does not even see it

    first = await wait_scene(world.standin, thread)
    assert first.text.startswith("Fog hides the harbour.")
    assert len(first.history) >= 2  # it grew in the thread while the model wrote
    story = await story_of(world, "Secret Harbour")
    assert story is not None and (story.thread_id, story.guild_id) == (thread.id, world.guild.id)


async def test_private_is_ignored_in_dms(world: PlayWorld) -> None:
    dm = await world.standin.dm(world.alice)
    before = len(threads(world))
    world.llm.script(scripted_scene("Your cabin rocks on the night sea."))
    submitted = await submit_new_story(world.standin, world.alice, dm, "Night Sea", private=True)
    assert msg.HERE_IN_DMS in await ephemeral_answer(world.standin, submitted)
    first = await wait_scene(world.standin, dm)
    assert first.text.startswith("Your cabin rocks on the night sea.")
    assert len(threads(world)) == before
    story = await story_of(world, "Night Sea")
    assert story is not None and (story.channel_id, story.thread_id) == (dm.id, None)


async def test_a_private_story_where_i_cannot_create_private_threads_says_so_and_creates_nothing(
    world: PlayWorld,
) -> None:
    channel = world.standin.add_channel(world.guild, "no-private", deny_bot=Permissions.CREATE_PRIVATE_THREADS)
    before = len(threads(world))
    submitted = await submit_new_story(world.standin, world.alice, channel, "Whispers", private=True)
    text = await ephemeral_answer(world.standin, submitted)
    assert text == msg.STORY_NO_PRIVATE_THREAD_PERMISSION.format(channel=f"<#{channel.id}>")
    assert len(threads(world)) == before  # no public thread instead: the story was meant to be private
    assert await story_of(world, "Whispers") is None


# --- the New chapter button ----------------------------------------------------------------


async def test_new_chapter_is_offered_from_80_percent_of_the_context_and_closes_the_chapter(
    world: PlayWorld,
) -> None:
    world.llm.script(scripted_scene("The keeper's cottage is cold. " + LONG_SCENE))
    submitted = await submit_new_story(world.standin, world.alice, world.general, "The Long Night", mode="solo")
    await ephemeral_answer(world.standin, submitted)
    thread = next(c for c in threads(world) if c.name == "The Long Night")
    story = await story_of(world, "The Long Night")
    assert story is not None

    scenes = [await wait_scene(world.standin, thread)]
    ratios = [(await world.bot.engine.context_report(story.id)).ratio]
    while ratios[-1] < 0.8:
        assert len(scenes) < 6, ratios
        world.llm.script(scripted_scene(f"Hour {len(scenes)} passes. " + LONG_SCENE))
        await (await world.standin.click(world.alice, scenes[-1], "1. Climb the stair")).wait_response()
        scenes.append(await wait_scene(world.standin, thread, after=len(scenes)))
        ratios.append((await world.bot.engine.context_report(story.id)).ratio)
    assert len(scenes) >= 2, ratios  # the first scene alone stayed under 80 %
    for scene, ratio in zip(scenes, ratios):
        assert has_button(scene, "New chapter") == (ratio >= 0.8), (ratios, scene.component_items())

    # Someone who is not in the story may not close its chapter: nothing changes.
    last = scenes[-1]
    requests = len(world.llm.chat_requests)
    rec = await world.standin.click(world.bob, last, "New chapter")
    assert await ephemeral_answer(world.standin, rec) == msg.NOT_YOUR_STORY_TO_MANAGE
    assert len(world.llm.chat_requests) == requests
    async with world.db.read() as s:
        assert len(list(await s.scalars(select(Chapter).where(Chapter.story_id == story.id)))) == 1

    # The owner closes it: the model summarises the chapter, a new one begins.
    world.llm.script("The keeper kept the lamp alight through a long night of rising water.")
    rec = await world.standin.click(world.alice, last, "New chapter")
    answer = await ephemeral_answer(world.standin, rec)
    await world.bot.summaries.drain()  # written in the background, behind any scene
    async with world.db.read() as s:
        chapters = list(await s.scalars(select(Chapter).where(Chapter.story_id == story.id)
                                        .order_by(Chapter.number)))
        assert len(chapters) == 2
        assert answer == msg.CHAPTER_CLOSED.format(closed=1, name=chapter_name(chapters[1]))  # as /chapter new says
        so_far = await world.bot.engine.story_so_far(story.id)
    summary = next(r for r in reversed(world.llm.chat_requests) if "Scenes to add:" in str(r["messages"]))
    assert not summary.get("stream") and "Scenes to add:" in summary["messages"][-1]["content"]
    asked = summary["messages"][-1]["content"]
    # The chapter's scenes, or the rolling summary of the older ones and the rest.
    assert "Hour 1 passes." in asked or "Summary so far:" in asked
    assert f"Hour {len(scenes) - 1} passes." in asked
    assert so_far[0][1] == "The keeper kept the lamp alight through a long night of rising water."
    assert (await world.bot.engine.context_report(story.id)).ratio < 0.8
    # Used: the live scene's New chapter button goes away (its choices stay live).
    await world.standin.wait_until(lambda: not has_button(last, "New chapter"), what="the button gone")
    assert has_button(last, "1. Climb the stair")

    # The next scene starts the new chapter, and the button is gone until it fills up again.
    world.llm.script(scripted_scene("Dawn. The water has gone down."))
    await (await world.standin.click(world.alice, last, "1. Climb the stair")).wait_response()
    after = await wait_scene(world.standin, thread, after=len(scenes))
    assert after.text.startswith("-# → Climb the stair\nDawn.")
    assert not has_button(after, "New chapter")
    async with world.db.read() as s:
        tip = await repo.tip(s, story.id)
        assert tip is not None and tip.chapter_id == chapters[1].id
