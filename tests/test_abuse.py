"""Nobody can run up the bill or flood a server (#18), end to end: the real bot against
the Discord stand-in and the fake LM Studio, with STORIES_PER_USER_PER_HOUR at its
default (10) and GENERATIONS_PER_USER_PER_MINUTE at 3 (a small limit keeps the scenes of
one thread within one of Discord's 5-second windows, so the module stays quick).

- 30 ``/story new`` from one player in a minute: STORIES_PER_USER_PER_HOUR stories and
  threads, the rest refused privately with when to try again, no orphan thread; the
  stories' first scenes are held to the generation limit too;
- whose limit a vote's winner counts against: the closer's (after a recovery too), else
  the host's;
- a one-player group story clicked 50 times: GENERATIONS_PER_USER_PER_MINUTE scenes, one at
  a time, the rest refused privately, one message per scene; playable a minute later.

Every test: no 429, no rule broken, nobody pinged (``discord_rules``). The bot's clocks
(the engine's, for the limit; the votes', for deadlines) are moved, never waited for."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.settings import Settings
from core import messages as msg
from core import repository as repo
from core.models import Ballot, GenerationStart, Scene, Story, User, utcnow
from core.votes import TAKE_GRACE, CloseReason, VoteService
from tests.discord_standin import AdjustableClock, Channel, DiscordStandin
from tests.discord_standin import User as DiscordUser
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import InteractionRecord, Message
from tests.harness import PlayWorld, ephemeral_answer, finished_scene, play_world, submit_new_story, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")

PER_MINUTE = 3  # GENERATIONS_PER_USER_PER_MINUTE
PER_HOUR = Settings.model_fields["stories_per_user_per_hour"].default  # 10


class OffsetClock:
    """A bot clock: real time plus an offset the tests move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


class World(PlayWorld):
    engine_clock: OffsetClock
    vote_clock: OffsetClock

    @property
    def votes(self) -> VoteService:
        return self.bot.get_cog("Votes").votes  # type: ignore[union-attr]

    def wake_votes(self) -> None:
        self.bot.get_cog("Votes").wake()  # type: ignore[union-attr]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[World]:
    path = tmp_path_factory.mktemp("abuse") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with play_world(path, llm={"token_rate": 5000}, generations_per_user_per_minute=PER_MINUTE,
                          stories_per_user_per_hour=PER_HOUR) as played:
        world = World(**vars(played))
        world.engine_clock, world.vote_clock = OffsetClock(), OffsetClock()
        world.bot.engine.clock = world.engine_clock
        world.votes.clock = world.vote_clock
        yield world


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


def threads_named(world: World, prefix: str) -> list[Channel]:
    return [c for c in world.standin.channels.values() if c.is_thread and (c.name or "").startswith(prefix)]


async def stories_titled(world: World, prefix: str) -> list[Story]:
    async with world.db.read() as s:
        return list(await s.scalars(select(Story).where(Story.title.startswith(prefix))))


async def user_id(world: World, who: DiscordUser) -> int:
    async with world.db.read() as s:
        found = await s.scalar(select(User.id).where(User.discord_id == who.id))
    assert found is not None
    return found


async def charged(world: World) -> Counter[int]:
    """Generations counted so far (in the limit's window), by user id."""
    async with world.db.read() as s:
        rows = await s.execute(select(GenerationStart.user_id, func.count()).group_by(GenerationStart.user_id))
        return Counter({uid: n for uid, n in rows if uid is not None})


async def scene_count(world: World, story_id: int) -> int:
    async with world.db.read() as s:
        return await s.scalar(select(func.count()).select_from(Scene).where(Scene.story_id == story_id)) or 0


async def answer(world: World, rec: InteractionRecord) -> str:
    """How the bot answered a click: "update" (the clicked message was updated: the vote's
    outcome), or the text of its ephemeral answer."""
    response = await rec.wait_response()
    if response.type == 7:
        return "update"
    return await ephemeral_answer(world.standin, rec)


async def new_story(world: World, who: DiscordUser, title: str, **options: object) -> tuple[Channel, Message]:
    submitted = await submit_new_story(world.standin, who, world.general, title, **options)
    assert (await ephemeral_answer(world.standin, submitted)).startswith(f"**{title}** begins")
    thread = await world.standin.wait_until(lambda: next(iter(threads_named(world, title)), None),
                                            what="the story's thread")
    assert thread is not None
    return thread, await wait_scene(world.standin, thread)


