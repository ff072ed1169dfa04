"""Playing a story in Discord end to end: the real KahaniBot against the Discord stand-in
and the fake LM Studio — /story new, streamed scenes, choices, Your action, variants,
failures with Retry, permissions, /story list|info|resume|end|delete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.ui import scene as ui
from core import messages as msg
from core import repository as repo
from core.models import Base, Story
from tests import harness
from tests.discord_standin import Channel, DiscordStandin, User
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import EPHEMERAL, IS_COMPONENTS_V2, InteractionRecord, Message, Revision
from tests.fakes.llm import Fault
from tests.harness import PlayWorld, ephemeral_answer, finished_scene, play_world, scripted_scene, submit_new_story
from tests.test_render import scene as prose

pytestmark = pytest.mark.asyncio(loop_scope="module")


World = PlayWorld
scene = scripted_scene
done_scene = finished_scene


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> AsyncIterator[World]:
    path = tmp_path_factory.mktemp("play") / "kahani.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with play_world(path, stories_per_user_per_hour=0) as world:  # alice starts many stories here
        yield world


@pytest.fixture(scope="module")
def standin(world: World) -> DiscordStandin:
    return world.standin


async def ephemeral(world: World, rec: InteractionRecord) -> str:
    return await ephemeral_answer(world.standin, rec)


async def wait_scene(world: World, channel: Channel, after: int = 0) -> Message:
    """The next finished scene message in ``channel`` (with its buttons), after ``after``."""
    return await harness.wait_scene(world.standin, channel, after)


async def new_story(world: World, user: User, channel: Channel, title: str, **options: object) -> Channel:
    """/story new → the modal → the story's thread (or the DM), with its first scene."""
    submitted = await submit_new_story(world.standin, user, channel, title, **options)
    text = await ephemeral(world, submitted)
    if channel.is_dm:
        return channel
    thread = await world.standin.wait_until(
        lambda: next((c for c in world.standin.channels.values() if c.is_thread and c.name == title), None),
        what="the story's thread")
    assert f"<#{thread.id}>" in text
    return thread


async def story_of(world: World, title: str) -> Story:
    async with world.db.read() as s:
        return await s.scalar(select(Story).where(Story.title == title))


# --- a story in a server thread ---------------------------------------------------------


async def test_story_new_opens_a_thread_and_streams_the_first_scene(world: World) -> None:
    world.llm.script(scene("The lighthouse door creaks open. Salt wind fills the stair."))
    thread = await new_story(world, world.alice, world.general, "The Lighthouse")
    first = await wait_scene(world, thread)

    assert first.text.startswith("The lighthouse door creaks open. Salt wind fills the stair.")
    assert "**1.** Climb the stair" in first.text and "### Choices" not in first.text
    assert len(first.history) >= 2  # it grew while the model wrote (placeholder, text…, final)
    assert all("### Choices" not in r.text for r in first.history)
    labels = [c.get("label") for c in first.component_items() if c.get("type") == 2]
    assert labels[:5] == ["1. Climb the stair", "2. Call out", "3. Light the lantern", "4. Close the door",
                          "Your action"]
    assert {"Regenerate", "Branch", "Continue", "Narrate", "Favourite"} <= set(labels)
    story = await story_of(world, "The Lighthouse")
    assert (story.mode, story.thread_id, story.guild_id) == ("solo", thread.id, world.guild.id)
    async with world.db.read() as s:
        tip = await repo.tip(s, story.id)
        assert await repo.get_variant_messages(s, tip.variant.id) == [(thread.id, first.id)]


async def test_a_choice_streams_the_next_scene_and_greys_out_the_old_buttons(world: World) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "The Lighthouse")
    first = await wait_scene(world, thread)
    world.llm.script(scene("You climb. The keeper's logbook lies open on the landing.",
                           "Read it", "Pocket it", "Climb on", "Listen"))
    rec = await world.standin.click(world.alice, first, "1. Climb the stair")
    response = await rec.wait_response()
    assert response.type in (6, 7)  # the click updates the old scene (deferred, or at once)
    second = await wait_scene(world, thread, after=1)
    assert second.text.startswith("-# → Climb the stair\n")
    assert "The keeper's logbook lies open" in second.text
    old = [c for c in first.component_items()]
    assert old and all(c.get("disabled") for c in old)
    assert world.llm.chat_requests[-1]["messages"][-1]["content"].startswith("The player chooses: Climb the stair")


