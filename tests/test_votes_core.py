"""Group votes in the database (core/votes.py), on SQLite and PostgreSQL: casting,
changing and withdrawing, ties, deadlines and the one extension, the close claim
raced by two connection pools, and who closed a vote (its winner counts against them)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import privacy
from core import repository as repo
from core.db import Database
from core.errors import KahaniError
from core.models import Ballot, InstructionKind, MemberStatus, Story, StoryMode
from core.votes import TAKE_GRACE, CloseReason, VoteRefused, VoteService, VoteSettings, pick_winner
from tests.clocks import FakeClock


async def group_story(db: Database, players: int = 5) -> tuple[int, int, list[int]]:
    """A group story with one scene (4 choices) and ``players`` users (the first is the host)."""
    async with db.transaction() as s:
        users = [await repo.get_or_create_user(s, 1000 + n, f"p{n}") for n in range(players)]
        story = await repo.create_story(s, users[0], "Votes", mode=StoryMode.GROUP.value, guild_id=1)
        _, variant = await repo.add_scene(s, story.id, None, "A fork in the road.",
                                          [repo.ChoiceSpec(t) for t in ("Left", "Right", "Back", "Wait")])
        return story.id, variant.id, [u.id for u in users]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))


async def test_votes_change_and_withdraw_and_the_tally_follows(db: Database, clock: FakeClock) -> None:
    story_id, variant_id, users = await group_story(db)
    votes = VoteService(db, clock=clock)
    opened = await votes.open_ballot(variant_id)
    assert opened is not None and opened.open and opened.deadline == clock.now + timedelta(seconds=60)
    assert opened.options == ("Left", "Right", "Back", "Wait")

    for user, n in zip(users, (1, 2, 2, 3, 1), strict=True):
        result = await votes.cast(variant_id, user, n)
    assert result.state.counts == {1: 2, 2: 2, 3: 1} and result.state.voters == 5
    moved = await votes.cast(variant_id, users[3], 2)  # moves the vote from 3 to 2
    assert moved.position == 2 and moved.state.counts == {1: 2, 2: 3}
    withdrawn = await votes.cast(variant_id, users[3], 2)  # the same again: withdrawn
    assert withdrawn.position is None and withdrawn.state.counts == {1: 2, 2: 2} and withdrawn.state.voters == 4
    assert (await votes.open_ballot(variant_id)).ballot_id == opened.ballot_id  # still the same ballot


async def test_a_first_vote_joins_and_everyone_voted_is_counted_from_joined_members(
        db: Database, clock: FakeClock) -> None:
    story_id, variant_id, users = await group_story(db, players=3)
    votes = VoteService(db, clock=clock)
    first = await votes.cast(variant_id, users[1], 1)
    assert first.joined and first.state.eligible == 2 and not first.state.everyone_voted
    await votes.cast(variant_id, users[2], 2)
    last = await votes.cast(variant_id, users[0], 2)
    assert not last.joined and last.state.eligible == 3 and last.state.everyone_voted
    settled = await votes.close(last.state.ballot_id, CloseReason.EVERYONE)
    assert settled is not None and settled.winner == 2
    assert settled.instruction == (InstructionKind.CHOICE, "Right")
    assert "once everyone had voted" in (settled.state.outcome or "")
    assert await votes.close(last.state.ballot_id, CloseReason.HOST) is None  # closed once


async def test_a_tie_goes_to_the_earliest_option_and_says_so(db: Database, clock: FakeClock) -> None:
    _, variant_id, users = await group_story(db, players=4)
    votes = VoteService(db, clock=clock)
    for user, n in zip(users, (3, 2, 3, 2), strict=True):
        await votes.cast(variant_id, user, n)
    state = (await votes.latest(variant_id))
    assert state is not None
    settled = await votes.close(state.ballot_id, CloseReason.HOST)
    assert settled is not None and settled.winner == 2
    assert "tied" in (settled.state.outcome or "") and "earliest option" in (settled.state.outcome or "")
    assert pick_winner({4: 1, 1: 1}) == (1, [1, 4]) and pick_winner({}) == (None, [])


async def test_kicked_members_and_strangers_at_an_invite_only_table_are_refused(
        db: Database, clock: FakeClock) -> None:
    story_id, variant_id, users = await group_story(db, players=3)
    votes = VoteService(db, clock=clock)
    async with db.transaction() as s:
        await repo.set_member(s, story_id, users[1], MemberStatus.KICKED)
    with pytest.raises(VoteRefused):
        await votes.cast(variant_id, users[1], 1)
    await votes.update_settings(story_id, open_table=False)
    with pytest.raises(VoteRefused):
        await votes.cast(variant_id, users[2], 1)
    async with db.transaction() as s:
        await repo.set_member(s, story_id, users[2], MemberStatus.INVITED)
    assert (await votes.cast(variant_id, users[2], 1)).joined
    assert (await votes.latest(variant_id)).counts == {1: 1}


async def test_settings_are_validated_and_kept_in_the_story(db: Database, clock: FakeClock) -> None:
    story_id, _, _ = await group_story(db, players=1)
    votes = VoteService(db, clock=clock)
    with pytest.raises(VoteRefused):
        await votes.update_settings(story_id, duration=5)
    with pytest.raises(VoteRefused):
        await votes.update_settings(story_id, duration=86401)
    saved = await votes.update_settings(story_id, duration=90, own_actions=False)
    assert saved == VoteSettings(duration=90, own_actions=False)
    async with db.read() as s:
        assert VoteSettings.of(await repo.get_story(s, story_id)) == saved


async def test_own_actions_join_the_ballot_as_option_five(db: Database, clock: FakeClock) -> None:
    _, variant_id, users = await group_story(db, players=3)
    votes = VoteService(db, clock=clock)
    with pytest.raises(VoteRefused):
        await votes.cast(variant_id, users[0], 5)  # nothing proposed yet
    await votes.cast(variant_id, users[0], 5, action="Climb the tree")
    with pytest.raises(VoteRefused):
        await votes.cast(variant_id, users[1], 5, action="Dig a hole")  # one proposal per vote
    state = (await votes.cast(variant_id, users[1], 5)).state
    assert state.action == "Climb the tree" and state.counts == {5: 2}
    settled = await votes.close(state.ballot_id, CloseReason.HOST)
    assert settled is not None and settled.instruction == (InstructionKind.ACTION, "Climb the tree")


async def test_no_votes_at_the_deadline_extends_once_then_asks_the_host(db: Database, clock: FakeClock) -> None:
    _, variant_id, users = await group_story(db, players=2)
    votes = VoteService(db, clock=clock)
    state = await votes.open_ballot(variant_id)
    assert state is not None
    assert await votes.due() == [] and await votes.next_deadline() == state.deadline
    clock.advance(60)
    assert await votes.due() == [state.ballot_id]
    extended = await votes.settle_due(state.ballot_id)
    assert extended is not None and extended.extended and extended.state.open
    assert extended.state.deadline == clock.now + timedelta(seconds=60)
    assert await votes.settle_due(state.ballot_id) is None  # not due any more
    clock.advance(61)
    closed = await votes.settle_due(state.ballot_id)
    assert closed is not None and closed.ask_host and closed.state.winner is None
    # The host's (or anyone's) next vote starts a new round on the same scene.
    again = await votes.cast(variant_id, users[0], 3)
    assert again.state.ballot_id != state.ballot_id and again.state.counts == {3: 1}


async def test_a_vote_at_the_deadline_wins_without_extension(db: Database, clock: FakeClock) -> None:
    _, variant_id, users = await group_story(db, players=3)
    votes = VoteService(db, clock=clock)
    cast = await votes.cast(variant_id, users[1], 4)
    clock.advance(60)
    settled = await votes.settle_due(cast.state.ballot_id)
    assert settled is not None and not settled.extended and settled.winner == 4
    assert "time ran out" in (settled.state.outcome or "")
    with pytest.raises(VoteRefused):
        await votes.cast(variant_id, users[2], 1)  # decided: the story goes on with 4


async def test_a_new_scene_voids_the_old_ballot(db: Database, clock: FakeClock) -> None:
    story_id, variant_id, users = await group_story(db, players=2)
    votes = VoteService(db, clock=clock)
    await votes.cast(variant_id, users[0], 1)
    async with db.transaction() as s:
        scene_id = (await repo.get_variant(s, variant_id)).scene_id
        other = await repo.add_variant(s, scene_id, repo.VariantKind.REGENERATE, "Another fork.",
                                       [repo.ChoiceSpec("Up")])
    assert await votes.open_ballot(variant_id) is None  # no longer the story's latest scene
    fresh = await votes.open_ballot(other.id)
    assert fresh is not None and fresh.options == ("Up",)
    old = await votes.latest(variant_id)
    assert old is not None and old.closed_by == "void"
    assert [v.ballot_id for v in await votes.void(story_id)] == [fresh.ballot_id]


async def test_two_processes_racing_to_close_a_ballot_close_it_once(database_url: str, clock: FakeClock) -> None:
    """Two Database objects (two connection pools, as two bot processes have) on one
    database: each ballot is claimed by exactly one of them."""
    first, second = Database.from_url(database_url), Database.from_url(database_url)
    try:
        story_id, variant_id, users = await group_story(first, players=2)
        services = [VoteService(first, clock=clock), VoteService(second, clock=clock)]
        for round_ in range(5):
            ballot = await services[0].open_ballot(variant_id)
            assert ballot is not None and ballot.open
            await services[1].cast(variant_id, users[round_ % 2], 1 + round_ % 4)
            clock.advance(61)
            results = await asyncio.gather(
                services[0].settle_due(ballot.ballot_id), services[1].settle_due(ballot.ballot_id),
                services[0].close(ballot.ballot_id, CloseReason.HOST),
                services[1].close(ballot.ballot_id, CloseReason.EVERYONE),
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, results
            assert winners[0].winner == 1 + round_ % 4
            # Void it so the next round opens a fresh ballot on the same scene.
            async with first.transaction() as s:
                b = await s.get_one(Ballot, ballot.ballot_id)
                b.closed_by = CloseReason.VOID.value
        async with first.read() as s:
            closed = await s.scalar(select(func.count()).select_from(Ballot).where(Ballot.closed_at.is_not(None)))
            assert closed == 5
    finally:
        await first.dispose()
        await second.dispose()


# --- who closed it: the winner's scene counts against them ------------------------------


class OverTheLimit(KahaniError):
    pass


async def refuse(session: AsyncSession, story: Story, user_id: int) -> None:
    raise OverTheLimit(f"user {user_id} is at the limit")


async def test_the_closer_is_stored_with_the_close_and_a_recovery_charges_them(db: Database, clock: FakeClock) -> None:
    story_id, variant_id, users = await group_story(db, players=2)
    host, guest = users
    votes = VoteService(db, clock=clock)
    async with db.transaction() as s:
        await repo.set_member(s, story_id, guest, MemberStatus.JOINED)
    first = await votes.cast_as(variant_id, 1000, "p0", 2)
    assert first.closes is None and first.voter_id == host
    clock.advance(10)  # past the vote's first seconds, when readers may still join
    last = await votes.cast_as(variant_id, 1001, "p1", 2)  # everyone has voted now
    assert last.closes == CloseReason.EVERYONE and last.voter_id == guest
    settled = await votes.close(last.state.ballot_id, last.closes, closer_id=guest)
    assert settled is not None and settled.state.closer_id == guest
    assert settled.state.counts_against(host) == guest
    # The closer's process died before it took the winner: whoever recovers it (another
    # process, or this one restarted) reads the closer from the database.
    clock.advance(TAKE_GRACE.total_seconds() + 1)
    [recovered] = await VoteService(db, clock=clock).recover()
    assert recovered.state.closer_id == guest and recovered.state.counts_against(host) == guest
    # Forgetting the closer (/privacy delete-me) leaves the winner to the host.
    async with db.transaction() as s:
        await privacy.forget(s, 1001)
    assert (await votes.state(settled.state.ballot_id)).counts_against(host) == host


async def test_a_ballot_closed_by_its_deadline_counts_against_the_host(db: Database, clock: FakeClock) -> None:
    _, variant_id, users = await group_story(db, players=3)
    votes = VoteService(db, clock=clock)
    cast = await votes.cast(variant_id, users[1], 3)
    clock.advance(60)
    settled = await votes.settle_due(cast.state.ballot_id)
    assert settled is not None and settled.winner == 3
    assert settled.state.closer_id is None and settled.state.counts_against(users[0]) == users[0]


async def test_a_closer_over_the_limit_is_refused_and_nothing_is_written(db: Database, clock: FakeClock) -> None:
    story_id, variant_id, users = await group_story(db, players=2)
    votes = VoteService(db, clock=clock)
    async with db.transaction() as s:
        await repo.set_member(s, story_id, users[1], MemberStatus.JOINED)
    await votes.cast_as(variant_id, 1001, "p1", 2)
    clock.advance(10)
    # The host's vote would close it (everyone voted), and they may not start a scene.
    with pytest.raises(OverTheLimit):
        await votes.cast_as(variant_id, 1000, "p0", 1, may_close=refuse)
    state = await votes.open_ballot(variant_id)
    assert state is not None and state.open and state.voters == 1
    await votes.cast(variant_id, users[1], 2)  # withdrawn: nobody has voted
    # A vote that closes nothing is not asked about.
    async with db.transaction() as s:
        await repo.set_member(s, story_id, users[1], MemberStatus.JOINED)
    counted = await votes.cast_as(variant_id, 1000, "p0", 1, may_close=refuse)
    assert counted.position == 1 and counted.closes is None
    # Close vote by someone over the limit: refused, the ballot stays open.
    with pytest.raises(OverTheLimit):
        await votes.close(state.ballot_id, CloseReason.HOST, closer_id=users[1], may_close=refuse)
    assert (await votes.state(state.ballot_id)).open
    # Closing without a winner starts no scene: nobody's limit is asked about.
    await votes.cast(variant_id, users[0], 1)  # withdrawn
    settled = await votes.close(state.ballot_id, CloseReason.HOST, closer_id=users[1], may_close=refuse)
    assert settled is not None and settled.winner is None and settled.state.closer_id == users[1]


async def test_the_host_voting_first_does_not_end_the_vote_and_late_joiners_change_the_result(
        db: Database, clock: FakeClock) -> None:
    """#19: the natural first minute of a group story — the host votes at once, the others
    join by voting while they read."""
    _, variant_id, users = await group_story(db, players=3)
    votes = VoteService(db, clock=clock)
    opened = await votes.open_ballot(variant_id)
    assert opened is not None
    host_vote = await votes.cast(variant_id, users[0], 1)
    assert host_vote.closes is None and host_vote.state.open  # a table of one: not "everyone voted"
    clock.advance(3)
    bob = await votes.cast(variant_id, users[1], 2)  # joins by voting: 1 of 2... then 2 of 2
    assert bob.joined and bob.state.eligible == 2 and bob.state.everyone_voted
    # Everyone voted within the first 10 s: the vote closes 10 s after it opened, not now.
    assert bob.closes is None and bob.state.deadline == opened.opened_at + timedelta(seconds=10)
    clock.advance(2)
    carol = await votes.cast(variant_id, users[2], 2)  # a third reader joins in time: 3 must vote
    assert carol.state.eligible == 3 and carol.state.voters == 3 and carol.closes is None
    assert await votes.settle_due(opened.ballot_id) is None  # not due before those 10 s
    clock.advance(5)
    settled = await votes.settle_due(opened.ballot_id)
    assert settled is not None and settled.winner == 2  # the players who joined decided it


async def test_a_table_of_one_closes_only_by_its_timer_or_close_vote(db: Database, clock: FakeClock) -> None:
    _, variant_id, users = await group_story(db, players=1)
    votes = VoteService(db, clock=clock)
    cast = await votes.cast(variant_id, users[0], 3)
    clock.advance(30)
    again = await votes.cast(variant_id, users[0], 4)  # changing the vote later does not close it either
    assert cast.closes is None and again.closes is None and again.state.open
    assert again.state.deadline == cast.state.opened_at + timedelta(seconds=60)
    clock.advance(30)
    settled = await votes.settle_due(cast.state.ballot_id)
    assert settled is not None and settled.winner == 4 and settled.state.closed_by == CloseReason.DEADLINE
