"""Faults injected mid-stream (#18, "Prove it"): Discord answering 5xx to a scene's edits
while it streams and to its final edit, the gateway dropping while a scene streams, the
database going away while a scene streams and while a vote is open, and ``kahani
export`` killed with SIGKILL while it writes. After each the story has a way forward —
the scene ends with its buttons, or Retry works — nothing is lost or doubled in the
database, and no task dies with "Task exception was never retrieved".

One world for the module: the real bot on a fresh PostgreSQL database reached through a
proxy that a test takes down and brings back (tests/fakes/tcpproxy.py), the Discord
stand-in and the fake LLM. A scripted reply is held at chosen points (the fake LLM's
``gates``) so each fault lands while the scene is being written; the vote clock is moved
by hand; nothing waits for a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import KahaniBot
from core import db as dbmod
from core import messages as msg
from core import repository as repo
from core.db import Database
from core.models import Ballot, InstructionKind, Story, Vote
from core.models import utcnow as real_now
from tests.conftest import _pg, require_postgres
from tests.discord_standin import AdjustableClock, Channel, DiscordStandin, Guild, Message, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import walk_components
from tests.discord_standin.rest import Request
from tests.fakes.llm import FakeLLM
from tests.fakes.tcpproxy import TcpProxy
from tests.harness import ROOT, ephemeral_answer, running_bot, scripted_scene, submit_new_story, tally, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")

EDIT = ("PATCH", "/channels/{channel_id}/messages/{message_id}")
CHOICES = ("Climb the stair", "Call out", "Light the lantern", "Close the door")
REF = re.compile(r"\(ref ([A-Z0-9]{6})\)")


class VoteClock:
    """The vote service's clock: real time plus an offset the tests move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> Any:
        return real_now() + self.offset


@dataclass
class World:
    standin: DiscordStandin
    bot: KahaniBot
    llm: FakeLLM
    proxy: TcpProxy
    url: str  # the database itself (not through the proxy)
    votes_clock: VoteClock
    guild: Guild
    general: Channel

    @property
    def db(self) -> Database:
        return self.bot.db

    def player(self, name: str) -> User:
        return self.standin.add_user(name, guild=self.guild)

    def advance_votes(self, seconds: float) -> None:
        """Move the vote clock and let the vote timer look at the deadlines."""
        self.votes_clock.offset += timedelta(seconds=seconds)
        self.bot.get_cog("Votes").wake()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def postgres() -> None:
    require_postgres()  # (outside the module's event loop: it checks with a loop of its own)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(postgres: None) -> AsyncIterator[World]:
    url = await _pg.fresh()
    parsed = make_url(url)
    try:
        async with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy, \
                DiscordStandin(clock=AdjustableClock()) as standin, FakeLLM(token_rate=None) as llm:
            guild = standin.add_guild("Tavern")
            general = standin.add_channel(guild, "stories")
            via_proxy = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            async with running_bot(standin, via_proxy, llm_base_url=llm.base_url) as running:
                clock = VoteClock()
                running.bot.get_cog("Votes").votes.clock = clock  # type: ignore[union-attr]
                yield World(standin, running.bot, llm, proxy, url, clock, guild, general)
    finally:
        await _pg.drop(url)


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


# --- helpers -------------------------------------------------------------------------------


async def start_story(world: World, user: User, title: str, *, mode: str = "solo") -> Channel:
    """/story new by ``user``; the story's thread (its opening is what the LLM was scripted to write)."""
    await ephemeral_answer(world.standin, await submit_new_story(world.standin, user, world.general, title,
                                                                 mode=mode))
    return next(c for c in world.standin.channels.values() if c.is_thread and c.name == title)


async def new_story(world: World, user: User, title: str, *, mode: str = "solo") -> tuple[Channel, Message]:
    """A story of ``user`` with its opening scene: its thread and that scene's message."""
    world.llm.script(scripted_scene(f"{title} opens on a grey shore."))
    thread = await start_story(world, user, title, mode=mode)
    return thread, await wait_scene(world.standin, thread)


