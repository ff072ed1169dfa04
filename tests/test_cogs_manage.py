"""/character, /chapter and /settings end to end: the real KahaniBot against the Discord
stand-in and the fake LLM. Stories and scenes are seeded through core.repository (the
/story new flow is tested elsewhere); everything else goes through Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.app import KahaniBot
from bot.ui.common import EMBED_TOTAL, PrivateView, fitted_embed, shorten
from core import messages as msg
from core import repository as repo
from core.db import Database
from core.models import Character, utcnow
from core.models import User as StoredUser
from core.prompts import CONTENT_NOTES_RULE
from core.repository import jobs
from tests.discord_standin import AdjustableClock, Channel, DiscordStandin, Guild, Permissions, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import Message
from tests.fakes.llm import FakeLLM, Fault
from tests.harness import fields, form_values, only_answer, open_form, running_bot, wait_scene

pytestmark = pytest.mark.asyncio(loop_scope="module")

SUMMARY = "Mara reached the lighthouse, found the keeper's log and learned the light had been put out on purpose."


# --- the module's world: one stand-in, one fake LLM, one bot on a fresh SQLite database --------


@dataclass
class World:
    standin: DiscordStandin
    bot: KahaniBot
    llm: FakeLLM
    guild: Guild
    general: Channel
    alice: User  # owns the stories
    bob: User  # plays in the server, manages nothing
    mod: User  # has Manage Threads

    @property
    def db(self) -> Database:
        return self.bot.db


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[World]:
    path = tmp_path_factory.mktemp("manage") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with DiscordStandin(clock=AdjustableClock()) as standin, FakeLLM() as llm:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "general")
        moderators = standin.add_role(guild, "moderators", Permissions.MANAGE_THREADS)
        alice = standin.add_user("alice", guild=guild)
        bob = standin.add_user("bob", guild=guild)
        mod = standin.add_user("mod", guild=guild, roles=(moderators,))
        # alice owns every story the module seeds: more than the hourly limit of new stories.
        async with running_bot(standin, f"sqlite+aiosqlite:///{path}", llm_base_url=llm.base_url,
                               stories_per_user_per_hour=0) as running:
            yield World(standin, running.bot, llm, guild, general, alice, bob, mod)


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


@dataclass
class Seeded:
    story_id: int
    thread: Channel


async def seed_story(world: World, title: str, *, scenes: int = 2, mode: str = "solo") -> Seeded:
    """Alice's story in a thread of #general, with a few scenes (what /story new makes)."""
    thread = world.standin.add_thread(world.general, title, owner=world.alice)
    async with world.db.transaction() as s:
        owner = await repo.get_or_create_user(s, world.alice.id, world.alice.name)
        story = await repo.create_story(s, owner, title, mode=mode, guild_id=world.guild.id,
                                        channel_id=world.general.id, thread_id=thread.id)
        parent = None
        for n in range(1, scenes + 1):
            _, variant = await repo.add_scene(s, story.id, parent, f"Scene {n}: the waves rise.",
                                              [repo.ChoiceSpec("Go on")])
            parent = variant.id
    return Seeded(story.id, thread)


async def cast(world: World, story_id: int) -> list[Character]:
    async with world.db.read() as s:
        return list(await repo.list_characters(s, story_id))


async def add_character(world: World, seeded: Seeded, name: str, description: str = "", personality: str = "",
                        **options: object) -> Message:
    form = await open_form(world.standin, world.alice, seeded.thread, "character add", **options)
    rec = await world.standin.submit_modal(world.alice, form, {"name": name, "description": description,
                                                               "personality": personality})
    return await only_answer(world.standin, rec)


# --- /character ----------------------------------------------------------------------------