async def test_your_action_goes_through_a_modal(world: World) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "The Lighthouse")
    second = await wait_scene(world, thread, after=1)
    rec = await world.standin.click(world.alice, second, "Your action")
    assert (await rec.wait_response()).type == 9  # a modal
    [modal] = [m for m in world.standin.modals_for(world.alice) if not m.submitted]
    world.llm.script(scene("You tear out the last page. It shows a map.", "Follow it", "Burn it", "Hide it", "Wait"))
    await world.standin.submit_modal(world.alice, modal, {"What do you do?": "I tear out the last page"})
    third = await wait_scene(world, thread, after=2)
    assert third.text.startswith("-# → I tear out the last page\n")
    last = world.llm.chat_requests[-1]["messages"][-1]["content"]
    assert last.startswith("The player does this: I tear out the last page")


async def test_regenerate_adds_a_version_and_the_select_switches_back(world: World) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "The Lighthouse")
    third = await wait_scene(world, thread, after=2)
    world.llm.script(scene("You tear out the last page. It is blank.", "Look again", "Shrug", "Keep it", "Leave"))
    rec = await world.standin.click(world.alice, third, "Regenerate")
    assert (await rec.wait_response()).type == 7
    await world.standin.wait_until(lambda: "It is blank." in third.text and done_scene(third),
                                   what="the regenerated scene in place")
    assert third.text.startswith("-# → I tear out the last page\n")
    select_ = next(c for c in third.component_items() if c.get("custom_id", "").startswith("kahani:v1:variant:"))
    options = select_["options"]
    assert [o["label"].split()[1] for o in options] == ["regenerate", "original"]
    original = options[1]["value"]

    rec = await world.standin.select(world.alice, third, [original], custom_id=select_["custom_id"])
    await rec.wait_response()
    await world.standin.wait_until(lambda: "It shows a map." in third.text and done_scene(third),
                                   what="the original version shown again")
    story = await story_of(world, "The Lighthouse")
    async with world.db.read() as s:
        assert (await repo.tip(s, story.id)).variant.id == int(original)


async def test_acting_on_an_old_scene_is_refused_and_nothing_changes(world: World) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "The Lighthouse")
    second = await wait_scene(world, thread, after=1)
    # The second scene's buttons are disabled for users; a crafted click (an old client)
    # still reaches the bot, which re-checks in the database.
    story = await story_of(world, "The Lighthouse")
    async with world.db.read() as s:
        before = len(await repo.active_path(s, story.id))
        path = await repo.active_path(s, story.id)
    stale = world.standin.post_message(thread, world.standin.bot_user, type(second.current)(
        content="old", components=[{"type": 1, "components": [
            {"type": 2, "style": 1, "label": "stale", "custom_id": f"kahani:v1:choose:{path[0].variant.id}:1"}]}]))
    rec = await world.standin.click(world.alice, stale, "stale")
    assert msg.NOT_LAST_SCENE in await ephemeral(world, rec)
    async with world.db.read() as s:
        assert len(await repo.active_path(s, story.id)) == before


async def test_a_malformed_button_gets_a_polite_answer(world: World) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "The Lighthouse")
    stale = world.standin.post_message(thread, world.standin.bot_user, type(thread.messages[0].current)(
        content="odd", components=[{"type": 1, "components": [
            {"type": 2, "style": 1, "label": "odd", "custom_id": "kahani:v1:choose:abc:9"}]}]))
    rec = await world.standin.click(world.alice, stale, "odd")
    assert msg.DISCORD_STALE_COMPONENT in await ephemeral(world, rec)


async def test_choices_of_any_length_are_shown_in_full_and_the_scene_gets_its_buttons(world: World) -> None:
    # A model (or a player's action asking for it) may write 700 characters per choice.
    long_choices = [f"Choice {n}: " + " ".join(f"w{n}x{i}" for i in range(120))[:690] for n in range(1, 5)]
    world.llm.script(scripted_scene("The tide turns.", *long_choices))
    thread = await new_story(world, world.alice, world.general, "Long Choices", mode="solo")
    last = await wait_scene(world, thread)  # the message with the buttons: no 400 left it without
    shown = "\n".join(m.text for m in thread.messages if m.author is world.standin.bot_user)
    for text in long_choices:
        assert text in shown  # in full, in the text
    labels = [c["label"] for c in last.component_items() if c.get("custom_id", "").startswith("kahani:v1:choose:")]
    assert len(labels) == 4 and all(len(label) <= 80 for label in labels)
    # 2,800 characters of choices and the scene fit one card (4,000 characters; the stand-in refuses more)
    assert [m for m in thread.messages if m.flags & IS_COMPONENTS_V2] == [last]


