"""Never stuck: faults injected where a scene is written and shown (the database, a bug),
end to end through the stand-in. Whatever fails, the message says so with a reference
that is in the log, and there is a way forward: Retry before the scene was stored,
``/story resume`` after; no task dies with "Task exception was never retrieved"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from core import messages as msg
from core import repository as repo
from core.engine import SceneText
from core.models import RateEvent, Story
from tests.discord_standin import DiscordStandin, Overwrite, Permissions, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import Message
from tests.harness import PlayWorld, ephemeral_answer, play_world, scripted_scene, submit_new_story, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")

PER_HOUR = 3
LOCKED = OperationalError("UPDATE variant_messages …", {}, Exception("database is locked"))
REF = re.compile(r"ref ([A-Z0-9]{6})")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[PlayWorld]:
    path = tmp_path_factory.mktemp("faults") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with play_world(path, stories_per_user_per_hour=PER_HOUR) as world:
        yield world


@pytest.fixture(scope="module")
def standin(world: PlayWorld) -> DiscordStandin:
    return world.standin


async def new_story(world: PlayWorld, title: str, user: User | None = None) -> tuple[Any, Message]:
    """A solo story of ``user`` (alice; she may start PER_HOUR stories in this module)."""
    world.llm.script(scripted_scene(f"{title} opens on a grey shore."))
    submitted = await submit_new_story(world.standin, user or world.alice, world.general, title, mode="solo")
    await ephemeral_answer(world.standin, submitted)
    thread = next(c for c in world.standin.channels.values() if c.is_thread and c.name == title)
    return thread, await wait_scene(world.standin, thread)


def never_retrieved(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]


def logged_ref(caplog: pytest.LogCaptureFixture, ref: str) -> bool:
    return any(ref in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_failure_before_the_scene_is_stored_says_so_with_a_reference_and_retry_works(
    world: PlayWorld, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, first = await new_story(world, "Locked Out")
    engine = world.bot.engine
    real = engine.next_scene

    async def locked(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        yield SceneText("The door ")
        raise LOCKED  # the database went away while the scene was written

    monkeypatch.setattr(engine, "next_scene", locked)
    caplog.set_level(logging.INFO)
    await (await world.standin.click(world.alice, first, "1. Climb the stair")).wait_response()
    failed = await world.standin.wait_until(
        lambda: next((m for m in thread.messages if "Something went wrong while this scene" in m.text), None),
        what="the failed scene")
    ref = REF.search(failed.text)
    assert ref and logged_ref(caplog, ref.group(1))
    assert [c.get("label") for c in failed.component_items()] == ["Retry"]
    assert not never_retrieved(caplog)
    async with world.db.read() as s:
        story = await s.scalar(select(Story).where(Story.title == "Locked Out"))
        assert story is not None and len(await repo.active_path(s, story.id)) == 1  # as it was
        assert await repo.get_lease(s, story.id) is None

    monkeypatch.setattr(engine, "next_scene", real)
    world.llm.script(scripted_scene("The stair winds up into the dark."))
    await (await world.standin.click(world.alice, failed, "Retry")).wait_response()
    await world.standin.wait_until(lambda: failed.text.startswith("-# → Climb the stair\nThe stair winds up")
                                   and any(c.get("label") == "1. Climb the stair" for c in failed.component_items()),
                                   what="the retried scene, finished")
    async with world.db.read() as s:
        assert len(await repo.active_path(s, story.id)) == 2


async def test_a_failure_after_the_scene_is_stored_keeps_it_and_story_resume_shows_it(
    world: PlayWorld, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, first = await new_story(world, "Half Shown")
    player = world.bot.player
    real = player.record

    async def locked(*args: Any, **kwargs: Any) -> None:
        raise LOCKED

    monkeypatch.setattr(player, "record", locked)
    caplog.set_level(logging.INFO)
    world.llm.script(scripted_scene("The lamp room is empty but warm."))
    await (await world.standin.click(world.alice, first, "1. Climb the stair")).wait_response()
    failed = await world.standin.wait_until(
        lambda: next((m for m in thread.messages if "this scene is saved" in m.text.lower()), None),
        what="the scene that could not be shown")
    ref = REF.search(failed.text)
    assert ref and logged_ref(caplog, ref.group(1))
    assert "The lamp room is empty but warm." in failed.text  # what was written stays
    assert not never_retrieved(caplog)
    monkeypatch.setattr(player, "record", real)

    resumed = await world.standin.slash(world.alice, thread, "story resume")
    await ephemeral_answer(world.standin, resumed)
    shown = await world.standin.wait_until(
        lambda: [m for m in thread.messages if "The lamp room is empty but warm." in m.text
                 and any(c.get("label") == "1. Climb the stair" for c in m.component_items())],
        what="the scene shown again with its choices")
    assert shown


# --- /story new: nobody floods a server --------------------------------------------------------


def story_threads(world: PlayWorld) -> list[Any]:
    return [c for c in world.standin.channels.values() if c.is_thread]


async def story_count(world: PlayWorld) -> int:
    async with world.db.read() as s:
        return len(await repo.list_stories(s))


async def test_a_player_who_cannot_create_threads_here_cannot_start_a_story_here(world: PlayWorld) -> None:
    ida = world.standin.add_user("ida", guild=world.guild)
    closed = world.standin.add_channel(world.guild, "no-threads", overwrites=(
        Overwrite(ida.id, is_member=True, deny=Permissions.CREATE_PUBLIC_THREADS),))
    threads, stories = len(story_threads(world)), await story_count(world)
    submitted = await submit_new_story(world.standin, ida, closed, "Not Here", mode="solo")
    assert await ephemeral_answer(world.standin, submitted) == msg.STORY_YOU_CANNOT_CREATE_THREADS.format(
        channel=f"<#{closed.id}>")
    assert len(story_threads(world)) == threads and await story_count(world) == stories


async def test_a_player_may_start_only_so_many_stories_an_hour_and_no_thread_is_made_past_it(
    world: PlayWorld,
) -> None:
    jo = world.standin.add_user("jo", guild=world.guild)
    for n in range(PER_HOUR):
        world.llm.script(scripted_scene(f"Story {n} begins."))
        await ephemeral_answer(world.standin, await submit_new_story(world.standin, jo, world.general, f"Jo {n}"))
    threads, stories = len(story_threads(world)), await story_count(world)
    refused = await ephemeral_answer(world.standin, await submit_new_story(world.standin, jo, world.general, "Jo 9"))
    assert refused == msg.STORY_LIMIT.format(count=PER_HOUR, minutes=60)
    assert len(story_threads(world)) == threads and await story_count(world) == stories
    # Someone else is not held back by jo.
    world.llm.script(scripted_scene("Kim's story begins."))
    kim = world.standin.add_user("kim", guild=world.guild)
    started = await ephemeral_answer(world.standin, await submit_new_story(world.standin, kim, world.general, "Kim"))
    assert started.startswith("**Kim** begins")


async def test_a_form_past_its_limits_is_refused_and_nothing_is_made(world: PlayWorld) -> None:
    """A client that ignores the form's max lengths (Discord's own client would not)."""
    threads, stories = len(story_threads(world)), await story_count(world)
    rec = await world.standin.slash(world.bob, world.general, "story new")
    await rec.wait_response()
    [modal] = [m for m in world.standin.modals_for(world.bob) if not m.submitted]
    for component in modal.components:  # what a modified client could send
        component["components"][0].pop("max_length", None)
    submitted = await world.standin.submit_modal(world.bob, modal, {"Title": "T" * 101})
    assert await ephemeral_answer(world.standin, submitted) == msg.TEXT_TOO_LONG.format(
        field=msg.FIELD_STORY_TITLE, limit=100, length=101)
    assert len(story_threads(world)) == threads and await story_count(world) == stories


# --- a slow database: every handler still answers within Discord's 3 s --------------------------


@contextlib.asynccontextmanager
async def database_locked(world: PlayWorld) -> AsyncIterator[None]:
    """Another writer holds the SQLite database (as a long transaction or a slow disk
    would): the bot's writes wait for it. Taken in a thread: the bot shares this event
    loop and may be finishing a write of its own first."""
    path = world.bot.settings.database_url.split("///", 1)[1]
    other = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
    await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


SLOW_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("story settings", {"length": "short"}),
    ("story vote-settings", {"seconds": 120}),
    ("story delete", {}),
    ("story invite", {"player": "bob"}),
    ("story kick", {"player": "bob"}),
    ("story end", {}),
]


async def test_every_command_that_touches_the_database_answers_in_time_when_it_is_slow(world: PlayWorld) -> None:
    """While another writer holds the database, each command is deferred within Discord's
    3 s (the stand-in fails the test on a late answer) and answers once it is free."""
    sam = world.standin.add_user("sam", guild=world.guild)
    thread, first = await new_story(world, "Slow Harbour", sam)
    for command, options in SLOW_COMMANDS:
        values = {k: world.bob if v == "bob" else v for k, v in options.items()}
        async with database_locked(world):
            rec = await world.standin.slash(sam, thread, command, **values)
            response = await rec.wait_response()
        assert response.type == 5, command  # deferred while the database was busy
        await world.standin.wait_until(lambda: rec.followups, what=f"the answer to /{command}")


async def test_every_component_that_touches_the_database_answers_in_time_when_it_is_slow(world: PlayWorld) -> None:
    tia = world.standin.add_user("tia", guild=world.guild)
    thread, first = await new_story(world, "Slow Tide", tia)
    world.llm.script(scripted_scene("The tide turns."))
    await (await world.standin.click(tia, first, "Regenerate")).wait_response()
    await world.standin.wait_until(lambda: "The tide turns." in first.text and any(
        ":variant:" in c.get("custom_id", "") for c in first.component_items()), what="the second version")
    clicks: list[tuple[str, Any]] = [
        ("Favourite", None),
        ("<rating>", "4"),
        ("Narrate", None),
        ("<versions>", None),
    ]
    for what, value in clicks:
        async with database_locked(world):
            if what == "<rating>":
                rating = next(c["custom_id"] for c in first.component_items() if ":rate:" in c.get("custom_id", ""))
                rec = await world.standin.select(tia, first, [value], custom_id=rating)
            elif what == "<versions>":
                menu = next(c for c in first.component_items() if ":variant:" in c.get("custom_id", ""))
                other = next(o["value"] for o in menu["options"] if not o.get("default"))
                rec = await world.standin.select(tia, first, [other], custom_id=menu["custom_id"])
            else:
                rec = await world.standin.click(tia, first, what)
            response = await rec.wait_response()
        assert response.type in (5, 6), what  # deferred while the database was busy


# --- exports: a cooldown per player, a cap per process ---------------------------------------


async def test_an_export_has_a_cooldown_per_player(world: PlayWorld) -> None:
    thread, _ = await new_story(world, "Paper Trail")
    first = await world.standin.slash(world.alice, thread, "story export", format="markdown")
    await world.standin.wait_until(lambda: first.followups, what="the export")
    assert first.followups[-1].attachments
    again = await world.standin.slash(world.alice, thread, "story export", format="html")
    refused = await ephemeral_answer(world.standin, again)
    assert refused.startswith("You just did that: you can again in ") and refused.endswith(" s.")
    seconds = int(refused.rsplit(" ", 2)[-2])
    assert 1 <= seconds <= 30
    async with world.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(RateEvent)) >= 1  # across restarts too


async def test_privacy_shows_what_is_kept_and_delete_me_forgets_it_after_a_confirmation(world: PlayWorld) -> None:
    uma = world.standin.add_user("uma", guild=world.guild)
    thread, _ = await new_story(world, "Uma's Tale", uma)
    shown = await world.standin.slash(uma, world.general, "privacy show")
    await shown.wait_response()
    answer = shown.original
    assert answer is not None and "Uma's Tale" in str(answer.embeds)
    asked = await world.standin.slash(uma, world.general, "privacy delete-me")
    await asked.wait_response()
    confirm = asked.original
    assert confirm is not None
    await (await world.standin.click(uma, confirm, "Delete everything about me")).wait_response()
    await world.standin.wait_until(lambda: confirm.text == msg.PRIVACY_FORGOTTEN.format(count=1), what="forgotten")
    await world.standin.wait_until(lambda: thread.deleted or thread.archived, what="the story's thread gone")
    async with world.db.read() as s:
        assert not [s_ for s_ in await repo.list_stories(s) if s_.title == "Uma's Tale"]
    again = await world.standin.slash(uma, world.general, "privacy show")
    assert await ephemeral_answer(world.standin, again) == msg.PRIVACY_NOTHING


async def test_twenty_exports_at_once_build_two_and_tell_the_rest_to_try_again(
    world: PlayWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EXPORTS_AT_ONCE (2): while two are being built, the others are told at once to
    try again in a minute; nobody's click goes unanswered."""
    import core.export

    host = world.standin.add_user("host", guild=world.guild)
    world.llm.script(scripted_scene("The library opens at dusk."))
    await ephemeral_answer(world.standin, await submit_new_story(world.standin, host, world.general, "Open Library",
                                                                 mode="group"))
    thread = next(c for c in world.standin.channels.values() if c.is_thread and c.name == "Open Library")
    await wait_scene(world.standin, thread)
    readers = [world.standin.add_user(f"reader{n}", guild=world.guild) for n in range(20)]
    building, release = [], asyncio.Event()
    real = core.export.export_story

    async def slow_export(*args: Any, **kwargs: Any) -> Any:
        building.append(1)
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(core.export, "export_story", slow_export)
    recs = await asyncio.gather(*(world.standin.slash(r, thread, "story export", format="markdown")
                                  for r in readers))
    def said(rec: Any) -> str:
        shown = [m for m in [rec.original, *rec.followups] if m is not None and m.text]
        return shown[-1].text if shown else ""

    await world.standin.wait_until(lambda: len(building) == 2 and sum(1 for r in recs if said(r)) == 18,
                                   what="two building, eighteen told")
    assert sum(1 for r in recs if said(r) == msg.EXPORT_BUSY) == 18
    release.set()
    await world.standin.wait_until(lambda: sum(1 for r in recs if r.followups and r.followups[-1].attachments) == 2,
                                   timeout=15, what="the two exports")
    assert len(building) == 2