async def test_a_character_added_through_the_form_is_listed_with_its_details(world: World) -> None:
    seeded = await seed_story(world, "The Lighthouse")
    answer = await add_character(world, seeded, "Mira <@&1>", "The keeper's daughter.", "Dry, fearless.",
                                 voice="af_bella")
    # No Kokoro in this world: the voice is kept, and the answer says it could not be checked.
    assert answer.content == msg.CHARACTER_ADDED.format(name="Mira <@&1>", story="The Lighthouse") + " " + \
        msg.VOICE_UNCHECKED.format(voice="af_bella")
    (mira,) = await cast(world, seeded.story_id)
    assert (mira.name, mira.description, mira.personality, mira.voice) == (
        "Mira <@&1>", "The keeper's daughter.", "Dry, fearless.", "af_bella")

    listing = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "character list"))
    assert listing.embeds[0]["title"] == "The Lighthouse: characters"
    assert fields(listing) == {"Mira <@&1>": "The keeper's daughter.\n*Personality:* Dry, fearless.\n*Voice:* af_bella"}
    assert world.general.messages == [] and seeded.thread.messages == []  # nothing for the table


async def test_the_edit_form_is_prefilled_and_saves_a_rename(world: World) -> None:
    seeded = await seed_story(world, "The Orchard")
    await add_character(world, seeded, "Tomas", "A gardener.", "Patient.")
    form = await open_form(world.standin, world.alice, seeded.thread, "character edit", name="tomas", voice="bm_george")
    assert form_values(form) == {"name": "Tomas", "description": "A gardener.", "personality": "Patient."}
    rec = await world.standin.submit_modal(world.alice, form, {"name": "Old Tomas", "personality": "Impatient now."})
    assert (await only_answer(world.standin, rec)).content == msg.CHARACTER_UPDATED.format(name="Old Tomas") + " " + \
        msg.VOICE_UNCHECKED.format(voice="bm_george")
    (tomas,) = await cast(world, seeded.story_id)
    assert (tomas.name, tomas.description, tomas.personality, tomas.voice) == (
        "Old Tomas", "A gardener.", "Impatient now.", "bm_george")


async def test_removing_a_character_asks_first(world: World) -> None:
    seeded = await seed_story(world, "The Mill")
    await add_character(world, seeded, "Ada")
    question = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "character remove", name="ada"))
    assert question.content == msg.CHARACTER_REMOVE_CONFIRM.format(name="Ada", story="The Mill")

    kept = await world.standin.click(world.alice, question, msg.CHARACTER_CANCEL_BUTTON)
    assert (await kept.wait_response()).type == 7
    assert question.content == msg.CHARACTER_KEPT and question.components == []
    assert [c.name for c in await cast(world, seeded.story_id)] == ["Ada"]

    question = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "character remove", name="Ada"))
    removed = await world.standin.click(world.alice, question, msg.CHARACTER_REMOVE_BUTTON)
    assert (await removed.wait_response()).type == 7
    assert question.content == msg.CHARACTER_REMOVED.format(name="Ada") and question.components == []
    assert await cast(world, seeded.story_id) == []


async def test_buttons_left_unused_are_taken_off_the_reply_when_they_time_out(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PrivateView, "TIMEOUT", 0.2)
    seeded = await seed_story(world, "The Well")
    await add_character(world, seeded, "Pell")
    async with world.db.transaction() as s:
        tip = await repo.tip(s, seeded.story_id)
        await repo.open_chapter(s, seeded.story_id, tip.variant.id, summary=SUMMARY)
    remove = await world.standin.slash(world.alice, seeded.thread, "character remove", name="Pell")
    question = await only_answer(world.standin, remove)
    summary = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter summary"))
    assert question.components and summary.components
    await world.standin.wait_until(lambda: not question.components and not summary.components,
                                   what="the buttons to be taken off")
    assert question.content == msg.CHARACTER_REMOVE_CONFIRM.format(name="Pell", story="The Well")
    assert [c.name for c in await cast(world, seeded.story_id)] == ["Pell"]