async def test_someone_else_cannot_play_a_solo_story(world: World) -> None:
    world.llm.script(scene("A quiet beach at dawn."))
    thread = await new_story(world, world.alice, world.general, "Alone", mode="solo")
    first = await wait_scene(world, thread)
    rec = await world.standin.click(world.bob, first, "1. Climb the stair")
    assert msg.NOT_YOUR_STORY in await ephemeral(world, rec)
    story = await story_of(world, "Alone")
    async with world.db.read() as s:
        assert len(await repo.active_path(s, story.id)) == 1


async def test_scene_text_never_pings(world: World) -> None:
    world.llm.script(scene("@everyone look! <@" + str(world.bob.id) + "> and <@&1234> wave. @here too."))
    thread = await new_story(world, world.alice, world.general, "Pings")
    first = await wait_scene(world, thread)
    assert "@everyone" in first.text
    assert world.standin.pings == []


# --- scene cards (Components V2) ---------------------------------------------------------

CHOICES_LIST = "**1.** Climb the stair\n**2.** Call out\n**3.** Light the lantern\n**4.** Close the door"


def without_writing(revision: Revision) -> str:
    return revision.text.removesuffix("\n\n" + msg.WRITING)


async def scene_recorded(world: World) -> None:
    """Wait until the scenes being written are shown and recorded (the player's tasks end)."""
    playing = [t for t in world.bot._background if t.get_coro().__qualname__ == "ScenePlayer.play"]
    await asyncio.wait_for(asyncio.gather(*playing), 10)


async def test_a_3900_character_scene_streams_into_one_card_with_its_choices_and_live_buttons(world: World) -> None:
    text = prose(3900)
    world.llm.script(scene(text))
    thread = await new_story(world, world.bob, world.general, "Long Card", mode="solo", length="long")
    card = await wait_scene(world, thread)
    assert [m for m in thread.messages if m.flags & IS_COMPONENTS_V2] == [card]  # one message
    assert card.content == "" and card.text == text + "\n\n" + CHOICES_LIST
    streamed = [without_writing(r) for r in card.history[:-1]]
    assert len(streamed) >= 3 and all(text.startswith(t) for t in streamed if t != msg.WRITING)  # no word cut
    assert all(r.flags & IS_COMPONENTS_V2 for r in card.history)  # a card from its first send
    (container,) = card.components
    story = await story_of(world, "Long Card")
    assert container["type"] == 17 and container["accent_color"] == ui.accent(story.id)
    live = [c for c in card.component_items() if not c.get("disabled")]
    assert [c.get("label") for c in live][:5] == ["1. Climb the stair", "2. Call out", "3. Light the lantern",
                                                   "4. Close the door", "Your action"]
    world.llm.script(scene("You climb into the light."))
    await (await world.standin.click(world.bob, card, "1. Climb the stair")).wait_response()
    await wait_scene(world, thread, after=1)
    assert card.text == text + "\n\n" + CHOICES_LIST and all(c.get("disabled") for c in card.component_items())


async def test_a_scene_longer_than_a_card_splits_at_paragraphs_with_the_buttons_on_the_last(world: World) -> None:
    text = prose(4300)  # within a long scene's max_tokens (the fake LLM keeps to them)
    world.llm.script(scene(text))
    thread = await new_story(world, world.bob, world.general, "Two Cards", mode="solo", length="long")
    last = await wait_scene(world, thread)
    await scene_recorded(world)
    cards = [m for m in thread.messages if m.flags & IS_COMPONENTS_V2]
    assert len(cards) == 2 and cards[-1] is last and cards[0].component_items() == []
    assert "\n\n".join(m.text for m in cards) == text + "\n\n" + CHOICES_LIST  # at a paragraph: nothing cut
    assert last.find_component("1. Climb the stair") and last.find_component("Regenerate")
    story = await story_of(world, "Two Cards")
    async with world.db.read() as s:
        tip = await repo.tip(s, story.id)
        assert await repo.get_variant_messages(s, tip.variant.id) == [(thread.id, m.id) for m in cards]