def choice_labels(message: Message) -> list[str]:
    return [c["label"] for c in message.component_items()
            if c.get("custom_id", "").startswith("kahani:v1:choose:") and not c.get("disabled")]


# --- 30 /story new in a minute ---------------------------------------------------------------


async def test_thirty_new_stories_in_a_minute_make_the_hourly_limit_and_no_orphan_thread(world: World) -> None:
    rex = world.standin.add_user("rex", guild=world.guild)
    # The players come after start-up: the bot's start-up requests (not paced: a few,
    # once) are out of Discord's one-second window by then.
    assert isinstance(world.standin.clock, AdjustableClock)
    world.standin.clock.advance(1.0)
    forms = []
    for _ in range(30):  # thirty forms open at once…
        rec = await world.standin.slash(rex, world.general, "story new", mode="solo")
        assert (await rec.wait_response()).type == 9
        forms.append(world.standin.modals_for(rex)[-1])
    started = time.monotonic()
    submitted = [  # …sent together, before the bot answers any of them
        await world.standin.submit_modal(rex, form, {"Title": f"Rush {n}", "Premise: how does it start?": "Go."})
        for n, form in enumerate(forms)
    ]
    answers = await asyncio.gather(*(ephemeral_answer(world.standin, rec, followup_within=10) for rec in submitted))
    assert time.monotonic() - started < 60
    begun = [a for a in answers if "begins" in a]
    refused = [a for a in answers if a == msg.STORY_LIMIT.format(count=PER_HOUR, minutes=60)]
    assert (len(begun), len(refused)) == (PER_HOUR, 30 - PER_HOUR), answers
    stories = await stories_titled(world, "Rush ")
    threads = threads_named(world, "Rush ")
    assert len(stories) == len(threads) == PER_HOUR  # no orphan thread, no story without one
    assert {s.thread_id for s in stories} == {t.id for t in threads}
    # The first scenes count against rex's generation limit: the rest say so, with Retry.
    limited = msg.RATE_LIMITED_USER.format(count=PER_MINUTE, seconds=0).split("about")[0]
    outcomes = Counter()
    for thread in threads:
        first = await world.standin.wait_until(
            lambda t=thread: next((m for m in t.messages if finished_scene(m) or limited in m.text), None),
            what="a first scene or the limit's message")
        assert first is not None
        retry = any(c.get("label") == "Retry" for c in first.component_items())
        outcomes["scene" if finished_scene(first) else "limited, with Retry" if retry else "limited"] += 1
    assert outcomes == Counter({"scene": PER_MINUTE, "limited, with Retry": PER_HOUR - PER_MINUTE}), outcomes
    assert all(len([m for m in t.messages if m.author is world.standin.bot_user]) == 2 for t in threads)
    # Someone else is not held back by rex.
    sue = world.standin.add_user("sue", guild=world.guild)
    await new_story(world, sue, "Sue's own", mode="solo")
    assert world.standin.pings == [] and world.standin.rate_limit_hits == []
    print(f"\n30 /story new: {len(stories)} stories, {len(threads)} threads, {len(refused)} refusals, "
          f"first scenes {dict(outcomes)}, {len(world.standin.rate_limit_hits)} × 429")


# --- whose limit a vote's winner counts against ------------------------------------------------


async def test_a_vote_winner_counts_against_the_closer_else_the_host_and_after_a_recovery(world: World) -> None:
    host, guest = world.alice, world.bob
    thread, first = await new_story(world, host, "Who pays", mode="group")
    story = (await stories_titled(world, "Who pays"))[0]
    assert "You joined" in await answer(world, await world.standin.click(guest, first, "Join"))
    host_id, guest_id = await user_id(world, host), await user_id(world, guest)

    # The guest's vote is the last one: they closed the vote, the scene counts against them.
    before = await charged(world)
    assert "You voted for 1" in await answer(world, await world.standin.click(host, first, choice_labels(first)[0]))
    world.vote_clock.advance(10)  # "everyone voted" closes no sooner than 10 s after the scene appeared
    assert await answer(world, await world.standin.click(guest, first, choice_labels(first)[1])) == "update"
    second = await wait_scene(world.standin, thread, after=1)
    assert await charged(world) - before == Counter({guest_id: 1})

    # Closed by its deadline: nobody closed it, the host pays.
    before = await charged(world)
    await answer(world, await world.standin.click(guest, second, choice_labels(second)[2]))
    world.vote_clock.advance(61)
    world.wake_votes()
    await wait_scene(world.standin, thread, after=2)
    assert await charged(world) - before == Counter({host_id: 1})

    # The guest closed it, and the process died before it started the scene: the vote
    # timer's recovery (here, or in another process after a restart) charges the guest.
    before = await charged(world)
    async with world.db.read() as s:
        tip = await repo.tip(s, story.id)
    assert tip is not None
    await world.votes.cast(tip.variant.id, guest_id, 1)
    state = await world.votes.latest(tip.variant.id)
    assert state is not None
    settled = await world.votes.close(state.ballot_id, CloseReason.HOST, closer_id=guest_id)
    assert settled is not None and settled.state.closer_id == guest_id
    world.vote_clock.advance(TAKE_GRACE.total_seconds() + 1)
    world.wake_votes()
    await wait_scene(world.standin, thread, after=3)
    assert await charged(world) - before == Counter({guest_id: 1})
    async with world.db.read() as s:
        assert (await s.get_one(Ballot, state.ballot_id)).takes == 1
    await world.votes.void(story.id)  # nothing left to close when later tests move the clocks