def held_reply(world: World, *parts: str) -> list[asyncio.Event]:
    """Script the next scene as ``parts`` then its choices, held before each part after
    the first and before the choices until the test sets that gate (gates[i] lets
    ``parts[i + 1]`` through; the last one the choices)."""
    numbered = "\n".join(f"{n}. {c}" for n, c in enumerate(CHOICES, 1))
    gates = [asyncio.Event() for _ in parts]
    world.llm.script(chunks=[*parts, f"\n\n### Choices\n{numbered}"], gates={n + 1: g for n, g in enumerate(gates)})
    return gates


async def shown(world: World, thread: Channel, words: str) -> Message:
    """The scene message (being written) that shows ``words``."""
    return await world.standin.wait_until(
        lambda: next((m for m in thread.messages if words in m.text), None), what=f"{words!r} shown")


def edits_of(message: Message, *, final: bool) -> Callable[[Request], bool]:
    """The stand-in's fault filter: edits of ``message`` — the final one (its card carries
    the scene's buttons) or the running ones (text only)."""
    def matches(req: Request) -> bool:
        body = req.body if isinstance(req.body, dict) else {}
        buttons = list(walk_components(body.get("components") or []))
        return req.params.get("message_id") == str(message.id) and bool(buttons) == final

    return matches


def live_choices(message: Message) -> list[str]:
    """The labels of the message's enabled choice buttons."""
    return [c.get("label", "") for c in message.component_items()
            if c.get("custom_id", "").startswith("kahani:v1:choose:") and not c.get("disabled")]


def never_retrieved(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()  # asyncio reports a failed task nobody awaited when the task is collected
    return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]


def logged_with_traceback(caplog: pytest.LogCaptureFixture, ref: str) -> bool:
    return any(ref in r.getMessage() and r.exc_info for r in caplog.records)


async def until(check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 10.0) -> None:
    """Poll what announces nothing (the database, the file system) until ``check()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def story_named(world: World, title: str) -> Story:
    async with world.db.read() as s:
        story = await s.scalar(select(Story).where(Story.title == title))
    assert story is not None
    return story


async def path_of(world: World, story_id: int) -> list[repo.PathScene]:
    """The story's active path, oldest first."""
    async with world.db.read() as s:
        return await repo.active_path(s, story_id)


async def messages_of(world: World, variant_id: int) -> list[int]:
    async with world.db.read() as s:
        return [m for _, m in await repo.get_variant_messages(s, variant_id)]


# --- Discord answers 5xx while a scene streams ----------------------------------------------


# Each of these scenes is a story's opening, so that its thread's edit budget (5 per 5 s)
# is its own: the failed edits count against it too, and the stream must not wait for the
# next window (discord.py would sleep it out inside a request).