def as_before_the_cards(message: Message) -> None:
    """Make ``message`` what the bot posted before the scene cards: its text as content,
    the same buttons in classic action rows, no Components V2 flag."""
    (container,) = message.components
    rows = [c for c in container["components"] if c["type"] == 1]
    message.history[:] = [Revision(content=message.text, components=rows)]


async def test_a_scene_message_from_before_the_cards_still_plays(world: World) -> None:
    world.llm.script(scene("The old lamp gutters."))
    thread = await new_story(world, world.bob, world.general, "Old Lamp", mode="solo")
    old = await wait_scene(world, thread)
    as_before_the_cards(old)
    assert not old.flags & IS_COMPONENTS_V2 and old.content.startswith("The old lamp gutters.")
    world.llm.script(scene("You call out; the lamp answers with a flicker."))
    rec = await world.standin.click(world.bob, old, "2. Call out")
    assert (await rec.wait_response()).type == 6
    second = await wait_scene(world, thread, after=1)
    assert second.flags & IS_COMPONENTS_V2 and second.text.startswith("-# → Call out\nYou call out")
    # the old message is greyed out, and stays as it was: content and classic rows
    assert not old.flags & IS_COMPONENTS_V2 and old.content.startswith("The old lamp gutters.")
    assert old.component_items() and all(c.get("disabled") for c in old.component_items())

    # Regenerate on an old message streams the new version into it: it becomes a card.
    as_before_the_cards(second)
    world.llm.script(scene("You call out; nothing answers."))
    await (await world.standin.click(world.bob, second, "Regenerate")).wait_response()
    await world.standin.wait_until(lambda: "nothing answers" in second.text and done_scene(second),
                                   what="the new version in the old message")
    assert second.flags & IS_COMPONENTS_V2 and second.content == ""
    assert second.text.startswith("-# → Call out\nYou call out; nothing answers.")


# --- failures -----------------------------------------------------------------------------


async def test_a_storyteller_failure_offers_retry_and_leaves_the_story_unchanged(world: World) -> None:
    world.llm.script(scene("Fog rolls over the harbour."))
    thread = await new_story(world, world.alice, world.general, "Harbour")
    first = await wait_scene(world, thread)
    story = await story_of(world, "Harbour")
    async with world.db.read() as s:
        before = len(await repo.active_path(s, story.id))
    world.llm.script(fault=Fault.HTTP_500)
    await (await world.standin.click(world.alice, first, "2. Call out")).wait_response()
    failed = await world.standin.wait_until(
        lambda: next((m for m in thread.messages if "internal error" in m.text), None), what="the failure")
    assert failed.text.startswith("-# → Call out")
    retry = next(c for c in failed.component_items() if c.get("label") == "Retry")
    assert retry["custom_id"].startswith("kahani:v1:retry:choose:")
    async with world.db.read() as s:
        assert len(await repo.active_path(s, story.id)) == before

    world.llm.script(scene("Your voice echoes back from the water."))
    await (await world.standin.click(world.alice, failed, "Retry")).wait_response()
    await world.standin.wait_until(lambda: "echoes back" in failed.text and done_scene(failed),
                                   what="the retried scene")
    async with world.db.read() as s:
        assert len(await repo.active_path(s, story.id)) == before + 1


async def test_a_failed_regenerate_restores_the_scene_and_says_why_privately(world: World) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "Harbour")
    scenes = [m for m in thread.messages if done_scene(m)]
    last = scenes[-1]
    text_before = last.text
    world.llm.script(fault=Fault.CONTEXT_OVERFLOW)
    await (await world.standin.click(world.alice, last, "Regenerate")).wait_response()
    note = await world.standin.wait_for_ephemeral(world.alice, lambda m: "context window" in m.text)
    assert any(c.get("label") == "Retry" for c in note.component_items())
    await world.standin.wait_until(lambda: last.text == text_before and done_scene(last),
                                   what="the scene shown as it was")


# --- DMs and the other /story commands ----------------------------------------------------


async def test_a_solo_story_in_dms(world: World) -> None:
    dm = await world.standin.dm(world.alice)
    world.llm.script(scene("Your cabin rocks on the night sea."))
    await new_story(world, world.alice, dm, "Night Sea")
    first = await wait_scene(world, dm)
    assert first.text.startswith("Your cabin rocks on the night sea.")
    story = await story_of(world, "Night Sea")
    assert (story.mode, story.guild_id, story.channel_id) == ("solo", None, dm.id)


