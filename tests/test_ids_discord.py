"""Forged ids through the Discord stand-in, on SQLite and PostgreSQL (DESIGN §9, "Untrusted
input at the edges"; the parser itself: tests/test_ids.py).

A custom id whose id a column cannot hold (0, 2^31, 10^15, 2^63, leading zeros, other
scripts' digits) matches no DynamicItem template and gets the stale-component answer; a
forged select value is refused by the handler; every integer option declares its range
to Discord, and a forged value outside it is answered "no such story" (or the option's
own refusal). Never "Something went wrong", never a traceback, nothing stored — on
PostgreSQL, where such a number as a query argument is an error, as on SQLite. One
stand-in and one bot per engine serve the module.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from bot.app import KahaniBot
from bot.ui import scene as ui
from core import messages as msg
from core import recap
from core import repository as repo
from core.db import Database
from core.ids import MAX_ID
from core.models import Base, VariantKind
from core.votes import MAX_DURATION, MAX_MIN_OPEN
from tests.discord_standin import AdjustableClock, Channel, DiscordStandin, Guild, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import InteractionRecord, Message, Revision
from tests.harness import ephemeral_answer, running_bot
from tests.test_ids import sample_custom_ids

pytestmark = pytest.mark.asyncio(loop_scope="module")

# What each forged id tries: out of range, or no id at all.
FORGED = ("0", "-1", "2147483648", str(10**15), str(2**63), "007", "١")
# The bookkeeping of the process itself (the LLM queue, the command hash) may move on its own.
BOOKKEEPING = {"llm_queue", "llm_lanes", "app_state"}
# Every option the commands need besides the one under test, by name (a new required
# option gets a value here, or the test says which is missing).
FILLERS: dict[str, Any] = {"format": "markdown", "name": "Mara", "entry": "Bell", "voice": "af_bella",
                           "scope": "story", "speed": 1.0, "player": "pawn"}
# The polite answer to an out-of-range value of an integer option that is not a story.
OTHER_OPTIONS = {
    ("chapter summary", "chapter"): lambda v: msg.CHAPTER_UNKNOWN.format(number=v),
    ("story vote-settings", "seconds"): lambda v: msg.VOTE_BAD_DURATION.format(seconds=v),
    ("story read", "chapter"): lambda v: msg.READER_NO_CHAPTER.format(number=v, count=1),
    ("story vote-settings", "readers_wait"): lambda v: msg.VOTE_BAD_MIN_OPEN.format(seconds=v, most=MAX_MIN_OPEN),
    ("story settings", "recap_after"): lambda v: msg.RECAP_BAD_HOURS.format(hours=v, most=recap.MAX_HOURS),
}
OPTION_VALUES = (0, -1, 2**31, 2**53, 2**63)


@dataclass
class World:
    standin: DiscordStandin
    bot: KahaniBot
    guild: Guild
    thread: Channel
    alice: User
    pawn: User
    story_id: int
    scene_id: int
    variant_id: int

    @property
    def db(self) -> Database:
        return self.bot.db


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(module_database_url: str) -> AsyncIterator[World]:
    async with DiscordStandin(clock=AdjustableClock()) as standin:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "stories")
        alice = standin.add_user("alice", guild=guild)
        pawn = standin.add_user("pawn", guild=guild)
        thread = standin.add_thread(general, "The Forged Key", owner=alice)
        async with running_bot(standin, module_database_url) as running:
            db = running.bot.db
            async with db.transaction() as s:
                owner = await repo.get_or_create_user(s, alice.id, alice.name)
                story = await repo.create_story(
                    s, owner, "The Forged Key", premise="A key nobody made.", mode="group", guild_id=guild.id,
                    channel_id=general.id, thread_id=thread.id, settings={"votes": {"duration": MAX_DURATION}})
                _, first = await repo.add_scene(s, story.id, None, "Scene one.", [repo.ChoiceSpec("Go on")])
                scene, second = await repo.add_scene(s, story.id, first.id, "Scene two.",
                                                     [repo.ChoiceSpec("Climb"), repo.ChoiceSpec("Wait")])
                await repo.add_variant(s, scene.id, VariantKind.REGENERATE, "Scene two again.",
                                       [repo.ChoiceSpec("Climb"), repo.ChoiceSpec("Wait")])
                await repo.add_character(s, story.id, "Mara", description="A locksmith.")
            yield World(standin, running.bot, guild, thread, alice, pawn, story.id, scene.id, second.id)


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """What was logged at ERROR or with a traceback while the test ran (should be nothing)."""
    caplog.set_level(logging.INFO)
    found: list[logging.LogRecord] = []
    yield found
    found.extend(r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info)
    assert not found, [r.getMessage() for r in found]


async def snapshot(world: World) -> dict[str, list[tuple[Any, ...]]]:
    async with world.db.read() as s:
        return {t.name: sorted(map(tuple, (await s.execute(text(f"SELECT * FROM {t.name}"))).all()), key=repr)
                for t in Base.metadata.sorted_tables if t.name not in BOOKKEEPING}


def forged(world: World, component: dict[str, Any]) -> Message:
    """A message of the bot's in the story's thread carrying ``component`` (as an old or
    doctored client would show it)."""
    return world.standin.post_message(world.thread, world.standin.bot_user, Revision(
        content="forged", components=[{"type": 1, "components": [component]}]))


async def press(world: World, custom_id: str, *, value: str = "4") -> InteractionRecord:
    """Click the button, or pick ``value`` in the select, whose custom id is ``custom_id``."""
    if ":variant:" in custom_id or ":rate:" in custom_id:
        message = forged(world, {"type": 3, "custom_id": custom_id, "options": [{"label": value, "value": value}]})
        return await world.standin.select(world.alice, message, [value])
    message = forged(world, {"type": 2, "style": 1, "label": "forged", "custom_id": custom_id})
    return await world.standin.click(world.alice, message, "forged")


async def test_a_forged_id_on_any_component_is_answered_as_a_stale_one(
        world: World, errors: list[logging.LogRecord]) -> None:
    before = await snapshot(world)
    wrong = []
    for target in FORGED:
        for name, custom_id in sample_custom_ids(target).items():
            answer = await ephemeral_answer(world.standin, await press(world, custom_id))
            if answer != msg.DISCORD_STALE_COMPONENT:
                wrong.append(f"{name} {custom_id}: {answer!r}")
    assert not wrong, "\n".join(wrong)
    assert await snapshot(world) == before


async def test_an_id_in_range_that_names_nothing_is_answered_politely(
        world: World, errors: list[logging.LogRecord]) -> None:
    before = await snapshot(world)
    wrong = []
    for name, custom_id in sample_custom_ids(str(MAX_ID)).items():
        answer = await ephemeral_answer(world.standin, await press(world, custom_id))
        if answer.startswith(msg.DISCORD_UNEXPECTED_ERROR.split("{")[0]) or answer == msg.DISCORD_STALE_COMPONENT:
            wrong.append(f"{name} {custom_id}: {answer!r}")
    assert not wrong, "\n".join(wrong)
    assert await snapshot(world) == before


async def test_a_forged_value_in_a_real_scenes_selects_is_answered_politely(
        world: World, errors: list[logging.LogRecord]) -> None:
    before = await snapshot(world)
    variant_select = ui.VariantSelect(world.scene_id).custom_id
    rating_select = ui.RatingSelect(world.variant_id).custom_id
    for value in ("999999999999", "-1", "abc", "0", "007", "١", str(2**63), ""):
        if value:  # Discord sends no empty option value; the handler takes it as no choice
            answer = await ephemeral_answer(world.standin, await press(world, variant_select, value=value))
            assert answer == msg.VARIANT_GONE, (value, answer)
        for rating in (value, "6", "05"):
            if rating:
                answer = await ephemeral_answer(world.standin, await press(world, rating_select, value=rating))
                assert answer == msg.RATING_INVALID, (rating, answer)
    assert await snapshot(world) == before


def integer_options(commands: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(``group sub`` command, the leaf's definition, one integer option) of every command."""
    def leaves(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        subs = [o for o in node.get("options") or [] if o["type"] in (1, 2)]
        if not subs:
            yield path, node
        for sub in subs:
            yield from leaves(sub, f"{path} {sub['name']}")

    for command in commands:
        for path, leaf in leaves(command, command["name"]):
            for option in leaf.get("options") or []:
                if option["type"] == 4:
                    yield path, leaf, option


async def test_every_integer_option_declares_its_range_to_discord(world: World) -> None:
    found = list(integer_options(world.standin.global_commands))
    assert len(found) >= 20  # every story option of every command, and the chapter and seconds
    wrong = []
    for path, _, option in found:
        low, high = option.get("min_value"), option.get("max_value")
        if low is None or high is None or not -(2**31) <= low <= high <= MAX_ID:
            wrong.append(f"/{path} {option['name']}: {low}..{high}")
        if option["name"] == "story" and ((low, high) != (1, MAX_ID) or not option.get("autocomplete")):
            wrong.append(f"/{path} story: {low}..{high}, autocomplete {option.get('autocomplete')}")
    assert not wrong, "\n".join(wrong)


async def test_an_integer_option_out_of_range_is_answered_politely(
        world: World, errors: list[logging.LogRecord]) -> None:
    """Discord refuses such values in its client; a forged request still arrives."""
    before = await snapshot(world)
    wrong = []
    for path, leaf, option in integer_options(world.standin.global_commands):
        others = {}
        for definition in leaf.get("options") or []:
            name = definition["name"]
            if definition.get("required") and name != option["name"]:
                assert name in FILLERS, f"/{path}: give {name!r} a value in FILLERS"
                others[name] = world.pawn if FILLERS[name] == "pawn" else FILLERS[name]
        if option["name"] != "story":
            assert (path, option["name"]) in OTHER_OPTIONS, f"/{path} {option['name']}: what is its polite answer?"
        for value in OPTION_VALUES:
            if option["min_value"] <= value <= option["max_value"]:
                continue  # in range (0 s for readers_wait): not what this test is about
            rec = await world.standin.slash(world.alice, world.thread, path, **{option["name"]: value}, **others)
            answer = await ephemeral_answer(world.standin, rec)
            expected = msg.STORY_NOT_FOUND if option["name"] == "story" else OTHER_OPTIONS[path, option["name"]](value)
            if answer != expected:
                wrong.append(f"/{path} {option['name']}={value}: {answer!r}")
    assert not wrong, "\n".join(wrong)
    assert await snapshot(world) == before


async def test_autocomplete_takes_a_story_option_out_of_range_as_no_story(
        world: World, errors: list[logging.LogRecord]) -> None:
    rec = await world.standin.autocomplete(world.alice, world.thread, "chapter list", option="story", value="")
    assert world.story_id in {c["value"] for c in (await rec.wait_response()).data["choices"]}
    rec = await world.standin.autocomplete(world.alice, world.thread, "chapter summary", option="chapter", value="")
    assert (await rec.wait_response()).data["choices"]  # this thread's story: its chapter
    for value in OPTION_VALUES:
        for command, option in (("chapter summary", "chapter"), ("character edit", "name")):
            rec = await world.standin.autocomplete(world.alice, world.thread, command, option=option, value="",
                                                   story=value)
            assert (await rec.wait_response()).data["choices"] == [], (command, value)
