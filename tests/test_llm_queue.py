"""The fair LLM queue (core/llmqueue.py): LLM_MAX_CONCURRENCY slots shared by every
process through the database, round robin between servers, places in line, crashed
processes' slots freed after the ttl, and the per-user / per-server limits.

Two :class:`LLMQueue` objects on two separate database engines stand for two processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.settings import HOSTED_CONCURRENCY, discord_global_rate, llm_concurrency, load_settings
from core import messages as msg
from core import repository as repo
from core.db import Database
from core.engine import EngineConfig, Queued, SceneDone, SceneText, SlotGranted, StoryEngine
from core.llm import LLMClient, LLMTimeouts
from core.llmqueue import (
    GenerationLimits,
    LLMQueue,
    RateLimited,
    SlotLost,
    Ticket,
    admit,
    round_robin,
)
from core.models import LLMQueueEntry
from tests.clocks import FakeClock
from tests.fakes.llm import FakeLLM

FAST = 0.01  # poll interval: the tests wait on events, the pollers just run often


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def second_db(database_url: str) -> AsyncIterator[Database]:
    """The same database through another engine: a second process."""
    other = Database.from_url(database_url)
    yield other
    await other.dispose()


async def stories(db: Database, count: int) -> list[int]:
    async with db.transaction() as s:
        owner = await repo.get_or_create_user(s, 1001, "Asha")
        return [(await repo.create_story(s, owner, f"Story {n}")).id for n in range(count)]


async def granted(ticket: Ticket) -> list[int]:
    """Wait until ``ticket`` holds a slot; the places in line it was shown on the way."""
    return [position async for position in ticket.wait()]


async def rows(db: Database) -> int:
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(LLMQueueEntry)) or 0


# --- the order of the line ------------------------------------------------------------------


def test_round_robin_gives_each_lane_a_turn_in_arrival_order() -> None:
    rows_ = [(1, "guild:a", None), (2, "guild:a", None), (3, "guild:a", None), (4, "guild:b", None),
             (5, "user:7", None), (6, "guild:b", None)]
    assert round_robin(rows_) == [1, 4, 5, 2, 6, 3]


def test_round_robin_serves_the_lane_served_longest_ago_first() -> None:
    t0 = datetime(2026, 11, 30, tzinfo=UTC)
    rows_ = [(1, "busy", t0 + timedelta(seconds=9)), (2, "busy", t0 + timedelta(seconds=9)),
             (3, "quiet", t0), (4, "new", None)]
    # Never served first, then the one served longest ago; the busy server waits its turn.
    assert round_robin(rows_) == [4, 3, 1, 2]
    assert round_robin([]) == []


def test_ordinals_read_naturally() -> None:
    assert [msg.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


@pytest.mark.parametrize(("url", "expected"), [
    ("http://localhost:1234/v1", 1),
    ("http://127.0.0.1:11434/v1", 1),
    ("http://[::1]:8080/v1", 1),
    ("https://api.openai.com/v1", HOSTED_CONCURRENCY),
    ("http://gpu-box.lan:8000/v1", HOSTED_CONCURRENCY),
])
def test_the_default_limit_is_one_for_a_server_on_this_machine(url: str, expected: int) -> None:
    assert llm_concurrency(load_settings(_env_file=None, llm_base_url=url, llm_max_concurrency=None)) == expected
    assert llm_concurrency(load_settings(_env_file=None, llm_base_url=url, llm_max_concurrency=3)) == 3


# --- slots across processes ------------------------------------------------------------------


async def test_one_slot_is_shared_by_two_processes(db: Database, second_db: Database) -> None:
    one, two = LLMQueue(db, 1, poll_interval=FAST), LLMQueue(second_db, 1, poll_interval=FAST)
    a, b = await stories(db, 2)
    try:
        first = await one.enter(a, "guild:1")
        assert first.granted and await granted(first) == []
        second = await two.enter(b, "guild:2")
        assert not second.granted and second.position == 1
        waiting = asyncio.create_task(granted(second))
        await asyncio.sleep(0)  # it waits (nothing else is granted while the slot is held)
        assert not waiting.done()
        await first.release()
        assert await asyncio.wait_for(waiting, 5) == [1]  # the other process got the slot
        assert second.granted and second.waited > 0
        await second.release()
        assert await rows(db) == 0
    finally:
        await one.close()
        await two.close()


async def test_servers_take_turns_and_each_waiter_sees_its_place(db: Database, second_db: Database) -> None:
    """A busy server's five scenes do not starve a quiet server's one."""
    busy, quiet = LLMQueue(db, 1, poll_interval=FAST), LLMQueue(second_db, 1, poll_interval=FAST)
    ids = await stories(db, 7)
    served: list[str] = []
    seen: dict[str, list[int]] = {}

    async def scene(queue: LLMQueue, story_id: int, lane: str, name: str) -> None:
        ticket = await queue.enter(story_id, lane)
        seen[name] = [p async for p in ticket.wait()]
        served.append(name)
        await asyncio.sleep(0)  # "generating"
        await ticket.release()

    try:
        holder = await busy.enter(ids[0], "guild:busy")
        tasks = []
        for n in range(5):  # the busy server queues five scenes first…
            tasks.append(asyncio.create_task(scene(busy, ids[1 + n], "guild:busy", f"busy{n}")))
            await _until(lambda n=n: len(busy._tickets) == n + 2)
        tasks.append(asyncio.create_task(scene(quiet, ids[6], "guild:quiet", "quiet")))  # …then one
        await _until(lambda: len(quiet._tickets) == 1)
        await holder.release()  # the busy server was just served: the quiet one goes next
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        await busy.close()
        await quiet.close()
    assert served == ["quiet", "busy0", "busy1", "busy2", "busy3", "busy4"]
    assert seen["quiet"] == [1]  # it was told at once that it is next…
    assert seen["busy4"][0] == 5 and seen["busy4"][-1] == 1  # …the last in, 5th then, counted down


async def test_a_crashed_process_frees_its_slot_after_the_ttl(db: Database, second_db: Database, clock: FakeClock) -> None:
    ttl = timedelta(seconds=30)
    crashed = LLMQueue(db, 1, poll_interval=FAST, ttl=ttl, clock=clock)
    alive = LLMQueue(second_db, 1, poll_interval=FAST, ttl=ttl, clock=clock)
    a, b = await stories(db, 2)
    try:
        assert (await crashed.enter(a, "guild:1")).granted
        crashed._poller.cancel()  # the process dies: no more refreshes, no release
        ticket = await alive.enter(b, "guild:2")
        waiting = asyncio.create_task(granted(ticket))
        clock.now += ttl - timedelta(seconds=1)
        await alive._tick()
        assert not ticket.granted  # still alive as far as anyone can tell
        clock.now += timedelta(seconds=2)
        await asyncio.wait_for(waiting, 5)
        assert ticket.granted
        await ticket.release()
    finally:
        crashed._tickets.clear()
        await crashed.close()
        await alive.close()


async def test_a_place_lost_to_the_ttl_is_reported_not_waited_for_forever(db: Database, clock: FakeClock) -> None:
    queue = LLMQueue(db, 1, poll_interval=FAST, clock=clock)
    a, b = await stories(db, 2)
    try:
        holder = await queue.enter(a, "guild:1")
        ticket = await queue.enter(b, "guild:1")
        async with db.transaction() as s:  # e.g. the story was deleted while it waited
            await s.execute(LLMQueueEntry.__table__.delete().where(LLMQueueEntry.id == ticket.id))
        with pytest.raises(SlotLost):
            await asyncio.wait_for(granted(ticket), 5)
        await holder.release()
    finally:
        await queue.close()


async def test_limit_zero_means_no_queue(db: Database, llm_client: LLMClient) -> None:
    queue = LLMQueue(db, 0)
    assert not queue.enabled
    assert StoryEngine(db, llm_client, queue=queue).queue is None


# --- the engine waits its turn --------------------------------------------------------------------


@pytest.fixture
async def llm_client(fake_llm: FakeLLM) -> AsyncIterator[LLMClient]:
    client = LLMClient(fake_llm.base_url, timeouts=LLMTimeouts(connect=2, first_token=5, idle=2, request=10))
    yield client
    await client.aclose()


async def test_scenes_wait_for_the_slot_and_say_where_they_stand(
    db: Database, second_db: Database, fake_llm: FakeLLM, llm_client: LLMClient
) -> None:
    """Four stories on two "processes", one slot: the server never writes two at once,
    every scene is written, and the ones that waited were told their place."""
    queues = [LLMQueue(db, 1, poll_interval=FAST), LLMQueue(second_db, 1, poll_interval=FAST)]
    engines = [StoryEngine(d, llm_client, queue=q, config=EngineConfig(heartbeat_interval=3600))
               for d, q in zip((db, second_db), queues, strict=True)]
    ids = await stories(db, 4)
    try:
        results = await asyncio.gather(*(
            _collect(engines[n % 2].next_scene(story_id)) for n, story_id in enumerate(ids)))
    finally:
        for queue in queues:
            await queue.close()
    assert all(isinstance(events[-1], SceneDone) for events in results)
    assert fake_llm.max_concurrent == 1
    places = [[e.position for e in events if isinstance(e, Queued)] for events in results]
    assert sum(1 for p in places if p) == 3  # three waited, each told its place (1 = next)
    assert all(p == sorted(p, reverse=True) for p in places if p)  # the line only moves forward
    for events in results:  # the place comes before the slot, the slot before the text
        kinds = [type(e) for e in events]
        assert kinds.index(SlotGranted) < kinds.index(SceneText)
    assert await rows(db) == 0


async def _collect(events: AsyncIterator[object]) -> list[object]:
    return [e async for e in events]


async def _until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(FAST)


# --- per-user and per-server limits ----------------------------------------------------


async def test_a_user_over_the_limit_is_told_when_to_come_back(db: Database, clock: FakeClock) -> None:
    limits = GenerationLimits(per_user=2, per_guild=3)
    for n in range(2):
        async with db.transaction() as s:
            await admit(s, limits, user_id=1, guild_id=10, now=clock())
        clock.now += timedelta(seconds=10)
    with pytest.raises(RateLimited) as refused:
        async with db.transaction() as s:
            await admit(s, limits, user_id=1, guild_id=10, now=clock())
    assert refused.value.retry_after == pytest.approx(40)  # the first start leaves the window then
    assert refused.value.message == msg.RATE_LIMITED_USER.format(count=2, seconds=40)
    async with db.transaction() as s:  # someone else in the server may still play…
        await admit(s, limits, user_id=2, guild_id=10, now=clock())
    with pytest.raises(RateLimited) as server_full:  # …until the server's limit
        async with db.transaction() as s:
            await admit(s, limits, user_id=3, guild_id=10, now=clock())
    assert "server" in server_full.value.message
    clock.now += timedelta(seconds=41)
    async with db.transaction() as s:  # a minute after the first start, there is room again
        await admit(s, limits, user_id=1, guild_id=20, now=clock())


async def test_a_refused_generation_takes_no_lease_and_counts_nothing(
    db: Database, llm_client: LLMClient, clock: FakeClock
) -> None:
    engine = StoryEngine(db, llm_client, clock=clock, limits=GenerationLimits(per_user=1),
                         config=EngineConfig(heartbeat_interval=3600))
    first, second = await stories(db, 2)
    async with db.read() as s:
        player = (await repo.get_story(s, first)).owner_id
    assert isinstance((await _collect(engine.next_scene(first, user_id=player)))[-1], SceneDone)
    events = await _collect(engine.next_scene(second, user_id=player))
    assert events[-1].kind == "rate_limited"
    async with db.read() as s:
        assert await repo.get_lease(s, second) is None
        assert await repo.tip(s, second) is None
    clock.now += timedelta(seconds=61)
    assert isinstance((await _collect(engine.next_scene(second, user_id=player)))[-1], SceneDone)


@pytest.mark.parametrize(("shards", "expected"), [
    ({}, 47),
    ({"shard_count": 4}, 47),  # one process running all four shards
    ({"shard_count": 4, "shard_ids": [0, 1]}, 23),
    ({"shard_count": 3, "shard_ids": [2]}, 15),
    ({"shard_count": 4, "shard_ids": [0, 1], "discord_global_rate": 30}, 30),
])
def test_each_process_takes_its_shards_share_of_the_global_limit(shards: dict, expected: int) -> None:
    assert discord_global_rate(load_settings(_env_file=None, **shards)) == expected
