"""Untrusted text through Discord, on SQLite and PostgreSQL (issue 22): a form whose every
field holds NUL and control characters, a model that writes NUL bytes, and the shapes
local models end a scene with (fenced JSON, bare JSON, a list behind a closing question,
700-character choices). Each ends in a stored story with live choices, every message
within Discord's limits (the stand-in validates them against the OpenAPI spec), and no
second request for choices when the reply held them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bot.app import KahaniBot
from core import repository as repo
from core.db import Database
from tests.discord_standin import AdjustableClock, Channel, DiscordStandin, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import IS_COMPONENTS_V2, Message
from tests.fakes.llm import FakeLLM
from tests.harness import ephemeral_answer, running_bot, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")

CORPUS = {case["name"]: case for case in json.loads(
    (Path(__file__).parent / "fixtures" / "choice_replies.json").read_text(encoding="utf-8"))["cases"]}
DIRTY = "\x00\x01\x07\x1b\x7f\x9f"  # NUL, C0 and C1 controls, DEL
FORM = {
    "Title": "The Salt\x00 Archive\x07",
    "Genre": "myst\x00ery\x1b",
    "Tone": "eer\x07ie",
    "World / setting": "A rocky\x00 island\x7f with a lighthouse.",
    "Premise: how does it start?": "The keeper\x00 has vanished;\x01 the lamp\x9f still burns.",
}


@dataclass
class World:
    standin: DiscordStandin
    bot: KahaniBot
    llm: FakeLLM
    general: Channel
    alice: User

    @property
    def db(self) -> Database:
        return self.bot.db


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(module_database_url: str) -> AsyncIterator[World]:
    async with DiscordStandin(clock=AdjustableClock()) as standin, FakeLLM(token_rate=2000) as llm:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "stories")
        alice = standin.add_user("alice", guild=guild)
        async with running_bot(standin, module_database_url, llm_base_url=llm.base_url) as running:
            yield World(standin, running.bot, llm, general, alice)


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


async def first_scene(world: World, reply: str) -> tuple[Message, Channel, int]:
    """A new player starts a solo story in their DMs (each DM has its own rate limits)
    with ``reply`` scripted; the first scene's message, the DM and the chat requests."""
    player = world.standin.add_user(f"player{len(world.standin.users)}")
    dm = world.standin.dm_channel(player)
    world.llm.script(reply)
    before = len(world.llm.chat_requests)
    rec = await world.standin.slash(player, dm, "story new")
    await rec.wait_response()
    [modal] = [m for m in world.standin.modals_for(player) if not m.submitted]
    await world.standin.submit_modal(player, modal, {"Title": "The Tide", "Premise: how does it start?": "Salt."})
    scene = await wait_scene(world.standin, dm)
    return scene, dm, len(world.llm.chat_requests) - before


def choice_labels(message: Message) -> list[str]:
    return [c["label"] for c in message.component_items()
            if c.get("custom_id", "").startswith("kahani:v1:choose:") and not c.get("disabled")]


def scene_messages(world: World, channel: Channel, last: Message) -> list[Message]:
    """The messages of the scene that ends with ``last`` (long scenes take several)."""
    mine = [m for m in channel.messages if m.author is world.standin.bot_user]
    end = mine.index(last)
    start = end
    while start > 0 and not mine[start - 1].component_items():
        start -= 1
    return mine[start:end + 1]


async def test_a_form_and_a_reply_full_of_nul_and_control_characters_make_a_playable_story(world: World) -> None:
    world.llm.script(f"The lamp{DIRTY} still burns.\x00\n\n### Choices\n1. Climb\x00 the stair\n2. Call\x07 out\n"
                     "3. Light the lantern\n4. Close the door")
    rec = await world.standin.slash(world.alice, world.general, "story new", mode="solo")
    await rec.wait_response()
    [modal] = [m for m in world.standin.modals_for(world.alice) if not m.submitted]
    submitted = await world.standin.submit_modal(world.alice, modal, FORM)
    answer = await ephemeral_answer(world.standin, submitted)
    assert "The Salt Archive" in answer
    async with world.db.read() as s:
        [story] = await repo.list_stories(s)
    assert story.thread_id is not None
    thread = world.standin.channels[story.thread_id]
    assert thread.name == "The Salt Archive"
    first = await wait_scene(world.standin, thread)
    assert (story.title, story.genre, story.tone) == ("The Salt Archive", "mystery", "eerie")
    assert story.premise == "The keeper has vanished; the lamp still burns."
    async with world.db.read() as s:
        [stored] = await repo.active_path(s, story.id)
        assert stored.variant.content == "The lamp still burns."
        assert [c.text for c in await repo.get_choices(s, stored.variant.id)][:2] == ["Climb the stair", "Call out"]
    assert choice_labels(first)[:2] == ["1. Climb the stair", "2. Call out"]
    sent = json.dumps(world.llm.chat_requests[-1]["messages"])
    assert not any(ch in json.loads(sent)[-1]["content"] for ch in DIRTY)  # nor did the model see them


@pytest.mark.parametrize("shape", [
    "fenced_json_object/end", "fenced_json_pretty/crlf_trailing_space", "fenced_json_actions_key/think",
    "bare_json_list/end", "bare_json_object/think", "question_numbered/end",
    "question_bold_lettered/crlf_trailing_space", "fenced_lettered_list/end",
])
async def test_a_scene_ending_in_another_shape_gets_live_buttons_and_no_second_request(
    world: World, shape: str
) -> None:
    case = CORPUS[shape]
    scene, dm, requests = await first_scene(world, case["reply"])
    assert requests == 1  # the choices were in the reply
    assert choice_labels(scene) == [f"{n}. {c}" for n, c in enumerate(case["choices"], 1)]
    shown = "\n".join(m.text for m in scene_messages(world, dm, scene))
    assert case["scene"] in shown
    for leak in ("```", "~~~", "{", "[\"", "What do you do", "What will you do"):
        assert leak not in shown, leak


async def test_choices_of_700_characters_in_a_fenced_block_end_with_live_buttons(world: World) -> None:
    long_choices = [f"Choice {n}: " + " ".join(f"w{n}x{i}" for i in range(140))[:690] for n in range(1, 5)]
    reply = "The tide turns under the archive.\n\n```json\n" + json.dumps({"choices": long_choices}) + "\n```\n"
    scene, dm, requests = await first_scene(world, reply)
    assert requests == 1
    labels = choice_labels(scene)
    assert len(labels) == 4 and all(len(label) <= 80 and label.endswith("…") for label in labels)
    messages = scene_messages(world, dm, scene)
    shown = "\n".join(m.text for m in messages)
    assert all(text in shown for text in long_choices)  # in full, in the text
    # 2,800 characters of choices beside the scene: one card (the stand-in refuses one over 4,000)
    assert [m for m in messages if m.flags & IS_COMPONENTS_V2] == [scene]
    world.standin.assert_clean()
