"""/lore end to end: the real KahaniBot against the Discord stand-in, on SQLite and on
PostgreSQL (one bot per database for the whole module). Stories are seeded through
core.repository; the entries are added, edited, shown and removed through Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bot.app import KahaniBot
from bot.ui.common import EMBED_TOTAL
from core import messages as msg
from core import repository as repo
from core.db import Database
from core.models import LoreEntry, LoreStatus, MemberStatus
from tests.discord_standin import AdjustableClock, Channel, DiscordStandin, Guild, Permissions, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import Message
from tests.harness import fields, form_values, only_answer, open_form, running_bot

pytestmark = pytest.mark.asyncio(loop_scope="module")

GATE = "The Iron Gate has not opened in a hundred years; the gatekeepers say it never will."


# --- the module's world: one stand-in and one bot per database ----------------------------------


@dataclass
class World:
    standin: DiscordStandin
    bot: KahaniBot
    guild: Guild
    general: Channel
    alice: User  # owns the stories
    bob: User  # a joined member of the group stories
    eve: User  # in the server, in no story, manages nothing
    mod: User  # has Manage Threads

    @property
    def db(self) -> Database:
        return self.bot.db


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(module_database_url: str) -> AsyncIterator[World]:
    url = module_database_url
    async with DiscordStandin(clock=AdjustableClock()) as standin:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "general")
        moderators = standin.add_role(guild, "moderators", Permissions.MANAGE_THREADS)
        alice = standin.add_user("alice", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        eve = standin.add_user("eve", guild=guild)
        mod = standin.add_user("mod", guild=guild, roles=(moderators,))
        async with running_bot(standin, url) as running:
            yield World(standin, running.bot, guild, general, alice, bob, eve, mod)


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


@dataclass
class Seeded:
    story_id: int
    thread: Channel


async def seed_story(world: World, title: str, *, mode: str = "solo") -> Seeded:
    """Alice's story in a thread of #general (bob joined it when it is a group story)."""
    thread = world.standin.add_thread(world.general, title, owner=world.alice)
    async with world.db.transaction() as s:
        owner = await repo.get_or_create_user(s, world.alice.id, world.alice.name)
        story = await repo.create_story(s, owner, title, mode=mode, guild_id=world.guild.id,
                                        channel_id=world.general.id, thread_id=thread.id)
        await repo.add_scene(s, story.id, None, "Scene 1: the gate looms.", [repo.ChoiceSpec("Knock")])
        if mode == "group":
            bob = await repo.get_or_create_user(s, world.bob.id, world.bob.name)
            await repo.set_member(s, story.id, bob.id, MemberStatus.JOINED)
    return Seeded(story.id, thread)


async def entries(world: World, story_id: int) -> list[LoreEntry]:
    async with world.db.read() as s:
        return list(await repo.list_lore(s, story_id, status=None))


async def add_entry(world: World, seeded: Seeded, name: str, keywords: str = "", text: str = "",
                    **options: object) -> Message:
    form = await open_form(world.standin, world.alice, seeded.thread, "lore add", **options)
    rec = await world.standin.submit_modal(world.alice, form, {"name": name, "keywords": keywords, "text": text})
    return await only_answer(world.standin, rec)


async def choices(world: World, user: User, channel: Channel, command: str, typed: str = "",
                  **options: object) -> list[str]:
    rec = await world.standin.autocomplete(user, channel, command, option="entry", value=typed, **options)
    response = await rec.wait_response()
    assert response.type == 8
    return [c["value"] for c in response.data["choices"]]


# --- adding and listing ----------------------------------------------------------------------------


