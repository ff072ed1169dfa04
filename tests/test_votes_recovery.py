"""A vote decided but whose winning scene never came (docs/architecture.md, "How a vote
closes" and "The engine and the model"): the process that closed it died before the scene's
generation started, or that generation died or failed. The winner's hand-off is a
database claim (``ballots.taken_at``), and a recovery check — at start-up and with the
vote timer — hands each stranded winner to exactly one process.

Here: the claim's rules on SQLite and PostgreSQL, raced by two connection pools; end to
end, a bot SIGKILLed while writing the winner's scene and restarted writes it once; and
two bot processes (two shards on one stand-in) on one PostgreSQL database close a vote
at its deadline once and write one next scene."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core import repository as repo
from core.db import Database
from core.models import Ballot, StoryStatus, utcnow
from core.votes import MAX_TAKES, RETAKE_AFTER, TAKE_GRACE, CloseReason, VoteService
from tests.discord_standin import Channel, DiscordStandin, User
from tests.discord_standin.models import Message
from tests.fakes.llm import FakeLLM, Fault, Reply
from tests.harness import BotProcess, ephemeral_answer, tally
from tests.test_votes_core import FakeClock, group_story
from tests.test_votes_restart import choice_buttons, scene


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def decided(db: Database, votes: VoteService, variant_id: int, users: list[int]) -> int:
    """A ballot on the variant that closed with option 2 winning; its id."""
    await votes.cast(variant_id, users[1], 2)
    state = await votes.latest(variant_id)
    assert state is not None
    settled = await votes.close(state.ballot_id, CloseReason.HOST)
    assert settled is not None and settled.winner == 2
    return state.ballot_id


# --- the claim ------------------------------------------------------------------------


async def test_the_closer_takes_the_winner_once_and_then_nothing_is_stranded(db: Database, clock: FakeClock) -> None:
    _, variant_id, users = await group_story(db, players=2)
    votes = VoteService(db, clock=clock)
    ballot_id = await decided(db, votes, variant_id, users)
    assert await votes.take(ballot_id)
    assert not await votes.take(ballot_id)  # taken once
    clock.advance(TAKE_GRACE.total_seconds() + 1)
    assert await votes.recover() == []  # handed off recently: its generation has the time it needs


async def test_a_winner_nobody_took_is_recovered_after_the_grace_once(db: Database, clock: FakeClock) -> None:
    _, variant_id, users = await group_story(db, players=2)
    votes = VoteService(db, clock=clock)
    ballot_id = await decided(db, votes, variant_id, users)  # …and the closer died here
    clock.advance(TAKE_GRACE.total_seconds() - 1)
    assert await votes.recover() == []  # within the grace: the closer may be about to take it
    clock.advance(2)
    [settled] = await votes.recover()
    assert settled.state.ballot_id == ballot_id and settled.winner == 2
    assert settled.instruction[1] == "Right"
    assert await votes.recover() == [] and not await votes.take(ballot_id)
    async with db.read() as s:
        ballot = await s.get_one(Ballot, ballot_id)
        assert ballot.takes == 1 and ballot.taken_at == clock.now


async def test_a_held_lease_a_scene_after_it_or_an_ended_story_is_not_stranded(db: Database, clock: FakeClock) -> None:
    story_id, variant_id, users = await group_story(db, players=2)
    votes = VoteService(db, clock=clock)
    await decided(db, votes, variant_id, users)
    clock.advance(TAKE_GRACE.total_seconds() + 1)
    async with db.transaction() as s:  # a generation is running for the story
        assert await repo.acquire_lease(s, story_id, "elsewhere:1:x", now=clock.now)
    assert await votes.recover() == []
    async with db.transaction() as s:
        await repo.release_lease(s, story_id, "elsewhere:1:x")
        story = await repo.get_story(s, story_id)
        story.status = StoryStatus.ENDED.value
    assert await votes.recover() == []
    async with db.transaction() as s:
        story = await repo.get_story(s, story_id)
        story.status = StoryStatus.ACTIVE.value
        await repo.add_scene(s, story_id, variant_id, "The scene the vote chose.", [repo.ChoiceSpec("On")])
    assert await votes.recover() == []  # the story went on


async def test_a_taken_winner_whose_generation_died_is_retried_once(db: Database, clock: FakeClock) -> None:
    _, variant_id, users = await group_story(db, players=2)
    votes = VoteService(db, clock=clock)
    ballot_id = await decided(db, votes, variant_id, users)
    assert await votes.take(ballot_id)  # the generation started, then died or failed
    clock.advance(RETAKE_AFTER.total_seconds() - 1)
    assert await votes.recover() == []
    clock.advance(2)
    [settled] = await votes.recover()
    assert settled.state.ballot_id == ballot_id
    clock.advance(RETAKE_AFTER.total_seconds() + 1)
    assert await votes.recover() == []  # MAX_TAKES hand-offs: the Retry button is the way on
    async with db.read() as s:
        assert (await s.get_one(Ballot, ballot_id)).takes == MAX_TAKES


async def test_two_processes_recovering_at_once_hand_each_winner_to_one(database_url: str, clock: FakeClock) -> None:
    first, second = Database.from_url(database_url), Database.from_url(database_url)
    try:
        stranded = []
        for _ in range(4):
            _, variant_id, users = await group_story(first, players=2)
            stranded.append(await decided(first, VoteService(first, clock=clock), variant_id, users))
        clock.advance(TAKE_GRACE.total_seconds() + 1)
        services = [VoteService(first, clock=clock), VoteService(second, clock=clock)] * 2
        results = await asyncio.gather(*(v.recover() for v in services))
        claimed = sorted(s.state.ballot_id for r in results for s in r)
        assert claimed == sorted(stranded)  # each exactly once
    finally:
        await first.dispose()
        await second.dispose()


# --- end to end -------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "kahani.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def start_group_story(standin: DiscordStandin, host: User, channel: Channel,
                            title: str) -> tuple[Channel, Message]:
    """``/story new`` (group, the default in a server); the thread and its first scene."""
    await (await standin.slash(host, channel, "story new")).wait_response()
    [modal] = standin.modals_for(host)
    await (await standin.submit_modal(host, modal, {"Title": title})).wait_response()
    thread = await standin.wait_until(
        lambda: next((c for c in standin.channels.values() if c.is_thread and c.name == title), None),
        what="the thread")
    first: Message = await standin.wait_until(
        lambda: next((m for m in thread.messages if choice_buttons(m)), None), timeout=10, what="the first scene")
    await standin.wait_until(lambda: tally(first), what="the tally")
    return thread, first


async def test_a_bot_killed_while_writing_the_winning_scene_writes_it_once_after_a_restart(
        sqlite_url: str) -> None:
    async with DiscordStandin() as standin, FakeLLM(token_rate=2000) as llm:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "stories")
        host = standin.add_user("host", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        llm.script(scene("The lighthouse door creaks open."))
        # The winner's scene: the storyteller never answers (the process dies meanwhile).
        llm.enqueue(Reply(fault=Fault.STALL_HEADERS, stall=60))

        first_bot = await BotProcess(standin, sqlite_url, llm_base_url=llm.base_url).start()
        try:
            thread, first = await start_group_story(standin, host, general, "Tides")
            # The host lets "everyone voted" close at once (no 10 s for readers to join).
            rec = await standin.slash(host, thread, "story vote-settings", readers_wait=0)
            assert "no sooner than 0 s" in await ephemeral_answer(standin, rec)
            await (await standin.click(bob, first, "2. Call out")).wait_response()
            await (await standin.click(host, first, "2. Call out")).wait_response()  # everyone voted: closed
            await standin.wait_until(lambda: len(llm.chat_requests) == 2, timeout=10,
                                     what="the winning scene's generation to start")
            first_bot.kill()
            assert await first_bot.wait() == -9
        finally:
            await first_bot.close()

        db = Database.from_url(sqlite_url)
        try:
            async with db.transaction() as s:
                [story] = await repo.list_stories(s)
                [ballot] = (await s.scalars(select(Ballot))).all()
                assert (ballot.closed_by, ballot.winner_position, ballot.takes) == ("everyone", 2, 1)
                assert await repo.get_lease(s, story.id) is not None  # the dead process's lease
                assert len(await repo.active_path(s, story.id)) == 1  # no scene came
                # While the bot is down, more than RETAKE_AFTER passes since the hand-off.
                await s.execute(update(Ballot).values(
                    taken_at=utcnow() - RETAKE_AFTER - timedelta(seconds=1),
                    closed_at=utcnow() - RETAKE_AFTER - timedelta(seconds=1)))

            llm.script(scene("Your voice echoes from the top of the stair."))
            async with BotProcess(standin, sqlite_url, llm_base_url=llm.base_url) as second_bot:
                written: Message = await standin.wait_until(
                    lambda: next((m for m in thread.messages if m is not first and choice_buttons(m)), None),
                    timeout=25, what="the scene the vote chose")
                assert written.text.startswith("-# → Call out\n")
                assert "Your voice echoes" in written.text
                await second_bot.wait_for_log("was decided but its scene never came")
                await standin.wait_until(lambda: tally(written), what="the new scene's tally")
                async with db.read() as s:
                    path = await repo.active_path(s, story.id)
                    ballots = (await s.scalars(select(Ballot).order_by(Ballot.id))).all()
                    assert await repo.get_lease(s, story.id) is None
                assert len(path) == 2  # the story went on once
                assert ballots[0].takes == 2
                assert [b.closed_at is None for b in ballots] == [False, True]  # the new scene's vote
                assert len(llm.chat_requests) == 3
                # The interrupted message says so (Retry), and nothing else was written.
                assert [m for m in thread.messages if choice_buttons(m)] == [first, written]
                assert await second_bot.stop() == 0
        finally:
            await db.dispose()
        standin.assert_clean()


def on_shard(shard: int, n: int = 1) -> int:
    """A guild id that Discord routes to ``shard`` of 2 ((id >> 22) % 2)."""
    return ((2 * n + shard) << 22) + 1


@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
async def test_two_bot_processes_on_one_postgresql_close_a_vote_at_its_deadline_once(database_url: str) -> None:
    """Two bot processes (shards 0 and 1 of one application, each with a guild) share one
    PostgreSQL database; both timers have the vote's deadline; one closes it, and one
    next scene is written."""
    async with DiscordStandin() as standin, FakeLLM(token_rate=2000) as llm:
        guild = standin.add_guild("Tavern", id=on_shard(0))
        standin.add_channel(standin.add_guild("Harbour", id=on_shard(1)), "general")
        general = standin.add_channel(guild, "stories")
        host = standin.add_user("host", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        carol = standin.add_user("carol", guild=guild)
        llm.script(scene("The lighthouse door creaks open."))
        llm.script(scene("Your voice echoes from the top of the stair."))
        debug = {"LOG_LEVEL": "DEBUG", "SHARD_COUNT": "2"}
        db = Database.from_url(database_url)
        first_bot = BotProcess(standin, database_url, llm_base_url=llm.base_url, env={**debug, "SHARD_IDS": "0"})
        second_bot = BotProcess(standin, database_url, llm_base_url=llm.base_url, env={**debug, "SHARD_IDS": "1"})
        try:
            await first_bot.start()
            thread, first = await start_group_story(standin, host, general, "Tides")
            async with db.transaction() as s:
                [story] = await repo.list_stories(s)
                deadline = utcnow() + timedelta(seconds=10)
                [ballot_id] = (await s.scalars(
                    update(Ballot).values(deadline=deadline).returning(Ballot.id))).all()
            await (await standin.click(bob, first, "2. Call out")).wait_response()  # wakes the timer
            await (await standin.click(carol, first, "2. Call out")).wait_response()  # 2 of 3 voted
            await second_bot.start()
            assert sorted(standin.gateway.by_shard) == [0, 1]
            async with db.read() as s:
                stored = (await s.get_one(Ballot, ballot_id)).deadline
            line = f"vote timer: next deadline at {stored.isoformat()}"
            for bot in (first_bot, second_bot):
                await bot.wait_for_log(line, timeout=5)  # both processes' timers have it
            assert utcnow() < stored  # …before it passed

            written: Message = await standin.wait_until(
                lambda: next((m for m in thread.messages if m is not first and choice_buttons(m)), None),
                timeout=25, what="the scene the vote chose")
            assert written.text.startswith("-# → Call out\n")
            await standin.wait_until(lambda: tally(written), what="the new scene's tally")
            await standin.wait_until(lambda: all(c.get("disabled") for c in first.component_items()),
                                     what="the closed vote's buttons greyed out")
            async with db.read() as s:
                path = await repo.active_path(s, story.id)
                ballots = (await s.scalars(select(Ballot).order_by(Ballot.id))).all()
            assert len(path) == 2  # one next scene
            assert [(b.closed_by, b.winner_position, b.takes) for b in ballots] == [
                ("deadline", 2, 1), (None, None, 0)]
            assert len(llm.chat_requests) == 2
            assert [m for m in thread.messages if choice_buttons(m)] == [first, written]
            for bot in (first_bot, second_bot):
                assert "Traceback" not in bot.stderr
                assert await bot.stop() == 0
        finally:
            await first_bot.close()
            await second_bot.close()
            await db.dispose()
        standin.assert_clean()