async def test_someone_who_may_not_manage_the_story_is_refused_and_nothing_changes(world: World) -> None:
    seeded = await seed_story(world, "The Harbour", mode="group")
    await add_character(world, seeded, "Ines", "A smuggler.")
    for command, options in (("character add", {}), ("character edit", {"name": "Ines"}),
                             ("character remove", {"name": "Ines"}), ("chapter new", {})):
        rec = await world.standin.slash(world.bob, seeded.thread, command, **options)
        assert (await only_answer(world.standin, rec)).content == msg.NOT_YOUR_STORY_TO_MANAGE, command
    assert world.standin.modals_for(world.bob) == []
    assert [(c.name, c.description) for c in await cast(world, seeded.story_id)] == [("Ines", "A smuggler.")]
    assert len(await world.bot.engine.story_so_far(seeded.story_id)) == 1
    # A player of the group story still sees the cast; a moderator may change it.
    listing = await only_answer(world.standin, await world.standin.slash(world.bob, seeded.thread, "character list"))
    assert list(fields(listing)) == ["Ines"]
    form = await open_form(world.standin, world.mod, seeded.thread, "character edit", name="Ines")
    await only_answer(world.standin, await world.standin.submit_modal(world.mod, form, {"description": "A reformed smuggler."}))
    assert [c.description for c in await cast(world, seeded.story_id)] == ["A reformed smuggler."]


async def test_a_form_submitted_after_the_story_was_deleted_gets_a_clear_message(world: World) -> None:
    seeded = await seed_story(world, "The Ferry")
    form = await open_form(world.standin, world.alice, seeded.thread, "character add")
    async with world.db.transaction() as s:
        await repo.delete_story(s, seeded.story_id)
    rec = await world.standin.submit_modal(world.alice, form, {"name": "Nobody"})
    assert (await only_answer(world.standin, rec)).content == msg.STORY_NOT_FOUND
    rec = await world.standin.slash(world.alice, seeded.thread, "character list")
    assert (await only_answer(world.standin, rec)).content == msg.NO_STORY_HERE


async def test_blank_duplicate_or_over_long_form_values_get_a_clear_message(world: World) -> None:
    seeded = await seed_story(world, "The Quarry")
    await add_character(world, seeded, "Lena")
    form = await open_form(world.standin, world.alice, seeded.thread, "character add")
    limits = {c["custom_id"]: c["max_length"] for c in form.text_inputs()}
    assert limits == {"name": 100, "description": 1000, "personality": 1000}  # Discord's client enforces these

    cases = [
        ({"name": "   "}, msg.TEXT_REQUIRED.format(field=msg.FIELD_NAME)),
        ({"name": "LENA"}, msg.CHARACTER_NAME_TAKEN.format(name="LENA")),
        # A client that ignores max_length still cannot store more than the limit.
        ({"name": "Kai", "description": "x" * 1001},
         msg.TEXT_TOO_LONG.format(field=msg.FIELD_DESCRIPTION, limit=1000, length=1001)),
    ]
    for values, expected in cases:
        form = await open_form(world.standin, world.alice, seeded.thread, "character add")
        for top in form.components:
            top["component"]["max_length"] = 4000
        rec = await world.standin.submit_modal(world.alice, form, values)
        assert (await only_answer(world.standin, rec)).content == expected
    rec = await world.standin.slash(world.alice, seeded.thread, "character add", voice="v" * 201)
    assert (await only_answer(world.standin, rec)).content == msg.TEXT_TOO_LONG.format(field=msg.FIELD_VOICE, limit=200, length=201)
    assert [c.name for c in await cast(world, seeded.story_id)] == ["Lena"]


async def test_the_character_option_autocompletes_from_the_story_cast(world: World) -> None:
    seeded = await seed_story(world, "The Bell Tower")
    for name in ("Mira", "Mikhail", "Oskar"):
        await add_character(world, seeded, name)
    rec = await world.standin.autocomplete(world.alice, seeded.thread, "character edit", option="name", value="Mi")
    response = await rec.wait_response()
    assert response.type == 8
    assert [c["name"] for c in response.data["choices"]] == ["Mikhail", "Mira"]
    # Named by the story option from another channel, and for someone who may not see it: nothing.
    rec = await world.standin.autocomplete(world.alice, world.general, "character remove", option="name", value="",
                                           story=seeded.story_id)
    assert [c["value"] for c in (await rec.wait_response()).data["choices"]] == ["Mikhail", "Mira", "Oskar"]
    rec = await world.standin.autocomplete(world.bob, seeded.thread, "character edit", option="name", value="")
    assert (await rec.wait_response()).data["choices"] == []


# --- /settings -----------------------------------------------------------------------------