async def test_story_list_info_and_end(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "story list")
    listing = (await rec.wait_response()).data["embeds"][0]["description"]
    assert "The Lighthouse" in listing and "Harbour" in listing
    thread = next(c for c in world.standin.channels.values() if c.name == "Harbour")
    rec = await world.standin.slash(world.alice, thread, "story info")
    await rec.wait_response()
    await world.standin.wait_until(lambda: rec.followups, what="the info")
    description = rec.followups[-1].embeds[0]["description"]
    assert "**Scenes:** 2" in description and "% of" in description
    rec = await world.standin.slash(world.bob, thread, "story end")  # a solo story: bob may not even see it
    assert msg.STORY_NOT_FOUND in await ephemeral(world, rec)
    rec = await world.standin.slash(world.alice, thread, "story end")
    await rec.wait_response()
    assert (await story_of(world, "Harbour")).status == "ended"
    # Nothing in an ended story's thread looks playable: it is archived and locked.
    await world.standin.wait_until(lambda: thread.archived and thread.locked, what="the thread archived and locked")


async def test_story_resume_reposts_the_latest_scene_with_live_buttons(world: World) -> None:
    thread = next(c for c in world.standin.channels.values() if c.name == "The Lighthouse")
    count = len([m for m in thread.messages if done_scene(m)])
    rec = await world.standin.slash(world.alice, thread, "story resume")
    await rec.wait_response()
    again = await wait_scene(world, thread, after=count)
    assert "It shows a map." in again.text


async def test_story_delete_asks_first_then_removes_every_row_and_retires_the_thread(world: World) -> None:
    world.llm.script(scene("Short-lived."))
    thread = await new_story(world, world.alice, world.general, "Doomed")
    await wait_scene(world, thread)
    story = await story_of(world, "Doomed")
    rec = await world.standin.slash(world.alice, thread, "story delete")
    answer = (await rec.wait_response())
    assert answer.data["flags"] & EPHEMERAL
    confirm = rec.original
    click = await world.standin.click(world.alice, confirm, "Delete it for good")
    await click.wait_response()
    # The bot may not delete threads here (no Manage Threads): its own thread is archived and locked.
    await world.standin.wait_until(lambda: thread.archived and thread.locked, what="the thread archived")
    async with world.db.read() as s:
        assert await s.get(Story, story.id) is None
        for table in ("scenes", "chapters", "story_members"):
            count = await s.scalar(select(func.count()).select_from(Base.metadata.tables[table])
                                   .where(Base.metadata.tables[table].c.story_id == story.id))
            assert count == 0, table


async def test_a_channel_without_thread_permission_gets_a_clear_message_and_no_story(world: World) -> None:
    from tests.discord_standin import Permissions

    locked = world.standin.add_channel(world.guild, "locked", deny_bot=Permissions.CREATE_PUBLIC_THREADS)
    rec = await world.standin.slash(world.alice, locked, "story new")
    await rec.wait_response()
    [modal] = [m for m in world.standin.modals_for(world.alice) if not m.submitted]
    submitted = await world.standin.submit_modal(world.alice, modal, {"Title": "Nowhere"})
    text = await ephemeral(world, submitted)
    assert "can't create a thread" in text
    assert await story_of(world, "Nowhere") is None


async def test_a_second_click_while_the_scene_is_written_is_refused(world: World) -> None:
    world.llm.script(scene("A gull circles the mast."))
    thread = await new_story(world, world.alice, world.general, "Gulls", mode="solo")
    first = await wait_scene(world, thread)
    world.llm.script(scene(" ".join(["The wind howls."] * 60)), token_rate=60)
    await (await world.standin.click(world.alice, first, "1. Climb the stair")).wait_response()
    await world.standin.wait_until(lambda: any("The wind howls." in m.text for m in thread.messages),
                                   what="the next scene streaming")
    # An old client still shows the buttons: a second click on the same scene.
    story = await story_of(world, "Gulls")
    async with world.db.read() as s:
        [root] = await repo.active_path(s, story.id)
    stale = world.standin.post_message(thread, world.standin.bot_user, type(first.current)(
        content="old", components=[{"type": 1, "components": [
            {"type": 2, "style": 1, "label": "again", "custom_id": f"kahani:v1:choose:{root.variant.id}:2"}]}]))
    rec = await world.standin.click(world.alice, stale, "again")
    assert msg.STILL_WRITING in await ephemeral(world, rec)
    await world.standin.wait_until(
        lambda: any("The wind howls." in m.text and done_scene(m) for m in thread.messages),
        timeout=10, what="the scene finished")
    async with world.db.read() as s:
        assert len(await repo.active_path(s, story.id)) == 2  # one scene written, not two