async def test_the_owner_adds_entries_through_the_form_and_lists_them(world: World) -> None:
    seeded = await seed_story(world, "The Iron Gate")
    form = await open_form(world.standin, world.alice, seeded.thread, "lore add")
    limits = {c["custom_id"]: c["max_length"] for c in form.text_inputs()}
    assert limits == {"name": 100, "keywords": 1240, "text": 4000}  # Discord's client enforces these
    rec = await world.standin.submit_modal(world.alice, form, {
        "name": "Iron Gate <@&1>", "keywords": "iron gate,  gatekeepers ,Iron Gate", "text": GATE})
    answer = await only_answer(world.standin, rec)
    assert rec.response is not None and rec.response.type == 5  # deferred before the database
    assert answer.content == msg.LORE_ADDED.format(name="Iron Gate <@&1>", story="The Iron Gate",
                                                   keywords="iron gate, gatekeepers")
    answer = await add_entry(world, seeded, "Mara", "Mara", "The keeper of the gate.", pinned=True)
    assert answer.content == msg.LORE_ADDED.format(name="Mara", story="The Iron Gate",
                                                   keywords="Mara") + msg.LORE_ADDED_PINNED

    gate, mara = await entries(world, seeded.story_id)
    assert (gate.name, gate.keywords, gate.content, gate.pinned) == (
        "Iron Gate <@&1>", "iron gate, gatekeepers", GATE, False)
    assert (mara.pinned, mara.status) == (True, LoreStatus.ACTIVE)

    listing = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "lore list"))
    assert listing.embeds[0]["title"] == "The Iron Gate: lore"
    assert fields(listing) == {
        "Iron Gate <@&1>": f"*Keywords:* iron gate, gatekeepers\n{GATE}",
        "Mara 📌": "*Keywords:* Mara\nThe keeper of the gate.",
    }
    assert world.general.messages == [] and seeded.thread.messages == []  # nothing for the table


async def test_a_long_list_says_how_many_are_shown_and_fits_discords_limits(world: World) -> None:
    seeded = await seed_story(world, "The Library")
    empty = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "lore list"))
    assert empty.content == msg.LORE_NONE.format(story="The Library")
    async with world.db.transaction() as s:
        for n in range(30):
            await repo.add_lore(s, seeded.story_id, f"Book {n:02} " + "T" * 80,
                                keywords=", ".join(f"word{k}x{n}" for k in range(20)), content="page " * 800)
    listing = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "lore list"))
    (embed,) = listing.embeds
    assert len(embed["fields"]) == 25 and embed["footer"]["text"] == msg.MORE_NOT_SHOWN.format(shown=25, total=30)
    assert embed["fields"][0]["name"].startswith("Book 00")
    size = len(embed["title"]) + len(embed["footer"]["text"]) + sum(
        len(f["name"]) + len(f["value"]) for f in embed["fields"])
    assert size <= EMBED_TOTAL and all(len(f["value"]) <= 1024 for f in embed["fields"])


# --- who may do what ----------------------------------------------------------------------------


async def test_someone_outside_the_story_may_not_change_its_lore_nor_see_a_solo_storys(world: World) -> None:
    group = await seed_story(world, "The Harbour", mode="group")
    await add_entry(world, group, "Harbour Guild", "guild", "Smugglers, mostly.")
    for command, options in (("lore add", {}), ("lore edit", {"entry": "Harbour Guild"}),
                             ("lore edit", {"entry": "Harbour Guild", "pinned": True}),
                             ("lore remove", {"entry": "Harbour Guild"})):
        rec = await world.standin.slash(world.eve, group.thread, command, **options)
        assert (await only_answer(world.standin, rec)).content == msg.NOT_YOUR_STORY_TO_MANAGE, command

    solo = await seed_story(world, "The Diary")
    await add_entry(world, solo, "Secret", "secret", "Alice's secret.")
    for command, options in (("lore list", {}), ("lore show", {"entry": "Secret"}), ("lore add", {}),
                             ("lore remove", {"entry": "Secret"})):
        rec = await world.standin.slash(world.eve, world.general, command, story=solo.story_id, **options)
        assert (await only_answer(world.standin, rec)).content == msg.STORY_NOT_FOUND, command
    assert world.standin.modals_for(world.eve) == []
    assert [(e.name, e.content, e.pinned) for e in await entries(world, group.story_id)] == [
        ("Harbour Guild", "Smugglers, mostly.", False)]
    assert [e.name for e in await entries(world, solo.story_id)] == ["Secret"]