async def test_settings_set_then_show(world: World) -> None:
    shown = await only_answer(world.standin, await world.standin.slash(world.bob, world.general, "settings show"))
    assert shown.embeds[0]["description"] == msg.SETTINGS_BODY.format(
        scene_length="medium", voice=msg.SETTINGS_DEFAULT_VOICE, speed=1.0, auto_narrate=msg.SETTINGS_OFF)

    rec = await world.standin.slash(world.bob, world.general, "settings set", scene_length="long",
                                    voice="af_bella", speed=1.25, auto_narrate=True)
    assert (await only_answer(world.standin, rec)).content == msg.SETTINGS_SAVED + " " + \
        msg.VOICE_UNCHECKED.format(voice="af_bella")
    dm = await world.standin.dm(world.bob)  # per user: the same settings in a DM
    shown = await only_answer(world.standin, await world.standin.slash(world.bob, dm, "settings show"))
    assert shown.embeds[0]["description"] == msg.SETTINGS_BODY.format(
        scene_length="long", voice="af_bella", speed=1.25, auto_narrate=msg.SETTINGS_ON)

    for options, expected in (({}, msg.SETTINGS_NOTHING_GIVEN),
                              ({"speed": 3.0}, msg.SETTINGS_BAD_SPEED.format(speed=3.0))):
        answer = await only_answer(world.standin, await world.standin.slash(world.bob, world.general, "settings set", **options))
        assert answer.content == expected
    await only_answer(world.standin, await world.standin.slash(world.bob, world.general, "settings set", voice="Default"))
    async with world.db.transaction() as s:
        user = await repo.get_or_create_user(s, world.bob.id, "bob")
        settings = await repo.get_user_settings(s, user.id)
        assert (settings.scene_length, settings.tts_voice, settings.tts_speed, settings.auto_narrate) == (
            "long", None, 1.25, True)


# --- /chapter ------------------------------------------------------------------------------


async def test_chapter_new_stores_the_summary_the_model_wrote_and_the_list_shows_it(world: World) -> None:
    seeded = await seed_story(world, "The Lighthouse Keeper")
    world.llm.script(SUMMARY)
    rec = await world.standin.slash(world.alice, seeded.thread, "chapter new", title="The Bridge")
    answer = await only_answer(world.standin, rec)
    assert rec.response.type == 5  # deferred before the database was touched
    assert answer.content == msg.CHAPTER_CLOSED.format(closed=1, name="Chapter 2: The Bridge")
    await world.bot.summaries.drain()  # the worker writes the summary in the background
    chapters = await world.bot.engine.story_so_far(seeded.story_id)
    assert [(c.number, c.title, text) for c, text in chapters] == [
        (1, "Chapter 1", SUMMARY), (2, "The Bridge", None)]

    listing = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter list"))
    assert fields(listing) == {"Chapter 1": SUMMARY, "Chapter 2: The Bridge (current)": msg.CHAPTER_NO_SUMMARY}
    again = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter new"))
    assert again.content == msg.CHAPTER_ALREADY_NEW


async def test_chapter_new_with_the_storyteller_down_opens_the_chapter_and_retries_the_summary(
    world: World,
) -> None:
    seeded = await seed_story(world, "The Storm")
    world.llm.script(fault=Fault.HTTP_500)
    answer = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter new"))
    assert answer.content == msg.CHAPTER_CLOSED.format(closed=1, name="Chapter 2")
    await world.bot.summaries.drain()
    assert [(c.number, text) for c, text in await world.bot.engine.story_so_far(seeded.story_id)] == [
        (1, None), (2, None)]
    async with world.db.read() as s:
        [job] = await jobs.pending_jobs(s, seeded.story_id)
        assert (job.state, job.attempts) == ("due", 1) and job.due_at > utcnow()  # tried again later
        assert await repo.get_lease(s, seeded.story_id) is None  # the next scene is not "still writing"
    pending = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter summary"))
    assert pending.content == msg.CHAPTER_SUMMARY_PENDING.format(number=1)
    listing = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter list"))
    assert fields(listing)["Chapter 1"] == msg.SUMMARY_PENDING


