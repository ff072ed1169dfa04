"""Async tables (#19) through the Discord stand-in: the DM a player asked for with
``/story notify`` when a group story's next scene is up (nobody else gets one), and
**Previously on…** before the next scene after a 12-hour break (not after 5 minutes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import update

from core import messages as msg
from core import repository as repo
from core.models import SceneVariant, utcnow
from tests.discord_standin import DiscordStandin
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.harness import PlayWorld, ephemeral_answer, play_world, scripted_scene, submit_new_story, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[PlayWorld]:
    path = tmp_path_factory.mktemp("tables") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with play_world(path, llm={"token_rate": 2000}) as world:
        yield world


@pytest.fixture(scope="module")
def standin(world: PlayWorld) -> DiscordStandin:
    return world.standin


async def story_thread(world: PlayWorld, title: str, mode: str) -> tuple[object, object]:
    world.llm.script(scripted_scene(f"{title}: the harbour bell tolls."))
    await ephemeral_answer(world.standin, await submit_new_story(world.standin, world.alice, world.general, title,
                                                                 mode=mode))
    thread = await world.standin.wait_until(
        lambda: next((c for c in world.standin.channels.values() if c.is_thread and c.name == title), None),
        what="the story's thread")
    return thread, await wait_scene(world.standin, thread)


async def test_only_a_player_who_asked_gets_a_dm_when_the_next_scene_is_up(world: PlayWorld) -> None:
    standin = world.standin
    carol = standin.add_user("carol", guild=world.guild)
    thread, first = await story_thread(world, "Night Watch", "group")
    for player in (world.bob, carol):  # both join the table
        assert "You joined" in await ephemeral_answer(standin, await standin.click(player, first, "Join"))
    rec = await standin.slash(world.bob, thread, "story notify", on=True)
    assert await ephemeral_answer(standin, rec) == msg.NOTIFY_ON.format(title="Night Watch")
    rec = await standin.slash(standin.add_user("dave", guild=world.guild), thread, "story notify", on=True)
    assert await ephemeral_answer(standin, rec) == msg.NOTIFY_JOIN_FIRST  # not at the table

    dms_before = {u.name: len(standin.dm_channel(u).messages) for u in (world.alice, world.bob, carol)}
    await ephemeral_answer(standin, await standin.click(carol, first, "2. Call out"))
    world.llm.script(scripted_scene("The watchman's lamp swings into view."))
    rec = await standin.click(world.alice, first, "Close vote")
    assert (await rec.wait_response()).type == 7
    second = await wait_scene(standin, thread, after=1)
    bob_dm = standin.dm_channel(world.bob)
    dm = await standin.wait_until(lambda: bob_dm.messages[dms_before["bob"]:][:1], what="bob's DM")
    assert dm[0].text.startswith("📜 **Night Watch** has a new scene") and str(second.id) in dm[0].text
    assert len(standin.dm_channel(carol).messages) == dms_before["carol"]  # did not ask
    assert len(standin.dm_channel(world.alice).messages) == dms_before["alice"]  # the host closed it
    standin.assert_clean()  # and nobody was pinged


async def test_previously_on_comes_after_a_12_hour_break_and_not_after_5_minutes(world: PlayWorld) -> None:
    standin = world.standin
    thread, first = await story_thread(world, "Low Tide", "solo")

    async def last_scene_written(ago: timedelta) -> None:
        async with world.db.transaction() as s:
            story = next(st for st in await repo.list_stories(s) if st.title == "Low Tide")
            tip = await repo.tip(s, story.id)
            assert tip is not None
            await s.execute(update(SceneVariant).where(SceneVariant.id == tip.variant.id)
                            .values(created_at=utcnow() - ago))

    await last_scene_written(timedelta(hours=13))
    world.llm.script(scripted_scene("You wade out. The sand is cold."))
    await (await standin.click(world.alice, first, "1. Climb the stair")).wait_response()
    second = await wait_scene(standin, thread, after=1)
    recaps = [m for m in thread.messages if m.text.startswith("📜 **Previously on Low Tide…**")]
    assert len(recaps) == 1 and recaps[0].id < second.id  # before the scene it leads into
    assert "the harbour bell tolls." in recaps[0].text  # the last sentences of what came before

    await last_scene_written(timedelta(minutes=5))
    world.llm.script(scripted_scene("A gull lands beside you."))
    await (await standin.click(world.alice, second, "1. Climb the stair")).wait_response()
    await wait_scene(standin, thread, after=2)
    assert len([m for m in thread.messages if m.text.startswith("📜 **Previously on")]) == 1
    standin.assert_clean()