# --- 50 clicks on a one-player group story ---------------------------------------------------------


async def test_fifty_clicks_on_a_one_player_group_story_make_the_limit_one_scene_at_a_time(world: World) -> None:
    una = world.standin.add_user("una", guild=world.guild)
    await world.standin.wait_until(lambda: world.llm.active == 0, what="earlier scenes to finish")
    world.llm.max_concurrent = 0
    thread, live = await new_story(world, una, "Fifty clicks", mode="group")  # generation 1
    story = (await stories_titled(world, "Fifty clicks"))[0]
    limited = msg.RATE_LIMITED_USER.format(count=PER_MINUTE, seconds=0).split("about")[0]
    under, over = Counter[str](), Counter[str]()  # answers before and after the limit was reached
    clicks, shown = 0, 1  # clicks sent, scenes shown
    while clicks < 50:
        # Two choices and Close vote at once on the live scene, all sent before the bot
        # answers any of them: a player hammering the buttons.
        labels = choice_labels(live)
        burst = [labels[clicks % 4], labels[(clicks + 1) % 4], "Close vote"][: 50 - clicks]
        recs = [await world.standin.click(una, live, label) for label in burst]
        clicks += len(recs)
        answers = under if shown < PER_MINUTE else over
        for label, rec in zip(burst, recs, strict=True):
            text = await answer(world, rec)
            kind = "rate limited" if text.startswith(limited) else text.split(":")[0]
            answers[f"{'close' if label == 'Close vote' else 'choice'}: {kind}"] += 1
        if await decided(world, story.id):  # a vote closed with a winner: its scene comes
            live = await wait_scene(world.standin, thread, after=shown)
            shown += 1
    scenes = await scene_count(world, story.id)
    assert scenes == PER_MINUTE, (under, over)  # the first scene, and PER_MINUTE - 1 votes won
    assert world.llm.max_concurrent == 1  # one scene at a time
    # A table of one: a choice is a vote that closes nothing; each burst's Close vote
    # closed the vote under the limit, and is refused past it (the votes still count).
    assert under["close: update"] == PER_MINUTE - 1, under
    assert set(under) <= {"choice: You voted for 1", "choice: You voted for 2", "choice: You voted for 3",
                          "choice: You voted for 4", "close: update"}, under
    assert {a for a in over if a.startswith("close")} == {"close: rate limited"}, over
    assert all(a.startswith(("choice: You voted for", "choice: You took back")) for a in over
               if a.startswith("choice")), over
    bot_messages = [m for m in thread.messages if m.author is world.standin.bot_user]
    assert len(bot_messages) == 1 + scenes  # the story's title card and one message per scene
    print(f"\n50 clicks: {scenes} scenes; under the limit {dict(under)}; past it {dict(over)}; "
          f"{len(bot_messages)} bot messages in the thread")

    # A minute later the story goes on with the next click.
    world.engine_clock.advance(61)
    assert await answer(world, await world.standin.click(una, live, "Close vote")) == "update"
    await wait_scene(world.standin, thread, after=scenes)
    assert await scene_count(world, story.id) == scenes + 1


async def decided(world: World, story_id: int) -> bool:
    """The story's latest scene has a vote that closed with a winner (its scene is due)."""
    async with world.db.read() as s:
        tip = await repo.tip(s, story_id)
    assert tip is not None
    state = await world.votes.latest(tip.variant.id)
    return state is not None and not state.open and state.winner is not None
