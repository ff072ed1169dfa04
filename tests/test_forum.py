"""Group stories in a forum (#19, "where groups meet"): /story new in a forum post makes a
new post for the story (its title card the post's first message), and the story plays
there end to end: the scene, the players' votes, the next scene."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from core import messages as msg
from core import repository as repo
from tests.discord_standin import GUILD_FORUM, AdjustableClock, DiscordStandin
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.fakes.llm import FakeLLM
from tests.harness import PlayWorld, ephemeral_answer, running_bot, scripted_scene, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[PlayWorld]:
    path = tmp_path_factory.mktemp("forum") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with DiscordStandin(clock=AdjustableClock()) as standin, FakeLLM(token_rate=2000) as llm:
        guild = standin.add_guild("Tavern")
        forum = standin.add_channel(guild, "tales", type=GUILD_FORUM)
        alice = standin.add_user("alice", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        async with running_bot(standin, f"sqlite+aiosqlite:///{path}", llm_base_url=llm.base_url) as running:
            yield PlayWorld(standin, running.bot, llm, guild, forum, alice, bob)


@pytest.fixture(scope="module")
def standin(world: PlayWorld) -> DiscordStandin:
    return world.standin


async def test_a_group_story_in_a_forum_gets_its_own_post_and_plays_end_to_end(world: PlayWorld) -> None:
    forum, standin = world.general, world.standin
    lobby = standin.add_thread(forum, "Looking for a table", owner=world.alice)  # a post people talk in
    world.llm.script(scripted_scene("Rain drums on the inn's roof."))
    rec = await standin.slash(world.alice, lobby, "story new", mode="group")
    await rec.wait_response()
    [modal] = standin.modals_for(world.alice)
    submitted = await standin.submit_modal(world.alice, modal, {"Title": "The Rain Inn", "Genre": "cosy"})
    answer = await ephemeral_answer(standin, submitted)
    post = next(c for c in standin.channels.values() if c.is_thread and c.name == "The Rain Inn")
    assert post.parent is forum and f"<#{post.id}>" in answer
    starter = post.messages[0]
    assert starter.id == post.id and "The Rain Inn" in starter.text  # the title card opens the post
    first = await wait_scene(standin, post)
    assert "Rain drums on the inn's roof." in first.text

    # The table plays: bob joins by voting, the host closes the vote, the next scene comes.
    assert (await ephemeral_answer(standin, await standin.click(world.bob, first, "2. Call out"))).startswith(
        "You voted for 2")
    world.llm.script(scripted_scene("Your call echoes down the stair."))
    rec = await standin.click(world.alice, first, "Close vote")
    assert (await rec.wait_response()).type == 7
    second = await wait_scene(standin, post, after=1)
    assert "Your call echoes down the stair." in second.text and second.text.startswith("-# → Call out")
    async with world.db.read() as s:
        [story] = await repo.list_stories(s)
        assert (story.mode, story.thread_id, len(await repo.active_path(s, story.id))) == ("group", post.id, 2)
    standin.assert_clean()


async def test_a_private_story_is_refused_in_a_forum_and_nothing_is_made(world: PlayWorld) -> None:
    standin = world.standin
    lobby = standin.add_thread(world.general, "Quiet corner", owner=world.bob)
    posts = sum(1 for c in standin.channels.values() if c.is_thread)
    rec = await standin.slash(world.bob, lobby, "story new", private=True)
    await rec.wait_response()
    [modal] = [m for m in standin.modals_for(world.bob) if not m.submitted]
    answer = await ephemeral_answer(standin, await standin.submit_modal(world.bob, modal, {"Title": "Secrets"}))
    assert answer == msg.STORY_FORUM_NOT_PRIVATE.format(channel=f"<#{world.general.id}>")
    assert sum(1 for c in standin.channels.values() if c.is_thread) == posts
    async with world.db.read() as s:
        assert [st.title for st in await repo.list_stories(s)] == ["The Rain Inn"]  # no story row left behind


async def test_the_title_card_tells_players_to_use_your_action(world: PlayWorld) -> None:
    """The bot cannot read what players type: the story's first message says what to do instead."""
    post = next(c for c in world.standin.channels.values() if c.is_thread and c.name == "The Rain Inn")
    assert "press **Your action** under a scene" in post.messages[0].text
