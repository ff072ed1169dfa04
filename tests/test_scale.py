"""Running at scale (issue 10): several bot processes, each with some of the gateway
shards, on one PostgreSQL database, sharing one LLM server.

The fake LLM's ``parallel_slots`` (llama.cpp's ``--parallel N``) first: at most N
completions at once, the rest wait in line inside the server.

End to end: two real bot processes (``python -m bot run``) with shards 0,1 and 2,3 of
four, one Discord stand-in and one PostgreSQL database. Stories are played in a guild on
every shard: every interaction reaches the process that owns its guild's shard and is
answered once, by that process; no scene is written twice (two clicks racing on one
choice; the database's scenes and the LLM's requests counted); a group vote whose
deadline both processes' timers hold closes once. Then ``LLM_MAX_CONCURRENCY=1`` across
both processes: stories started at once in guilds of both are written one at a time,
and the waiting scenes show their place in line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from core import messages as msg
from core import repository as repo
from core.db import Database
from core.models import Ballot, Scene, SceneVariant, Story, utcnow
from tests.discord_standin import Channel, DiscordStandin, Guild, User
from tests.discord_standin.models import Callback, InteractionRecord, Message
from tests.fakes.llm import FakeLLM
from tests.harness import BotProcess, tally

SHARDS = 4
PROCESS_SHARDS = ("0,1", "2,3")


# --- the fake LLM's slots -------------------------------------------------------------


async def _complete(session: aiohttp.ClientSession, fake: FakeLLM, text: str, *, stream: bool = True) -> str:
    fake.script(text)
    body = {"model": fake.model, "stream": stream, "messages": [{"role": "user", "content": "go"}]}
    async with session.post(f"{fake.base_url}/chat/completions", json=body) as response:
        assert response.status == 200
        return await response.text()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def most_at_once(fake: FakeLLM) -> int:
    """The most completions whose [started, finished) overlap, from the fake's log."""
    spans = [(g.started, g.finished) for g in fake.generations if g.started is not None]
    assert all(finished is not None for _, finished in spans)
    return max(sum(1 for s, f in spans if s <= at < f) for at, _ in spans)


async def test_the_fake_llm_generates_at_most_its_parallel_slots_at_once_first_come_first_served(
        http: aiohttp.ClientSession) -> None:
    async with FakeLLM(parallel_slots=2, token_rate=500) as fake:
        words = " ".join(["word"] * 50)  # 50 pieces: 0.1 s a reply
        tasks = []
        for _ in range(6):
            tasks.append(asyncio.create_task(_complete(http, fake, words)))
            await asyncio.sleep(0.01)  # they arrive in this order
        bodies = await asyncio.gather(*tasks)
        assert all("[DONE]" in b for b in bodies)
        assert fake.max_concurrent == 2 == most_at_once(fake) and fake.active == 0
        arrived = sorted(fake.generations, key=lambda g: g.arrived)
        assert sorted(arrived, key=lambda g: g.started) == arrived  # first come, first served
        assert arrived[0].waited < 0.05 and arrived[-1].waited > 0.15  # the last waited two turns


async def test_without_slots_the_fake_llm_generates_everything_at_once_and_counts_it(
        http: aiohttp.ClientSession) -> None:
    async with FakeLLM(token_rate=500) as fake:
        words = " ".join(["word"] * 25)
        await asyncio.gather(*(_complete(http, fake, words) for _ in range(4)),
                             _complete(http, fake, "1. a\n2. b", stream=False))
        assert fake.max_concurrent == 5 == most_at_once(fake) and fake.active == 0
        assert [g.stream for g in fake.generations].count(False) == 1


async def test_a_client_that_hangs_up_while_waiting_gives_up_its_place_in_line(http: aiohttp.ClientSession) -> None:
    async with FakeLLM(parallel_slots=1, token_rate=200) as fake:
        first = asyncio.create_task(_complete(http, fake, " ".join(["word"] * 40)))  # 40 pieces: 0.2 s
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(_complete(http, fake, "never written"))
        await asyncio.sleep(0.05)
        third = asyncio.create_task(_complete(http, fake, "after the first"))
        await asyncio.sleep(0.02)
        gone.cancel()
        assert "after" in await third and "[DONE]" in await first
        assert fake.max_concurrent == 1 and fake.active == 0
        assert [g.started is None for g in fake.generations] == [False, True, False]
        assert fake.generations[2].started >= fake.generations[0].finished


# --- two bot processes ------------------------------------------------------------------


def on_shard(shard: int, n: int = 0) -> int:
    """A guild id Discord routes to ``shard`` of four: (id >> 22) % 4 == shard."""
    return ((SHARDS * (n + 1) + shard) << 22) + 1


def choice_buttons(message: Message) -> list[dict]:
    return [c for c in message.component_items() if c.get("custom_id", "").startswith("kahani:v1:choose:")]