async def test_a_summary_is_edited_through_the_form_by_the_owner_only(world: World) -> None:
    seeded = await seed_story(world, "The Caravan", mode="group")
    world.llm.script(SUMMARY)
    await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter new"))
    await world.bot.summaries.drain()

    onlooker = await only_answer(world.standin, await world.standin.slash(world.bob, seeded.thread, "chapter summary"))
    assert onlooker.embeds[0]["description"] == SUMMARY and onlooker.components == []

    shown = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter summary", chapter=1))
    assert shown.embeds[0]["title"] == "Chapter 1" and shown.embeds[0]["description"] == SUMMARY
    click = await world.standin.click(world.alice, shown, msg.SUMMARY_EDIT_BUTTON)
    assert (await click.wait_response()).type == 9
    form = world.standin.modals_for(world.alice)[-1]
    assert form_values(form) == {"summary": SUMMARY}

    blank = await world.standin.submit_modal(world.alice, form, {"summary": "   "})
    assert (await only_answer(world.standin, blank)).content == msg.TEXT_REQUIRED.format(field=msg.FIELD_SUMMARY)
    click = await world.standin.click(world.alice, shown, msg.SUMMARY_EDIT_BUTTON)
    await click.wait_response()
    edited = "Mara and the keeper sailed at dawn; the light burns again."
    rec = await world.standin.submit_modal(world.alice, world.standin.modals_for(world.alice)[-1], {"summary": edited})
    assert (await rec.wait_response()).type == 7  # the shown summary is updated in place
    assert shown.content == msg.SUMMARY_SAVED and shown.embeds[0]["description"] == edited
    chapters = await world.bot.engine.story_so_far(seeded.story_id)
    assert chapters[0][1] == edited

    missing = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter summary", chapter=9))
    assert missing.content == msg.CHAPTER_UNKNOWN.format(number=9)


async def long_campaign(world: World, title: str, chapters: int) -> Seeded:
    """A story of ``chapters`` closed chapters, one scene each, with long titles and summaries."""
    seeded = await seed_story(world, title, scenes=0)
    async with world.db.transaction() as s:
        parent = None
        for n in range(1, chapters + 1):
            _, variant = await repo.add_scene(s, seeded.story_id, parent, f"Scene {n}.")
            await repo.open_chapter(s, seeded.story_id, variant.id, summary=f"Summary {n}. " + "word " * 600,
                                    title="T" * 200)
            parent = variant.id
    return seeded


def embed_size(embed: dict) -> int:
    return len(embed["title"]) + len(embed.get("description") or "") + len(embed["footer"]["text"]) + sum(
        len(f["name"]) + len(f["value"]) for f in embed["fields"])


async def test_the_chapter_list_stays_within_discords_embed_limits(world: World) -> None:
    seeded = await long_campaign(world, "The Long Road", 30)
    listing = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "chapter list"))
    (embed,) = listing.embeds
    assert len(embed["fields"]) == 25 and embed["footer"]["text"] == msg.MORE_NOT_SHOWN.format(shown=25, total=31)
    assert embed["fields"][0]["value"].startswith("Summary 7. word") and embed["fields"][0]["value"].endswith("…")
    assert 5000 < embed_size(embed) <= EMBED_TOTAL


async def test_story_info_of_a_long_campaign_stays_within_discords_embed_limits(world: World) -> None:
    seeded = await long_campaign(world, "The Longer Road", 40)
    async with world.db.transaction() as s:
        story = await repo.get_story(s, seeded.story_id)
        story.premise, story.genre, story.tone = "premise " * 200, "g" * 100, "t" * 100
    info = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "story info"))
    (embed,) = info.embeds
    assert "**Scenes:** 40" in embed["description"] and "Context used" in embed["description"]
    assert embed["footer"]["text"] == msg.MORE_NOT_SHOWN.format(shown=25, total=41)
    assert embed["fields"][-2]["value"].startswith("Summary 40. word")  # the latest chapters are shown
    assert 5000 < embed_size(embed) <= EMBED_TOTAL


async def test_embed_fitting_keeps_short_values_whole_and_shortens_long_ones_at_a_word() -> None:
    embed = fitted_embed("t", [("short", "kept whole"), ("long", "lorem ipsum " * 1000)])
    assert embed.fields[0].value == "kept whole"
    assert len(embed.fields[1].value) <= 1024 and embed.fields[1].value.endswith("ipsum…")
    assert shorten("one two three", 9) == "one two…" and shorten("fits", 4) == "fits"