async def test_discord_failing_edits_while_a_scene_streams_and_its_final_edit_still_ends_it_with_its_buttons(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Running edits answered 502 (discord.py tries again: 503) and 503 (discord.py does not
    retry a 503): the stream skips them and goes on. Another scene's final edit answered
    503 (the stream tries again), then 500 (discord.py tries again). Each message ends
    with its whole scene and live buttons; each scene is stored once."""
    standin, ana = world.standin, world.player("ana")
    caplog.set_level(logging.INFO)
    parts = ["The lamp room is cold and dark.", " Frost covers the glass; a gull cries somewhere below."]
    gates = held_reply(world, *parts)
    thread = await start_story(world, ana, "Grey Glass")
    live = await shown(world, thread, parts[0])
    running = [standin.fail_next(*EDIT, status=502, when=edits_of(live, final=False)),
               standin.fail_next(*EDIT, times=2, status=503, when=edits_of(live, final=False))]
    gates[0].set()
    await standin.wait_until(lambda: [f.served for f in running] == [1, 2], timeout=10,
                             what="a 502 (retried: 503) and a 503 on the running edits")
    gates[1].set()
    await standin.wait_until(lambda: live_choices(live), what="the scene's buttons")
    assert live.text.startswith("".join(parts) + "\n\n**1.** Climb the stair")

    text_ = "The lighthouse stair is slick with rain and the rail is cold."
    [gate] = held_reply(world, text_)
    other = await start_story(world, ana, "Cold Rail")
    finished = await shown(world, other, text_)
    final = [standin.fail_next(*EDIT, status=503, when=edits_of(finished, final=True)),
             standin.fail_next(*EDIT, status=500, when=edits_of(finished, final=True))]
    gate.set()
    await standin.wait_until(lambda: live_choices(finished), what="the other scene's buttons")
    assert [f.served for f in final] == [1, 1]
    assert finished.text.startswith(text_ + "\n\n**1.** Climb the stair")

    for title, message, written in (("Grey Glass", live, "".join(parts)), ("Cold Rail", finished, text_)):
        assert live_choices(message) == [f"{n}. {c}" for n, c in enumerate(CHOICES, 1)]
        channel = thread if message is live else other
        assert [m for m in channel.messages if m.author is standin.bot_user][-1] is message  # posted once
        path = await path_of(world, (await story_named(world, title)).id)
        assert [p.variant.content for p in path] == [written]  # stored once, whole
        assert await messages_of(world, path[-1].variant.id) == [message.id]
    assert not never_retrieved(caplog)


async def test_when_discord_keeps_failing_the_final_edit_the_scene_is_posted_again_with_its_buttons(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Every final edit of the scene's message fails (503): after three tries the scene is
    posted as a new message with its buttons, the unfinished one is deleted, and the new
    one is what the database records (the next click plays on)."""
    standin, ben = world.standin, world.player("ben")
    caplog.set_level(logging.INFO)
    text_ = "Wind pushes through the broken pane and papers lift from the desk."
    [gate] = held_reply(world, text_)
    thread = await start_story(world, ben, "Broken Pane")
    live = await shown(world, thread, text_)
    refused = standin.fail_next(*EDIT, times=100, status=503, when=edits_of(live, final=True))
    try:
        gate.set()
        again = await standin.wait_until(
            lambda: next((m for m in thread.messages if m is not live and live_choices(m)), None),
            what="the scene posted again")
    finally:
        refused.times = 0
    assert refused.served == 3  # the final text, tried three times
    assert again.text.startswith(text_ + "\n\n**1.** Climb the stair")
    await standin.wait_until(lambda: live.deleted, what="the unfinished message deleted")

    path = await path_of(world, (await story_named(world, "Broken Pane")).id)
    assert [p.variant.content for p in path] == [text_]
    assert await messages_of(world, path[-1].variant.id) == [again.id]
    assert not never_retrieved(caplog)

    world.llm.script(scripted_scene("The wind drops as suddenly as it rose."))
    await (await standin.click(ben, again, "2. Call out")).wait_response()
    after = await wait_scene(standin, thread, after=1)
    assert after.text.startswith("-# → Call out\nThe wind drops")


# --- the gateway drops while a scene streams ---------------------------------------------


async def reconnect_mid_stream(world: World, title: str, reconnect: Callable[[], Awaitable[None]],
                               reconnected: Callable[[], bool]) -> None:
    """In a new story: ``reconnect`` while its second scene streams; that scene ends with
    its buttons, and a click once ``reconnected()`` plays the next one."""
    standin, player = world.standin, world.player(title.split()[0].lower())
    thread, first = await new_story(world, player, title)
    gates = held_reply(world, "The tide pulls back from the rocks.", " A bell rings under the water.")
    await (await standin.click(player, first, "1. Climb the stair")).wait_response()
    live = await shown(world, thread, "The tide pulls back")
    await reconnect()
    for gate in gates:
        gate.set()
    await standin.wait_until(lambda: live_choices(live), what="the scene's buttons")
    await standin.wait_until(reconnected, what="the bot back on the gateway")

    world.llm.script(scripted_scene("Wet footprints lead up the beach."))
    await (await standin.click(player, live, "2. Call out")).wait_response()
    after = await wait_scene(standin, thread, after=2)
    assert after.text.startswith("-# → Call out\nWet footprints")
    story = await story_named(world, title)
    assert [p.variant.content for p in await path_of(world, story.id)][1:] == [
        "The tide pulls back from the rocks. A bell rings under the water.", "Wet footprints lead up the beach."]


async def test_a_gateway_drop_or_a_new_session_while_a_scene_streams_leaves_it_finished_and_clickable(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The socket drops (the bot RESUMEs) while a scene streams, and in another story the
    session is invalidated (the bot IDENTIFYs again): scene text goes over REST, so both
    scenes end with their buttons, and clicks after each reconnect play on."""
    standin = world.standin
    caplog.set_level(logging.INFO)
    session = standin.gateway.by_shard[0]
    await reconnect_mid_stream(world, "Low Tide", standin.drop_gateway,
                               lambda: session.resumes == 1 and session.conn is not None)
    identifies = standin.gateway.identifies
    await reconnect_mid_stream(world, "Neap Tide", standin.invalidate_session,
                               lambda: standin.gateway.identifies == identifies + 1
                               and standin.gateway.by_shard[0].conn is not None)
    assert not never_retrieved(caplog)


# --- the database goes away mid-scene and mid-vote -----------------------------------------


async def lease_given_back(world: World, story_id: int) -> None:
    async def free() -> bool:
        async with world.db.read() as s:
            return await repo.get_lease(s, story_id) is None

    await until(free, what="the story's generation lease given back")


async def test_the_database_going_away_while_a_scene_streams_fails_it_with_retry_which_works_once_it_is_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    standin, di = world.standin, world.player("di")
    thread, first = await new_story(world, di, "Cut Cable")
    story = await story_named(world, "Cut Cable")
    gates = held_reply(world, "The cable hums in the dark.", " Then it goes quiet.")
    await (await standin.click(di, first, "1. Climb the stair")).wait_response()
    live = await shown(world, thread, "The cable hums")
    caplog.set_level(logging.INFO)

    await world.proxy.down()
    try:
        for gate in gates:  # the model writes on; storing the scene fails
            gate.set()
        await standin.wait_until(lambda: "not reachable" in live.text and [
            c.get("label") for c in live.component_items()] == ["Retry"], what="the scene failed with Retry")
        ref = REF.search(live.text)
        assert ref and logged_with_traceback(caplog, ref.group(1))
        assert live.text.startswith("-# → Climb the stair\nThe cable hums in the dark. Then it goes quiet.")
        refused = await ephemeral_answer(standin, await standin.click(di, live, "Retry"))  # still down
        assert refused.startswith(msg.DB_UNREACHABLE.split("(ref")[0])
    finally:
        await world.proxy.up()

    await lease_given_back(world, story.id)  # as soon as the database answers, not when it expires
    world.llm.script(scripted_scene("The cable sings again, steady and low."))
    await (await standin.click(di, live, "Retry")).wait_response()
    await standin.wait_until(lambda: live_choices(live), what="the retried scene's buttons")
    assert live.text.startswith("-# → Climb the stair\nThe cable sings again")
    path = await path_of(world, story.id)
    assert [p.variant.content for p in path[1:]] == ["The cable sings again, steady and low."]  # one scene
    assert await messages_of(world, path[-1].variant.id) == [live.id]
    assert not never_retrieved(caplog)


async def test_the_database_going_away_while_a_vote_is_open_refuses_votes_then_the_vote_closes_when_it_is_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A vote during the outage is refused (ephemeral, with a reference) and not counted;
    once the database is back votes count again and the vote closes at its deadline."""
    standin, host, bob = world.standin, world.player("host"), world.player("bob")
    thread, first = await new_story(world, host, "Open Vote", mode="group")
    await standin.wait_until(lambda: "Closes <t:" in tally(first), what="the open vote's tally")  # scene shown
    caplog.set_level(logging.INFO)

    await world.proxy.down()
    try:
        refused = await ephemeral_answer(standin, await standin.click(bob, first, "1. Climb the stair"))
        assert refused.startswith(msg.DB_UNREACHABLE.split("(ref")[0]) and REF.search(refused)
        world.advance_votes(30)  # the vote timer looks at the database meanwhile, and cannot
    finally:
        await world.proxy.up()

    voted = await ephemeral_answer(standin, await standin.click(bob, first, "2. Call out"))
    assert voted.startswith("You voted for 2")  # bob's first vote: the one during the outage never counted
    world.llm.script(scripted_scene("A voice answers from the lamp room."))
    world.advance_votes(61)  # past the deadline: the host has not voted
    scene = await wait_scene(standin, thread, after=1)
    assert scene.text.startswith("-# → Call out\nA voice answers")
    story = await story_named(world, "Open Vote")
    path = await path_of(world, story.id)
    assert [p.variant.content for p in path[1:]] == ["A voice answers from the lamp room."]
    async with world.db.read() as s:
        [ballot] = await s.scalars(select(Ballot).where(Ballot.variant_id == path[0].variant.id))
        votes = (await s.execute(select(Vote.position).where(Vote.ballot_id == ballot.id))).scalars().all()
    assert ballot.closed_by == "deadline" and ballot.winner_position == 2 and votes == [2]
    assert not never_retrieved(caplog)


# --- kahani export killed mid-write ---------------------------------------------------------

SCENES = 120
PREMISE = "The keeper kept a diary of every night the lamp failed. " * 300  # 17 KB: the title page is on disk


async def long_story(world: World) -> int:
    async with world.db.transaction() as s:
        owner = await repo.get_or_create_user(s, 4_000_001, "Keeper")
        story = await repo.create_story(s, owner, "A Long Night", premise=PREMISE, mode="solo")
        parent: int | None = None
        for n in range(SCENES):
            kind = InstructionKind.CHOICE if parent else InstructionKind.OPENING
            _, variant = await repo.add_scene(s, story.id, parent, f"Night {n}. " + "The lamp turns. " * 80,
                                              [repo.ChoiceSpec("Go on")], instruction_kind=kind,
                                              instruction="Go on" if parent else "")
            parent = variant.id
        return story.id


async def start_export(url: str, story_id: int, target: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "LLM_", "DATABASE_"))}
    env.update(DATABASE_URL=url, PYTHONPATH=str(ROOT))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "export", str(story_id), "--format", "markdown", "-o", str(target),
        cwd=target.parent, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)