class Cluster:
    """Two bot processes sharing a stand-in, a fake LLM and a PostgreSQL database, and
    the checks every interaction gets: which process it reached and which answered."""

    def __init__(self, standin: DiscordStandin, llm: FakeLLM, database_url: str, env: dict[str, str]) -> None:
        self.standin, self.llm = standin, llm
        self.procs = [BotProcess(standin, database_url, llm_base_url=llm.base_url,
                                 env={"SHARD_COUNT": str(SHARDS), "SHARD_IDS": ids, **env})
                      for ids in PROCESS_SHARDS]
        self.owners: dict[int, BotProcess] = {}  # interaction id → the process that must handle it

    def owner(self, guild: Guild) -> BotProcess:
        return self.procs[(guild.id >> 22) % SHARDS // 2]

    async def answered(self, rec: InteractionRecord, timeout: float = 10.0) -> Callback:
        """The interaction's answer; it reached, and was answered by, its shard's process."""
        assert rec.channel.guild is not None
        owner = self.owner(rec.channel.guild)
        self.owners[rec.id] = owner
        response = await rec.wait_response(timeout)
        assert rec.shard_id == (rec.channel.guild.id >> 22) % SHARDS
        ports = owner.local_ports()  # right away: the answering connection is still open
        assert rec.gateway_peer is not None and rec.gateway_peer[1] in ports, "the event reached another process"
        assert response.peer is not None and response.peer[1] in ports, "another process answered"
        return response

    async def new_story(self, user: User, channel: Channel, title: str, **options: object) -> Channel:
        """/story new → its modal → the story's thread."""
        await self.answered(await self.standin.slash(user, channel, "story new", **options))
        [modal] = [m for m in self.standin.modals_for(user) if not m.submitted]
        await self.answered(await self.standin.submit_modal(user, modal, {"Title": title}))
        return await self.standin.wait_until(
            lambda: next((c for c in self.standin.channels.values() if c.is_thread and c.name == title), None),
            what=f"the thread of {title}")

    async def scene(self, thread: Channel, number: int, timeout: float = 20.0) -> Message:
        """The ``number``-th (from 0) finished scene in the thread."""
        def found() -> Message | None:
            done = [m for m in thread.messages if m.author is self.standin.bot_user and choice_buttons(m)]
            return done[number] if len(done) > number else None

        return await self.standin.wait_until(found, timeout=timeout, what=f"scene {number} in {thread.name}")

    def assert_answered_once(self) -> None:
        """Every interaction got exactly one callback, accepted, from its shard's process."""
        for rec in self.standin.interactions.values():
            assert [c.accepted for c in rec.callbacks] == [True], (rec.id, rec.data, rec.callbacks)
            assert rec.id in self.owners, f"interaction {rec.id} was not checked"

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            await proc.close()

    async def stop(self) -> None:
        for proc in self.procs:
            assert "Traceback" not in proc.stderr, proc.stderr
            assert await proc.stop() == 0


async def count(db: Database, model: type) -> int:
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(model))


async def play_solo(cluster: Cluster, user: User, channel: Channel, title: str, *, race: bool = False) -> Channel:
    """A solo story of three scenes: the first, then choice 1 twice. With ``race`` the first
    choice is clicked twice at once (two clicks in flight on one button)."""
    thread = await cluster.new_story(user, channel, title, mode="solo")
    message = await cluster.scene(thread, 0)
    for number in (1, 2):
        custom_id = choice_buttons(message)[0]["custom_id"]
        clicks = [await cluster.standin.click(user, message, custom_id)]
        if race and number == 1:
            clicks.append(await cluster.standin.click(user, message, custom_id))
        for rec in clicks:  # both are answered; the generation lease lets one of them write
            await cluster.answered(rec)
        message = await cluster.scene(thread, number)
    return thread