# --- the same on PostgreSQL (and SQLite) ---------------------------------------------------------


async def test_cast_and_chapters_on_each_database(database_url: str) -> None:
    async with DiscordStandin() as standin, FakeLLM() as llm:
        guild = standin.add_guild("Elsewhere")
        general = standin.add_channel(guild, "general")
        alice = standin.add_user("alice", guild=guild)
        async with running_bot(standin, database_url, llm_base_url=llm.base_url) as running:
            world = World(standin, running.bot, llm, guild, general, alice, alice, alice)
            seeded = await seed_story(world, "The Observatory")
            await add_character(world, seeded, "Mara", "An astronomer.")
            listing = await only_answer(world.standin, await standin.slash(alice, seeded.thread, "character list"))
            assert fields(listing) == {"Mara": "An astronomer."}
            llm.script(SUMMARY)
            await only_answer(world.standin, await standin.slash(alice, seeded.thread, "chapter new"))
            await running.bot.summaries.drain()
            listing = await only_answer(world.standin, await standin.slash(alice, seeded.thread, "chapter list"))
            assert fields(listing)["Chapter 1"] == SUMMARY
        standin.assert_clean()


async def test_a_new_story_form_with_nul_characters_is_stored_without_them_on_each_database(
    database_url: str,
) -> None:
    """PostgreSQL refuses NUL in text (SQLite keeps it): the form's text is made storable
    before anything is stored, and the story's row comes before its thread."""
    async with DiscordStandin() as standin, FakeLLM() as llm:
        guild = standin.add_guild("Elsewhere")
        general = standin.add_channel(guild, "general")
        alice = standin.add_user("alice", guild=guild)
        async with running_bot(standin, database_url, llm_base_url=llm.base_url) as running:
            rec = await standin.slash(alice, general, "story new", mode="solo")
            await rec.wait_response()
            [modal] = standin.modals_for(alice)
            submitted = await standin.submit_modal(alice, modal, {
                "Title": "The\x00 Null Isle", "Premise: how does it start?": "A keeper\x00 vanished.\x07"})
            await submitted.wait_response()
            await standin.wait_until(lambda: submitted.followups, what="the answer")
            assert submitted.followups[-1].content.startswith("**The Null Isle** begins")
            async with running.bot.db.read() as s:
                [story] = await repo.list_stories(s)
                assert (story.title, story.premise) == ("The Null Isle", "A keeper vanished.")
                assert story.thread_id is not None
            assert standin.channels[story.thread_id].name == "The Null Isle"
        standin.assert_clean()


async def test_autocompletes_read_and_write_nothing(world: World) -> None:
    """Someone typing into an option is not a player yet: their keystrokes store nothing."""
    seeded = await seed_story(world, "The Quiet Keys", mode="group")
    await add_character(world, seeded, "Mara", "An astronomer.")
    newcomer = world.standin.add_user("newcomer", guild=world.guild)
    async with world.db.read() as s:
        users = await s.scalar(select(func.count()).select_from(StoredUser))
    for command, option in (("character edit", "name"), ("chapter summary", "chapter"), ("lore show", "entry")):
        rec = await world.standin.autocomplete(newcomer, seeded.thread, command, option=option, value="")
        choices = (await rec.wait_response()).data["choices"]
        if command == "character edit":
            assert [c["value"] for c in choices] == ["Mara"]  # a public group story: the server may read it
    async with world.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(StoredUser)) == users


# --- /story read and /story tree -------------------------------------------------------------