@contextlib.asynccontextmanager
async def chapters_locked(url: str) -> AsyncIterator[AsyncEngine]:
    """Another transaction holds the chapters table, which an export reads right after
    writing its title page: an export started now stops there, mid-file, until the end
    of the block."""
    engine = dbmod.make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("LOCK TABLE chapters IN ACCESS EXCLUSIVE MODE"))
            yield engine
    finally:
        await engine.dispose()


async def killed_mid_write(url: str, story_id: int, target: Path) -> Path:
    """``kahani export`` SIGKILLed while its file is half written; returns that file."""
    before = set(target.parent.glob(".kahani-export-*"))
    async with chapters_locked(url) as engine:
        process = await start_export(url, story_id, target)

        async def mid_write() -> bool:
            partial = [p for p in target.parent.glob(".kahani-export-*") if p not in before and p.stat().st_size]
            if not partial:
                return False
            async with engine.connect() as conn:
                waiting = await conn.scalar(text(  # (other databases of the server may have a chapters table)
                    "SELECT count(*) FROM pg_locks WHERE relation = 'chapters'::regclass AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))
            return bool(waiting)

        try:
            await until(mid_write, what="the export to write its title page and wait", timeout=20)
        finally:
            process.send_signal(signal.SIGKILL)
            await process.communicate()
        assert process.returncode == -signal.SIGKILL
    [partial] = [p for p in target.parent.glob(".kahani-export-*") if p not in before]
    return partial


@pytest.mark.filesystem  # starts ``python -m bot export`` from the checkout
async def test_an_export_killed_mid_write_leaves_nothing_half_written_at_its_destination(
    world: World, tmp_path: Path
) -> None:
    story_id = await long_story(world)
    target = tmp_path / "a-long-night.md"

    partial = await killed_mid_write(world.url, story_id, target)
    assert not target.exists()  # written beside it, renamed only when complete
    assert partial.stat().st_size >= len(PREMISE)

    process = await start_export(world.url, story_id, target)  # a second run succeeds
    _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    whole = target.read_bytes()
    assert whole.startswith(b"# A Long Night") and f"Night {SCENES - 1}.".encode() in whole
    assert f"wrote {SCENES} scenes".encode() in err

    await killed_mid_write(world.url, story_id, target)  # over an existing file: it stays whole
    assert target.read_bytes() == whole