@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
async def test_two_processes_with_two_shards_each_answer_every_interaction_once_and_write_every_scene_once(
        database_url: str) -> None:
    async with (DiscordStandin() as standin, FakeLLM(token_rate=1000, parallel_slots=2) as llm,
                Cluster(standin, llm, database_url, {"LOG_LEVEL": "DEBUG", "LLM_MAX_CONCURRENCY": "2"}) as cluster):
        guilds = [standin.add_guild(f"realm{shard}", id=on_shard(shard)) for shard in range(SHARDS)]
        channels = [standin.add_channel(g, "stories") for g in guilds]
        players = [standin.add_user(f"player{shard}", guild=g) for shard, g in enumerate(guilds)]
        host, bob, carol = (standin.add_user(name, guild=guilds[0]) for name in ("host", "bob", "carol"))
        db = Database.from_url(database_url)
        first_proc, second_proc = cluster.procs
        try:
            # The group vote, in the first process's guild: 2 of 3 vote, its deadline is moved
            # close; then the second process starts and reads the same deadline.
            await first_proc.start()
            vote_thread = await cluster.new_story(host, channels[0], "Tides")
            first = await cluster.scene(vote_thread, 0)
            await standin.wait_until(lambda: tally(first), what="the tally")
            async with db.transaction() as s:
                deadline = utcnow() + timedelta(seconds=8)
                [ballot_id] = (await s.scalars(update(Ballot).values(deadline=deadline).returning(Ballot.id))).all()
                stored = (await s.get_one(Ballot, ballot_id)).deadline
            vote = choice_buttons(first)[1]["custom_id"]
            await cluster.answered(await standin.click(bob, first, vote))  # wakes the first timer
            await cluster.answered(await standin.click(carol, first, vote))
            await second_proc.start()
            assert sorted(standin.gateway.by_shard) == [0, 1, 2, 3]
            line = f"vote timer: next deadline at {stored.isoformat()}"
            for proc in cluster.procs:
                await proc.wait_for_log(line, timeout=5)  # both timers hold it…
            assert utcnow() < stored  # …before it passes

            # Meanwhile, a solo story on every shard; two clicks race on one choice.
            threads = await asyncio.gather(*(
                play_solo(cluster, players[shard], channels[shard], f"Solo {shard}", race=shard == 2)
                for shard in range(SHARDS)))

            written = await cluster.scene(vote_thread, 1, timeout=20)  # the deadline closed the vote
            assert [m for m in vote_thread.messages if choice_buttons(m)] == [first, written]
            # The tally is the edit after the scene's final one: it may wait for the thread's
            # edit window (5 per 5 s), as in tests/test_votes_play.py's wait_tally.
            await standin.wait_until(lambda: tally(written), timeout=10, what="the new scene's tally")
            await standin.wait_until(lambda: all(c.get("disabled") for c in first.component_items()),
                                     what="the closed vote's buttons greyed out")

            async with db.read() as s:
                stories = {st.title: st for st in (await s.scalars(select(Story))).all()}
                paths = {title: len(await repo.active_path(s, st.id)) for title, st in stories.items()}
                ballots = (await s.scalars(select(Ballot).order_by(Ballot.id))).all()
            assert paths == {"Tides": 2, **{f"Solo {shard}": 3 for shard in range(SHARDS)}}
            assert [(b.closed_by, b.winner_position, b.takes) for b in ballots] == [
                ("deadline", 2, 1), (None, None, 0)]  # closed once; the new scene's vote is open
            scenes = sum(paths.values())
            assert await count(db, Scene) == scenes and await count(db, SceneVariant) == scenes
            assert len([g for g in llm.generations if g.stream]) == scenes  # no scene asked for twice
            for thread in threads:
                assert len([m for m in thread.messages if choice_buttons(m)]) == 3
                # The click that lost the race leaves nothing behind: no public notice.
                assert not any(msg.STILL_WRITING in m.text for m in thread.messages)
            assert llm.max_concurrent <= 2
            cluster.assert_answered_once()
            await cluster.stop()
        finally:
            await db.dispose()
        standin.assert_clean()


@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
async def test_llm_max_concurrency_one_across_two_processes_writes_one_scene_at_a_time_and_shows_the_line(
        database_url: str) -> None:
    """Needs the fair LLM queue (core/llmqueue.py): the limit holds across processes."""
    per_shard = 2
    async with (DiscordStandin() as standin, FakeLLM(token_rate=500) as llm,
                Cluster(standin, llm, database_url, {"LLM_MAX_CONCURRENCY": "1"}) as cluster):
        guilds = [standin.add_guild(f"realm{shard}.{n}", id=on_shard(shard, n))
                  for shard in range(SHARDS) for n in range(per_shard)]
        channels = [standin.add_channel(g, "stories") for g in guilds]
        players = [standin.add_user(f"player{g.id}", guild=g) for g in guilds]
        await asyncio.gather(*(proc.start() for proc in cluster.procs))
        assert sorted(standin.gateway.by_shard) == [0, 1, 2, 3]

        # Eight stories start at once in guilds of both processes, then each goes on once.
        threads = await asyncio.gather(*(cluster.new_story(p, c, f"Story {n}", mode="solo")
                                         for n, (p, c) in enumerate(zip(players, channels))))
        firsts = await asyncio.gather(*(cluster.scene(t, 0, timeout=25) for t in threads))
        clicks = [await standin.click(p, m, choice_buttons(m)[0]["custom_id"]) for p, m in zip(players, firsts)]
        await asyncio.gather(*(cluster.answered(rec) for rec in clicks))
        await asyncio.gather(*(cluster.scene(t, 1, timeout=25) for t in threads))

        assert llm.max_concurrent == 1  # one stream at a time, whichever process asked
        assert len([g for g in llm.generations if g.stream]) == 2 * len(threads)
        waiting = [r.text for t in threads for m in t.messages for r in m.history if "in line" in r.text]
        assert waiting, "no scene showed its place in line"
        cluster.assert_answered_once()
        await cluster.stop()
        standin.assert_clean()