async def test_a_50_scene_story_reads_back_page_by_page_and_by_chapter(world: World) -> None:
    thread = world.standin.add_thread(world.general, "The Long Tide", owner=world.alice)
    texts = [f"Scene {n} begins. " + " ".join(f"tide{n}w{i}" for i in range(180)) + "." for n in range(1, 51)]
    async with world.db.transaction() as s:
        owner = await repo.get_or_create_user(s, world.alice.id, world.alice.name)
        story = await repo.create_story(s, owner, "The Long Tide", guild_id=world.guild.id,
                                        channel_id=world.general.id, thread_id=thread.id)
        parent = None
        for n, text in enumerate(texts, 1):
            _, variant = await repo.add_scene(s, story.id, parent, text, [repo.ChoiceSpec("Go on")],
                                              instruction="Go on" if parent else "")
            parent = variant.id
            if n in (20, 35):
                await repo.open_chapter(s, story.id, variant.id, summary="So far.", title="")
    answer = await only_answer(world.standin, await world.standin.slash(world.alice, thread, "story read"))
    assert answer.embeds[0]["footer"]["text"].startswith("Page 1 of ")
    pages = [answer.embeds[0]["description"]]
    while not answer.find_component("▶").get("disabled"):
        rec = await world.standin.click(world.alice, answer, "▶")
        assert (await rec.wait_response()).type == 7  # the same private message turns its page
        pages.append(answer.embeds[0]["description"])
    read = "\n".join(pages)
    assert all(len(p) <= 4096 for p in pages) and len(pages) >= 10
    positions = [read.index(text) for text in texts]  # every scene, whole, in order
    assert positions == sorted(positions)
    assert read.count("-# Scene ") == 50 and "-# Scene 2 · → Go on" in read

    # Jump to chapter 3 from the menu, and open the reader at chapter 2 with the option.
    rec = await world.standin.select(world.alice, answer, ["3"])
    await rec.wait_response()
    assert answer.embeds[0]["description"].startswith("__**Chapter 3**__\n\n-# Scene 36")
    at_two = await only_answer(world.standin, await world.standin.slash(world.alice, thread, "story read", chapter=2))
    assert at_two.embeds[0]["description"].startswith("__**Chapter 2**__\n\n-# Scene 21")
    nowhere = await only_answer(world.standin, await world.standin.slash(world.alice, thread, "story read", chapter=9))
    assert nowhere.content == msg.READER_NO_CHAPTER.format(number=9, count=3)
    world.standin.assert_clean()


async def test_the_tree_shows_a_rewound_story_and_its_other_versions(world: World) -> None:
    seeded = await seed_story(world, "The Forked Path", scenes=6)
    async with world.db.transaction() as s:
        path = await repo.active_path(s, seeded.story_id)
        await repo.rewind(s, seeded.story_id, path[2].scene_id)
    answer = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "story tree"))
    text = answer.embeds[0]["description"]
    assert text.startswith("**3** scenes on the current path · 6 scenes")
    assert msg.TREE_REWOUND.format(count=3) in text and msg.TREE_NO_FORKS in text
    async with world.db.transaction() as s:
        await repo.add_scene(s, seeded.story_id, path[2].variant.id, "A new fourth scene.", [repo.ChoiceSpec("On")])
    answer = await only_answer(world.standin, await world.standin.slash(world.alice, seeded.thread, "story tree"))
    assert "Scene **4**: 2 versions, version 2 shown; also v1 (original, 2 more scene(s))" in answer.embeds[0]["description"]
    # Someone who may not see a solo story learns nothing about it.
    refused = await only_answer(world.standin, await world.standin.slash(world.bob, seeded.thread, "story tree"))
    assert "Forked" not in refused.content and not refused.embeds


# --- /story edit ------------------------------------------------------------------------------


