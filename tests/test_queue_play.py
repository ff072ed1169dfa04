"""The LLM queue and the per-user limit as players meet them in Discord: with
LLM_MAX_CONCURRENCY=1 stories started together take turns and the waiting ones say
where they stand in line; a player over GENERATIONS_PER_USER_PER_MINUTE is told when to
come back, privately, and nothing changes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.player import QueueLine
from core import messages as msg
from core.logctx import ContextFilter, JSONFormatter
from core.models import Ballot, LLMQueueEntry, Scene, Vote
from tests.discord_standin import DiscordStandin
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.harness import play_world
from tests.test_play import World, ephemeral, new_story, story_of, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")

PER_USER = 2


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[World]:
    path = tmp_path_factory.mktemp("queue") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    # A slow first token, so scenes started together overlap and must queue.
    async with play_world(path, llm={"token_rate": 600, "ttft": 0.4},
                          llm_max_concurrency=1, generations_per_user_per_minute=PER_USER) as world:
        yield world


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


async def test_stories_started_together_take_turns_and_show_their_place(world: World) -> None:
    players = [world.standin.add_user(name, guild=world.guild) for name in ("cara", "dev", "eli")]
    dms = [world.standin.dm_channel(p) for p in players]
    await asyncio.gather(*(new_story(world, p, dm, f"Turns {p.name}") for p, dm in zip(players, dms, strict=True)))
    scenes = [await wait_scene(world, dm) for dm in dms]
    assert world.llm.max_concurrent == 1  # the storyteller never wrote two at once
    placeholders = [  # the message each scene was written into (after the story's title card)
        next(m for m in dm.messages if any(msg.WRITING in r.text for r in m.history)) for dm in dms
    ]
    waited = [m for m in placeholders if any("in line" in r.text for r in m.history)]
    assert waited, "no scene showed its place in line"
    for message in waited:  # it said which place, then it became the scene
        shown = next(r.text for r in message.history if "in line" in r.text)
        assert shown.endswith(msg.QUEUE_WAITING.format(place="1st")) or "2nd in line" in shown
    for scene in scenes:
        assert "in line" not in scene.text and msg.WRITING not in scene.text
    async with world.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(LLMQueueEntry)) == 0  # nothing left in line
    scraped = world.bot.metrics.render().decode()
    waits = next(line for line in scraped.splitlines() if line.startswith("kahani_llm_queue_wait_seconds_count"))
    assert float(waits.split()[-1]) >= len(waited)
    assert "kahani_llm_queue_length 0.0" in scraped


async def test_a_player_over_the_limit_is_told_when_to_come_back(world: World) -> None:
    fay = world.standin.add_user("fay", guild=world.guild)
    dm = world.standin.dm_channel(fay)
    await new_story(world, fay, dm, "Fast fingers")  # generation 1
    first = await wait_scene(world, dm)
    choice = next(c["custom_id"] for c in first.component_items() if c.get("custom_id", "").endswith(":1"))
    await world.standin.click(fay, first, choice)  # generation 2
    second = await wait_scene(world, dm, after=1)
    story = await story_of(world, "Fast fingers")
    async with world.db.read() as s:
        scenes_before = await s.scalar(select(func.count()).select_from(Scene).where(Scene.story_id == story.id))
    messages_before, revisions = len(dm.messages), len(second.history)

    rec = await world.standin.click(fay, second, "Regenerate")  # generation 3: over the limit
    text = await ephemeral(world, rec)
    assert text.startswith(msg.RATE_LIMITED_USER.split("{")[0]) and f"{PER_USER} scenes a minute" in text
    async with world.db.read() as s:
        scenes = await s.scalar(select(func.count()).select_from(Scene).where(Scene.story_id == story.id))
    assert scenes == scenes_before
    assert len(dm.messages) == messages_before  # no placeholder, no failed scene: nothing posted
    assert second.text == dm.messages[-1].text and len(second.history) == revisions  # the scene as it was


async def test_every_log_line_of_a_generation_names_its_story_and_interaction(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """LOG_FORMAT=json or text, the fields come from core/logctx.py: here the records."""
    gus = world.standin.add_user("gus", guild=world.guild)
    dm = world.standin.dm_channel(gus)
    await new_story(world, gus, dm, "Followed")
    first = await wait_scene(world, dm)
    story = await story_of(world, "Followed")
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO):
        choice = next(c["custom_id"] for c in first.component_items() if c.get("custom_id", "").endswith(":2"))
        rec = await world.standin.click(gus, first, choice)
        await wait_scene(world, dm, after=1)
    lines = [r for r in caplog.records if r.name == "core.engine"]
    assert [r.getMessage().split(":")[0] for r in lines[:1]] == ["scene"]  # "scene: started …"
    assert any("stored scene" in r.getMessage() for r in lines)
    for record in lines:
        assert record.fields["story"] == story.id, record.getMessage()
        assert record.fields["interaction"] == rec.id and record.fields["user"] == gus.id
    formatted = JSONFormatter().format(lines[-1])
    assert json.loads(formatted)["story"] == story.id


async def test_the_place_in_line_is_shown_without_flooding_discord() -> None:
    """With hundreds waiting, each message is edited at most every max(3 s, place × 1 s):
    a few edits a second in all, and "writing…" comes back once the slot is free."""
    now = [0.0]
    edits: list[str] = []

    class Recorded(QueueLine):
        async def _edit(self, line: str) -> None:
            edits.append(line)

    line = Recorded(None, "", clock=lambda: now[0])  # type: ignore[arg-type]
    await line.show(12)
    await line.show(11)  # 1 s later: too soon for 12th place
    now[0] = 5.0
    await line.show(10)  # 5 s: still too soon (10th place: every 10 s)
    now[0] = 12.0
    await line.show(2)
    await line.show(2)
    now[0] = 14.0
    await line.show(1)  # within 3 s of the last edit
    now[0] = 15.0
    await line.show(1)
    await line.granted()
    await line.granted()
    assert edits == [msg.QUEUE_WAITING.format(place="12th"), msg.QUEUE_WAITING.format(place="2nd"),
                     msg.QUEUE_WAITING.format(place="1st"), msg.WRITING]


async def test_a_group_table_of_one_cannot_write_past_the_limit_by_voting(world: World) -> None:
    """The scene a vote chose counts against whoever closed the vote: a one-player group
    story (whose votes close by **Close vote** or the timer, never by "everyone voted") is
    held to GENERATIONS_PER_USER_PER_MINUTE too, and the close over the limit is refused
    privately, as a solo choice is (tests/test_abuse.py clicks 50 times)."""
    hal = world.standin.add_user("hal", guild=world.guild)
    thread = await new_story(world, hal, world.general, "Table for one", mode="group")  # generation 1
    first = await wait_scene(world, thread)
    def vote(scene: Any) -> str:
        return next(c["custom_id"] for c in scene.component_items() if c.get("custom_id", "").endswith(":1"))

    voted = await ephemeral(world, await world.standin.click(hal, first, vote(first)))
    assert voted.startswith("You voted for 1")  # a table of one: the vote stays open
    await world.standin.click(hal, first, "Close vote")  # the winner is generation 2
    second = await wait_scene(world, thread, after=1)
    story = await story_of(world, "Table for one")
    await ephemeral(world, await world.standin.click(hal, second, vote(second)))
    messages_before = len(thread.messages)
    text = await ephemeral(world, await world.standin.click(hal, second, "Close vote"))  # generation 3: over
    assert text.startswith(msg.RATE_LIMITED_USER.split("{")[0]) and f"{PER_USER} scenes a minute" in text
    assert len(thread.messages) == messages_before  # nothing posted
    assert any(c.get("custom_id") == vote(second) and not c.get("disabled") for c in second.component_items())
    async with world.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Scene).where(Scene.story_id == story.id)) == 2
        assert await s.scalar(select(func.count()).select_from(Ballot).where(
            Ballot.story_id == story.id, Ballot.closed_at.is_(None))) == 1  # the refused close closed nothing