async def test_a_member_of_a_group_story_reads_its_lore_and_a_moderator_edits_it(world: World) -> None:
    seeded = await seed_story(world, "The Caravan", mode="group")
    await add_entry(world, seeded, "Salt Road", "salt road, road", "The old trade route.")
    async with world.db.transaction() as s:
        await repo.edit_lore(s, seeded.story_id, "Salt Road", content="The old trade route, now bandit land.")

    listing = await only_answer(world.standin, await world.standin.slash(world.bob, seeded.thread, "lore list"))
    assert list(fields(listing)) == ["Salt Road"]
    shown = await only_answer(world.standin, await world.standin.slash(world.bob, seeded.thread, "lore show", entry="salt road"))
    assert shown.embeds[0]["description"] == "The old trade route, now bandit land."
    assert shown.components == []  # no Undo for someone who may not edit
    rec = await world.standin.slash(world.bob, seeded.thread, "lore add")
    assert (await only_answer(world.standin, rec)).content == msg.NOT_YOUR_STORY_TO_MANAGE
    assert world.standin.modals_for(world.bob) == []

    form = await open_form(world.standin, world.mod, seeded.thread, "lore edit", entry="Salt Road")
    await only_answer(world.standin, await world.standin.submit_modal(world.mod, form, {"keywords": "salt road, caravans"}))
    (road,) = await entries(world, seeded.story_id)
    assert (road.keywords, road.content) == ("salt road, caravans", "The old trade route, now bandit land.")


# --- refusals -----------------------------------------------------------------------------------


async def test_a_duplicate_name_too_many_keywords_or_over_long_text_is_refused_and_nothing_stored(
    world: World,
) -> None:
    seeded = await seed_story(world, "The Quarry")
    await add_entry(world, seeded, "Old Quarry", "quarry", "Flooded since the war.")
    cases = [
        ({"name": "OLD  quarry", "text": "Another."}, msg.LORE_NAME_TAKEN.format(name="OLD quarry")),
        ({"name": "Tools", "keywords": ",".join(f"k{n}" for n in range(21))},
         msg.LORE_TOO_MANY_KEYWORDS.format(limit=20, count=21)),
        # A client that ignores max_length still cannot store more than the limit.
        ({"name": "Kai", "text": "x" * 4001},
         msg.TEXT_TOO_LONG.format(field=msg.FIELD_LORE_TEXT, limit=4000, length=4001)),
        ({"name": "N" * 101}, msg.TEXT_TOO_LONG.format(field=msg.FIELD_LORE_NAME, limit=100, length=101)),
        ({"name": " \x00 "}, msg.TEXT_REQUIRED.format(field=msg.FIELD_LORE_NAME)),
    ]
    for values, expected in cases:
        form = await open_form(world.standin, world.alice, seeded.thread, "lore add")
        for top in form.components:
            top["component"]["max_length"] = 5000
        rec = await world.standin.submit_modal(world.alice, form, values)
        assert (await only_answer(world.standin, rec)).content == expected
    # Renaming onto another entry's name is refused too.
    await add_entry(world, seeded, "Chisel")
    form = await open_form(world.standin, world.alice, seeded.thread, "lore edit", entry="chisel")
    rec = await world.standin.submit_modal(world.alice, form, {"name": "old quarry"})
    assert (await only_answer(world.standin, rec)).content == msg.LORE_NAME_TAKEN.format(name="old quarry")
    assert [(e.name, e.content) for e in await entries(world, seeded.story_id)] == [
        ("Chisel", ""), ("Old Quarry", "Flooded since the war.")]


async def test_control_characters_typed_in_the_form_are_not_stored(world: World) -> None:
    seeded = await seed_story(world, "The Forge")
    answer = await add_entry(world, seeded, "Ha\x00mmer", "anvil\x00, fire\x07", "Hot\x00 iron.\r\nSparks.")
    assert answer.content == msg.LORE_ADDED.format(name="Hammer", story="The Forge", keywords="anvil, fire")
    (hammer,) = await entries(world, seeded.story_id)
    assert (hammer.name, hammer.keywords, hammer.content) == ("Hammer", "anvil, fire", "Hot iron.\nSparks.")


# --- editing, Undo, pinning and removing -------------------------------------------------------------