async def test_story_edit_changes_the_details_and_the_thread_follows_the_title(world: World) -> None:
    seeded = await seed_story(world, "The Salt Road")
    seeded.thread.owner_id = world.standin.bot_user.id  # as /story new makes it: the bot may rename it
    form = await open_form(world.standin, world.alice, seeded.thread, "story edit")
    assert [c.get("value", "") for c in form.text_inputs()][:1] == ["The Salt Road"]  # filled in as it is
    rec = await world.standin.submit_modal(world.alice, form, {
        "Title": "The Drowned\x00 Road", "Genre": "gothic", "Tone": "bleak",
        "World / setting": "A flooded coast.", "Premise: how does it start?": "The road is under water."})
    answer = await only_answer(world.standin, rec)
    assert answer.content.startswith("Saved: **The Drowned Road**")
    async with world.db.read() as s:
        story = await repo.get_story(s, seeded.story_id)
    assert (story.title, story.genre, story.tone, story.world_setting, story.premise) == (
        "The Drowned Road", "gothic", "bleak", "A flooded coast.", "The road is under water.")
    assert seeded.thread.name == "The Drowned Road"

    # A client that ignores the form's limits changes nothing; nor can bob open the form.
    form = await open_form(world.standin, world.alice, seeded.thread, "story edit")
    for top in form.components:
        (top.get("component") or top["components"][0])["max_length"] = 4000
    rec = await world.standin.submit_modal(world.alice, form, {"Title": "T" * 300})
    assert (await only_answer(world.standin, rec)).content == msg.TEXT_TOO_LONG.format(
        field=msg.FIELD_STORY_TITLE, limit=100, length=300)
    refused = await world.standin.slash(world.bob, seeded.thread, "story edit")
    assert (await refused.wait_response()).type == 4 and not world.standin.modals_for(world.bob)
    async with world.db.read() as s:
        assert (await repo.get_story(s, seeded.story_id)).title == "The Drowned Road"

    # Where the bot may not rename the thread, the story is renamed and the answer says so.
    seeded.thread.owner_id = world.alice.id
    form = await open_form(world.standin, world.alice, seeded.thread, "story edit")
    rec = await world.standin.submit_modal(world.alice, form, {"Title": "The Dry Road"})
    assert msg.STORY_EDIT_NOT_RENAMED in (await only_answer(world.standin, rec)).content
    assert seeded.thread.name == "The Drowned Road"
    world.standin.assert_clean()


# --- /server ----------------------------------------------------------------------------------


async def test_server_content_notes_steer_every_story_and_only_moderators_set_them(world: World) -> None:
    rec = await world.standin.slash(world.bob, world.general, "server content-notes", notes="anything goes")
    assert (await only_answer(world.standin, rec)).content == msg.SERVER_MODERATORS_ONLY
    rec = await world.standin.slash(world.bob, world.general, "server content-notes")
    assert (await only_answer(world.standin, rec)).content == msg.SERVER_NOTES_NONE
    rec = await world.standin.slash(world.mod, world.general, "server content-notes",
                                    notes="No spiders.\x00 No   graphic gore.")
    assert (await only_answer(world.standin, rec)).content == msg.SERVER_NOTES_SET.format(
        notes="No spiders. No graphic gore.")
    rec = await world.standin.slash(world.mod, world.general, "server default-mode", mode="solo")
    assert (await only_answer(world.standin, rec)).content == msg.SERVER_MODE_SET.format(mode="solo")

    # A new story here (no mode chosen): solo, and its storyteller is told the notes.
    world.llm.script("The cellar is dry and quiet.\n\n### Choices\n1. Go up\n2. Wait\n3. Listen\n4. Light a match")
    form = await open_form(world.standin, world.alice, world.general, "story new")  # no mode: the server's
    await only_answer(world.standin, await world.standin.submit_modal(world.alice, form, {"Title": "The Dry Cellar"}))
    thread = await world.standin.wait_until(
        lambda: next((c for c in world.standin.channels.values() if c.name == "The Dry Cellar"), None),
        what="the story's thread")
    await wait_scene(world.standin, thread)
    system = world.llm.chat_requests[-1]["messages"][0]["content"]
    assert CONTENT_NOTES_RULE.format(notes="No spiders. No graphic gore.") in system
    async with world.db.read() as s:
        story = next(st for st in await repo.list_stories(s) if st.title == "The Dry Cellar")
    assert story.mode == "solo"
    info = await only_answer(world.standin, await world.standin.slash(world.alice, thread, "story info"))
    assert msg.INFO_CONTENT_NOTES.format(notes="No spiders. No graphic gore.") in info.embeds[0]["description"]

    # Cleared: the next prompt has no content notes; in DMs there is no server to set.
    rec = await world.standin.slash(world.mod, world.general, "server content-notes", clear=True)
    assert (await only_answer(world.standin, rec)).content == msg.SERVER_NOTES_CLEARED
    rec = await world.standin.slash(world.mod, world.general, "server default-mode", mode="group")
    await only_answer(world.standin, rec)
    dm = world.standin.dm_channel(world.alice)
    rec = await world.standin.slash(world.alice, dm, "server content-notes", notes="x")
    assert (await only_answer(world.standin, rec)).content == msg.SERVER_ONLY
    world.standin.assert_clean()