async def test_a_story_whose_thread_was_deleted_resumes_in_a_new_thread(world: World) -> None:
    world.llm.script(scene("Moss covers the old gate."))
    thread = await new_story(world, world.alice, world.general, "Moss", mode="solo")
    await wait_scene(world, thread)
    story = await story_of(world, "Moss")
    await world.standin.moderator_delete_thread(thread)
    rec = await world.standin.slash(world.alice, world.general, "story resume", story=story.id)
    await rec.wait_response()
    moved = await world.standin.wait_until(
        lambda: next((c for c in world.standin.channels.values()
                      if c.is_thread and c.name == "Moss" and c.id != thread.id), None),
        what="a new thread")
    again = await wait_scene(world, moved)
    assert again.text.startswith("Moss covers the old gate.")
    assert (await story_of(world, "Moss")).thread_id == moved.id


async def test_a_thread_deleted_mid_scene_loses_nothing(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.llm.script(scene("A bell tolls."))
    thread = await new_story(world, world.alice, world.general, "Bells", mode="solo")
    first = await wait_scene(world, thread)
    world.llm.script(scene(" ".join(["The bell tolls again."] * 60)), token_rate=60)
    await (await world.standin.click(world.alice, first, "1. Climb the stair")).wait_response()
    await world.standin.wait_until(lambda: any("tolls again" in m.text for m in thread.all_messages),
                                   what="the next scene streaming")
    writing = [t for t in world.bot._background if t.get_coro().__qualname__ == "ScenePlayer.play"]
    await world.standin.moderator_delete_thread(thread)
    await asyncio.wait_for(asyncio.gather(*writing), 15)  # the generation runs to its end
    story = await story_of(world, "Bells")
    async with world.db.read() as s:
        assert len(await repo.active_path(s, story.id)) == 2  # the scene is stored all the same
        assert await repo.get_lease(s, story.id) is None
    assert "unexpected error" not in caplog.text


async def test_a_scene_whose_message_discord_refuses_gives_the_clicked_scene_its_buttons_back(world: World) -> None:
    """#18: when Discord refuses the next scene's message (here a 403), nothing is written
    and the scene that was clicked is playable again: its buttons come back."""
    world.llm.script(scene("The fog horn sounds twice."))
    thread = await new_story(world, world.alice, world.general, "Refused Post", mode="solo")
    first = await wait_scene(world, thread)
    requests = len(world.llm.chat_requests)
    refused = world.standin.fail_next("POST", "/channels/{channel_id}/messages", status=403,
                                      when=lambda req: req.params["channel_id"] == str(thread.id))
    await (await world.standin.click(world.alice, first, "1. Climb the stair")).wait_response()
    await world.standin.wait_until(lambda: refused.served == 1, what="the refused post")

    def live(message: Message) -> bool:
        return any(c.get("custom_id", "").startswith("kahani:v1:choose:") and not c.get("disabled")
                   for c in message.component_items())

    await world.standin.wait_until(lambda: live(first), what="the clicked scene's buttons back")
    assert len(world.llm.chat_requests) == requests  # nothing was generated
    world.llm.script(scene("The horn falls silent."))
    await (await world.standin.click(world.alice, first, "1. Climb the stair")).wait_response()
    second = await wait_scene(world, thread, after=1)
    assert "The horn falls silent." in second.text


async def test_favourite_shows_its_state_on_the_scene(world: World) -> None:
    world.llm.script(scene("Gulls wheel over the mast."))
    thread = await new_story(world, world.alice, world.general, "Starred", mode="solo")
    first = await wait_scene(world, thread)

    def star(message: Message) -> tuple[object, object]:
        button = message.find_component("Favourite")
        return button.get("style"), (button.get("emoji") or {}).get("name")

    assert star(first) == (2, "☆")
    assert (await ephemeral(world, await world.standin.click(world.alice, first, "Favourite"))) == msg.FAVOURITE_ON
    await world.standin.wait_until(lambda: star(first) == (3, "⭐"), what="a filled, green star")
    assert (await ephemeral(world, await world.standin.click(world.alice, first, "Favourite"))) == msg.FAVOURITE_OFF
    await world.standin.wait_until(lambda: star(first) == (2, "☆"), what="an empty star again")