async def test_an_edit_through_the_prefilled_form_can_be_undone_from_show(world: World) -> None:
    seeded = await seed_story(world, "The Orchard")
    await add_entry(world, seeded, "Orchard", "orchard, trees", "Apple trees, old and twisted.")
    shown = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "lore show", entry="orchard"))
    assert shown.components == []  # nothing to undo yet

    form = await open_form(world.standin, world.alice, seeded.thread, "lore edit", entry="ORCHARD")
    assert form.title == msg.LORE_MODAL_EDIT.format(name="Orchard")
    assert form_values(form) == {"name": "Orchard", "keywords": "orchard, trees",
                                 "text": "Apple trees, old and twisted."}
    rec = await world.standin.submit_modal(world.alice, form, {"name": "The Orchard", "text": "Burnt stumps."})
    assert (await only_answer(world.standin, rec)).content == msg.LORE_UPDATED.format(name="The Orchard",
                                                                        keywords="orchard, trees")

    shown = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "lore show",
                                                         entry="the orchard"))
    assert shown.embeds[0]["title"] == "The Orchard" and shown.embeds[0]["description"] == "Burnt stumps."
    assert fields(shown) == {msg.LORE_FIELD_KEYWORDS: "orchard, trees", msg.LORE_FIELD_PINNED: msg.LORE_PINNED_NO}
    click = await world.standin.click(world.alice, shown, msg.LORE_UNDO_BUTTON)
    assert (await click.wait_response()).type == 6  # deferred: the shown entry is edited in place
    await world.standin.wait_until(lambda: shown.content, what="the undone entry")
    assert shown.content == msg.LORE_UNDONE.format(name="The Orchard")
    assert shown.embeds[0]["description"] == "Apple trees, old and twisted."
    (orchard,) = await entries(world, seeded.story_id)
    assert (orchard.name, orchard.content, orchard.previous_content) == (
        "The Orchard", "Apple trees, old and twisted.", "Burnt stumps.")


async def test_pinned_alone_pins_or_unpins_without_a_form(world: World) -> None:
    seeded = await seed_story(world, "The Tower")
    await add_entry(world, seeded, "Tower", "tower", "Seven floors.")
    forms = len(world.standin.modals_for(world.alice))
    answer = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "lore edit", entry="tower",
                                                          pinned=True))
    assert answer.content == msg.LORE_PINNED_NOW.format(name="Tower")
    assert [e.pinned for e in await entries(world, seeded.story_id)] == [True]
    answer = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "lore edit", entry="Tower",
                                                          pinned=False))
    assert answer.content == msg.LORE_UNPINNED_NOW.format(name="Tower")
    (tower,) = await entries(world, seeded.story_id)
    assert (tower.pinned, tower.content, tower.previous_content) == (False, "Seven floors.", None)
    assert len(world.standin.modals_for(world.alice)) == forms  # no form was opened


async def test_removing_an_entry_says_so_and_shows_what_it_said(world: World) -> None:
    seeded = await seed_story(world, "The Mill")
    await add_entry(world, seeded, "Millstone", "millstone", "It grinds at night.")
    answer = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "lore remove",
                                                          entry="millstone"))
    assert answer.content == msg.LORE_REMOVED.format(name="Millstone", story="The Mill")
    assert answer.embeds[0]["description"] == "It grinds at night."
    assert await entries(world, seeded.story_id) == []
    missing = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "lore show",
                                                           entry="Millstone"))
    assert missing.content == msg.LORE_NOT_FOUND.format(name="Millstone")


# --- autocomplete ----------------------------------------------------------------------------------


async def test_the_entry_option_autocompletes_from_the_storys_lore(world: World) -> None:
    seeded = await seed_story(world, "The Bell Tower", mode="group")
    for name in ("Bell", "Belfry", "Rope", "Great Bell"):
        await add_entry(world, seeded, name)
    # Those that start with what was typed first, then those that contain it.
    assert await choices(world, world.alice, seeded.thread, "lore edit", "bel") == ["Belfry", "Bell", "Great Bell"]
    assert await choices(world, world.bob, seeded.thread, "lore show") == ["Belfry", "Bell", "Great Bell", "Rope"]
    # Named by the story option from another channel.
    assert await choices(world, world.alice, world.general, "lore remove", "r", story=seeded.story_id) == [
        "Rope", "Belfry", "Great Bell"]
    # Someone who may not see the story, a story that does not exist, no story here: nothing.
    solo = await seed_story(world, "The Crypt")
    await add_entry(world, solo, "Bones")
    assert await choices(world, world.eve, solo.thread, "lore show") == []
    assert await choices(world, world.eve, world.general, "lore show", story=solo.story_id) == []
    assert await choices(world, world.alice, world.general, "lore show", story=2**40) == []
    assert await choices(world, world.alice, world.general, "lore show") == []
    assert await choices(world, world.alice, solo.thread, "lore show") == ["Bones"]
