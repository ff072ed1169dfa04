"""bot/ui/render.py: live scene messages, with the real discord.py client against the stand-in.

The first half drives SceneStreamer through a real client (one stand-in and one client
for the module): scene cards (Components V2), and classic content messages where both
layouts are compared; the stand-in's checks (autouse ``discord_rules``) fail a test on
any 429 or broken rule (a card over 40 components or 4,000 characters among them). The
second half tests the budget arithmetic and the splitting with a fake clock and plain
strings.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import discord
import pytest
import pytest_asyncio

from bot.ui import scene as ui
from bot.ui.render import (
    CARD_LIMIT,
    CARDS,
    CLASSIC,
    FAILED_LINE,
    FINAL_TRIES,
    WRITING,
    WRITING_LINE,
    ChannelBudget,
    GlobalBudget,
    Layout,
    RateWindow,
    SceneStreamer,
    StreamScheduler,
    Urgency,
    card,
    post_paced,
    show_text,
    split_text,
)
from core.choices import Choice
from tests.discord_standin import Channel, DiscordStandin, Guild, Message, Permissions, run_client
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)
from tests.discord_standin.models import IS_COMPONENTS_V2, Revision

e2e = pytest.mark.asyncio(loop_scope="module")  # one stand-in and one client for the module

PIECE = re.compile(r"\s*\S{1,6}|\s+")  # word pieces with their leading space, as tests/fakes/llm.py streams
EDIT = ("PATCH", "/channels/{channel_id}/messages/{message_id}")
CREATE = ("POST", "/channels/{channel_id}/messages")
SENTENCES = (
    "The lantern swung in the wind and threw long shadows over the deck.",
    "Mira counted the crates twice, then a third time, because the numbers would not agree.",
    "Somewhere below, a door banged shut and the ship groaned like an old animal.",
    "Nobody aboard admitted to hearing the singing, but everyone had stopped whistling.",
    "She wrote the tally in the margin of the log and underlined it with a shaking hand.",
    "The captain's boots sounded on the ladder, slow and deliberate, one rung at a time.",
)


def scene(chars: int, *, paragraph: int = 420) -> str:
    """Deterministic prose of about ``chars`` characters, in paragraphs of about ``paragraph``."""
    paragraphs, current, n = [], [], 0
    while sum(map(len, paragraphs)) + 2 * len(paragraphs) < chars:
        current.append(SENTENCES[n % len(SENTENCES)])
        n += 1
        if len(" ".join(current)) >= paragraph:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(paragraphs)[:chars].rstrip() + "."


@dataclass
class World:
    standin: DiscordStandin
    client: discord.Client
    guild: Guild
    bodies: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)  # (kind, channel id, body)
    shown: list[tuple[float, int, str]] = field(default_factory=list)  # (monotonic, channel id, content)
    counter: int = 0

    def channel(self, name: str = "scene", **options: Any) -> Channel:
        self.counter += 1
        return self.standin.add_channel(self.guild, f"{name}-{self.counter}", **options)

    def messageable(self, channel: Channel) -> discord.abc.Messageable:
        found = self.client.get_channel(channel.id)
        return found if found is not None else self.client.get_partial_messageable(channel.id)

    async def placeholder(self, channel: Channel, layout: Layout = CARDS) -> discord.Message:
        """A "the storyteller is writing…" message, as the bot posts it before a scene."""
        if layout.cards:
            return await self.messageable(channel).send(view=card([], writing=WRITING_LINE))
        return await self.messageable(channel).send("✍️ The storyteller is writing…")


def written(revision: Revision | Message) -> str:
    """The scene text a message (or one of its revisions) shows, without the "still
    writing" marker of either layout."""
    return revision.text.removesuffix("\n\n" + WRITING_LINE).removesuffix(WRITING)


def writing(revision: Revision | Message) -> bool:
    return revision.text != written(revision)


def _record_bodies(standin: DiscordStandin, bodies: list[tuple[str, int, dict[str, Any]]]) -> None:
    """Keep the JSON body of every message create and edit (the stand-in keeps contents only)."""
    for kind, route in (("edit", EDIT), ("create", CREATE)):
        handler = standin.rest.routes[route]

        async def recording(req: Any, handler: Any = handler, kind: str = kind) -> Any:
            bodies.append((kind, int(req.params["channel_id"]), dict(req.body or {})))
            return await handler(req)

        standin.rest.routes[route] = recording


def _time_updates(standin: DiscordStandin, shown: list[tuple[float, int, str]]) -> None:
    """Time every message post and edit the stand-in applies: the moment users see it."""
    post, edit = standin.post_message, standin.edit_message

    def timed_post(channel: Channel, *args: Any, **kw: Any) -> Message:
        message = post(channel, *args, **kw)
        shown.append((time.monotonic(), channel.id, written(message)))
        return message

    def timed_edit(message: Message, *args: Any) -> Message:
        edited = edit(message, *args)
        shown.append((time.monotonic(), message.channel.id, written(message)))
        return edited

    standin.post_message = timed_post  # type: ignore[method-assign]
    standin.edit_message = timed_edit  # type: ignore[method-assign]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world() -> AsyncIterator[World]:
    async with DiscordStandin() as standin:
        guild = standin.add_guild("Library")
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.1)

        async def no_identify_pause(shard_id: int | None, *, initial: bool = False) -> None:
            pass

        client.before_identify_hook = no_identify_pause  # type: ignore[method-assign]
        world = World(standin, client, guild)
        _record_bodies(standin, world.bodies)
        _time_updates(standin, world.shown)
        async with run_client(client, standin):
            yield world
        standin.assert_clean()


@pytest.fixture
def standin(world: World) -> DiscordStandin:
    return world.standin


def pieces(text: str) -> list[str]:
    found = PIECE.findall(text)
    assert "".join(found) == text
    return found


async def stream(streamer: SceneStreamer, text: str, *, rate: float = 30.0) -> list[float]:
    """Feed ``text`` in word pieces at ``rate`` per second (absolute pacing); returns feed times."""
    start = time.monotonic()
    times = []
    for n, piece in enumerate(pieces(text)):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        times.append(time.monotonic())
        await streamer.feed(piece)
    return times


# ----------------------------------------------------------------- streaming ---

@dataclass
class Timing:
    first: float  # first token → first 20 characters visible
    final: float  # last token → final text visible
    gaps: list[float]  # between visible updates


def timing(world: World, channel: Channel, feeds: list[float]) -> Timing:
    updates = [(at, content) for at, cid, content in world.shown if cid == channel.id and at >= feeds[0]]
    first = next(at for at, content in updates if len(content) >= 20)
    times = [at for at, _ in updates]
    return Timing(first - feeds[0], times[-1] - feeds[-1], [b - a for a, b in zip(times, times[1:])])


def assert_paced(t: Timing) -> None:
    # docs/architecture.md's streaming targets are 0.35 / 0.3 / 1.05 / 1.5 s (the benchmark measures them);
    # the test allows for a loaded machine (five streams on 2 busy cores once took 0.71 s for the
    # first words) without letting a blocked edit (≥ 1 s late) pass.
    assert t.first <= 0.9, t
    assert t.final <= 0.9, t
    assert statistics.median(t.gaps) <= 1.1 and max(t.gaps) <= 1.9, t


@e2e
@pytest.mark.parametrize("layout", [CARDS, CLASSIC], ids=["card", "classic"])
async def test_a_scene_grows_in_one_message_at_about_one_edit_a_second_and_ends_exact(world: World,
                                                                                     layout: Layout) -> None:
    channel = world.channel()
    first = await world.placeholder(channel, layout)
    text = scene(900)
    streamer = SceneStreamer(world.messageable(channel), first_message=first, layout=layout)
    feeds = await stream(streamer, text)
    messages = await streamer.finish(text)
    await streamer.aclose()
    assert_paced(timing(world, channel, feeds))
    (message,) = channel.messages
    assert [m.id for m in messages] == [message.id] and streamer.error is None
    assert bool(message.flags & IS_COMPONENTS_V2) is layout.cards
    assert message.text == text
    growing = message.history[1:-1]
    assert len(growing) >= 4 and all(writing(r) for r in growing)
    streamed = [written(r) for r in growing]
    assert all(text.startswith(c) for c in streamed) and streamed == sorted(streamed, key=len)


@e2e
async def test_a_3900_character_scene_streams_into_one_card_and_no_word_is_cut(world: World) -> None:
    channel = world.channel()
    text = scene(3900)
    streamer = SceneStreamer(world.messageable(channel), first_message=await world.placeholder(channel),
                             accent=ui.accent(7))
    feeds = await stream(streamer, text, rate=240)
    view = ui.scene_view(11, 12, [Choice("Open the door"), Choice("Wait")], [])
    messages = await streamer.finish(text, view=view, footer=ui.choices_footer([Choice("Open the door"),
                                                                                Choice("Wait")]))
    await streamer.aclose()
    (message,) = channel.messages
    assert [m.id for m in messages] == [message.id] and message.flags & IS_COMPONENTS_V2
    assert message.text == text + "\n\n**1.** Open the door\n**2.** Wait"
    assert all(text.startswith(written(r)) for r in message.history[1:-1])  # every update a prefix: no cut
    (container,) = message.components
    assert container["type"] == 17 and container["accent_color"] == ui.accent(7)
    assert message.find_component("1. Open the door") and message.find_component("Regenerate")
    assert len(feeds) > 100


@e2e
async def test_a_long_scene_continues_in_cards_split_at_paragraphs(world: World) -> None:
    channel = world.channel()
    text = scene(9000)
    streamer = SceneStreamer(world.messageable(channel), first_message=await world.placeholder(channel))
    await stream(streamer, text, rate=900)
    messages = await streamer.finish(text)
    await streamer.aclose()
    texts = [m.text for m in channel.messages]
    assert [m.id for m in messages] == [m.id for m in channel.messages] and len(texts) == 3
    assert "\n\n".join(texts) == text  # every boundary is a paragraph break, nothing cut or lost
    assert all(len(t) <= CARD_LIMIT and t == t.strip() for t in texts)
    assert all(m.flags & IS_COMPONENTS_V2 for m in channel.messages)
    for message in channel.messages[:-1]:  # a full message was final while the next one streamed
        assert message.history[-1].text == message.text and not writing(message)


@e2e
async def test_a_card_closed_while_the_scene_streams_is_not_edited_again_by_the_final_text(world: World) -> None:
    """Its final text went out when it closed: the final edit spends the window on the
    last card alone (an extra edit there made the final text wait for the next window)."""
    channel = world.channel()
    text = scene(4400)
    streamer = SceneStreamer(world.messageable(channel), first_message=await world.placeholder(channel))
    await stream(streamer, text[:4100], rate=900)  # past the first card's room: it closes
    await world.standin.wait_until(lambda: len(channel.messages) == 2 and not writing(channel.messages[0]),
                                   what="the first card closed")
    await stream(streamer, text[4100:], rate=900)
    await streamer.finish(text)
    await streamer.aclose()
    first, second = channel.messages
    assert "\n\n".join([first.text, second.text]) == text
    assert [r.text for r in first.history].count(first.text) == 1


@e2e
async def test_model_text_never_pings(world: World) -> None:
    channel = world.channel()
    text = "Hey @everyone, <@123> and <@&456> and @here: the dragon wakes. " * 3
    streamer = SceneStreamer(world.messageable(channel))  # no placeholder: the first text is a new message
    await stream(streamer, text, rate=120)
    await streamer.fail("The storyteller stopped <@123>.")
    await streamer.aclose()
    bodies = [body for _, cid, body in world.bodies if cid == channel.id]
    assert len(bodies) >= 2 and {kind for kind, cid, _ in world.bodies if cid == channel.id} == {"create", "edit"}
    assert all(body.get("allowed_mentions") == {"parse": []} for body in bodies), bodies


@e2e
async def test_finish_puts_the_final_text_footer_and_view_on_the_last_message(world: World) -> None:
    channel = world.channel()
    streamed = scene(4300) + "\n\n### Cho"  # the engine trims what the model wrote after the scene
    final = scene(4300)
    streamer = SceneStreamer(world.messageable(channel), header="**Scene 4**\n",
                             first_message=await world.placeholder(channel))
    await stream(streamer, streamed, rate=900)
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Open the door", custom_id="test:render:choice:1"))
    messages = await streamer.finish(final, view=view, footer="**1.** Open the door")
    await streamer.aclose()
    first, last = channel.messages
    assert first.text.startswith("**Scene 4**\n") and last.text.endswith("\n\n**1.** Open the door")
    body = first.text.removeprefix("**Scene 4**\n") + "\n\n" + last.text.removesuffix("\n\n**1.** Open the door")
    assert body == final
    assert first.component_items() == [] and last.find_component("Open the door")
    assert [m.id for m in messages] == [first.id, last.id]


@e2e
async def test_a_footer_that_does_not_fit_beside_the_text_and_the_reserve_gets_a_card_of_its_own(
        world: World) -> None:
    channel = world.channel()
    text, footer = scene(3500), "**1.** Open the door\n**2.** Wait"
    shown = await show_text(world.messageable(channel), [], text, footer=footer)
    assert len(shown) == 1 and channel.messages[0].text == text + "\n\n" + footer
    shown = await show_text(world.messageable(channel), shown, text, footer=footer, reserve=ui.TALLY_ROOM)
    assert [m.text for m in channel.messages] == [text, footer]  # room left for a vote's tally


@e2e
async def test_fail_keeps_what_was_written_and_adds_the_reason_and_retry(world: World) -> None:
    channel = world.channel()
    text = scene(300)
    streamer = SceneStreamer(world.messageable(channel), first_message=await world.placeholder(channel))
    await stream(streamer, text, rate=120)
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Retry", custom_id="test:render:retry"))
    messages = await streamer.fail("The storyteller stopped writing.", view=view)
    await streamer.aclose()
    (message,) = channel.messages
    assert message.text == text + "\n\n" + FAILED_LINE.format(reason="The storyteller stopped writing.")
    assert message.find_component("Retry") and [m.id for m in messages] == [message.id]


@e2e
async def test_fail_before_any_text_replaces_the_placeholder(world: World) -> None:
    channel = world.channel()
    streamer = SceneStreamer(world.messageable(channel), first_message=await world.placeholder(channel))
    await streamer.fail("The storyteller is not reachable.")
    (message,) = channel.messages
    assert message.text == FAILED_LINE.format(reason="The storyteller is not reachable.")


@e2e
async def test_a_message_from_before_the_cards_becomes_a_card_when_a_scene_streams_into_it(world: World) -> None:
    channel = world.channel()
    old = await world.placeholder(channel, CLASSIC)  # content, no flag
    streamer = SceneStreamer(world.messageable(channel), first_message=old)
    text = scene(400)
    await stream(streamer, text, rate=200)
    await streamer.finish(text)
    (message,) = channel.messages
    assert message.flags & IS_COMPONENTS_V2 and message.content == "" and message.text == text
    assert not message.history[0].flags & IS_COMPONENTS_V2


@e2e
async def test_a_message_deleted_by_a_moderator_mid_stream_stops_the_stream_quietly(world: World) -> None:
    channel = world.channel()
    streamer = SceneStreamer(world.messageable(channel), first_message=await world.placeholder(channel))
    text = scene(600)
    half = len(pieces(text)) // 2
    await stream(streamer, "".join(pieces(text)[:half]), rate=60)
    await world.standin.moderator_delete_message(channel.messages[0])
    await stream(streamer, "".join(pieces(text)[half:]), rate=60)
    messages = await streamer.finish(text)
    await streamer.aclose()
    assert isinstance(streamer.error, discord.NotFound) and messages == []
    assert channel.messages == []


@e2e
async def test_a_deleted_channel_or_missing_permission_stops_without_raising(world: World) -> None:
    denied = world.channel(deny_bot=Permissions.SEND_MESSAGES)
    streamer = SceneStreamer(world.messageable(denied))
    await stream(streamer, scene(200), rate=200)
    assert await streamer.finish(scene(200)) == []
    assert isinstance(streamer.error, discord.Forbidden) and denied.messages == []

    gone = world.channel()
    streamer = SceneStreamer(world.messageable(gone), first_message=await world.placeholder(gone))
    await stream(streamer, scene(200), rate=100)
    world.standin.delete_channel(gone)
    await stream(streamer, " And then silence.", rate=100)
    assert await streamer.fail("gone") == []  # nothing exists any more
    assert isinstance(streamer.error, discord.NotFound) and streamer.error.code == 10003


@e2e
async def test_a_transient_server_error_is_retried_once(world: World) -> None:
    channel = world.channel()
    streamer = SceneStreamer(world.messageable(channel), first_message=await world.placeholder(channel))
    world.standin.fail_next(*EDIT, status=503)  # discord.py itself only retries 500/502/504/524
    text = scene(200)
    await stream(streamer, text, rate=200)
    await streamer.finish(text)
    assert streamer.error is None and channel.messages[0].text == text


@e2e
async def test_a_final_text_discord_keeps_failing_is_tried_three_times_then_given_up(world: World) -> None:
    """The caller is told (``gave_up``), and what still exists is returned: it shows the
    text another way (bot/player.py posts the scene again)."""
    channel = world.channel()
    placeholder = await world.placeholder(channel)
    streamer = SceneStreamer(world.messageable(channel), first_message=placeholder)
    await stream(streamer, "The first words.", rate=200)
    refused = world.standin.fail_next(*EDIT, times=10, status=503)
    try:
        messages = await streamer.finish(scene(200))
    finally:
        refused.times = 0
    assert refused.served == FINAL_TRIES and streamer.gave_up
    assert isinstance(streamer.error, discord.DiscordServerError)
    assert [m.id for m in messages] == [placeholder.id] and channel.messages[0].text != scene(200)


@e2e
async def test_five_streams_in_five_channels_each_meet_the_limits(world: World) -> None:
    channels = [world.channel() for _ in range(5)]
    texts = [scene(650 + 40 * n) for n in range(5)]

    async def one(channel: Channel, text: str) -> list[float]:
        streamer = SceneStreamer(world.messageable(channel), first_message=await world.placeholder(channel))
        feeds = await stream(streamer, text)
        await streamer.finish(text)
        await streamer.aclose()
        return feeds

    all_feeds = await asyncio.gather(*(one(c, t) for c, t in zip(channels, texts)))
    for channel, text, feeds in zip(channels, texts, all_feeds):
        assert channel.messages[0].text == text
        assert_paced(timing(world, channel, feeds))


@e2e
async def test_under_a_tight_global_budget_every_stream_keeps_updating_and_finals_go_first(world: World) -> None:
    scheduler = StreamScheduler(global_limit=5)  # 8 streams want ~8 requests/s
    channels = [world.channel() for _ in range(8)]
    texts = [scene(250 + 60 * n) for n in range(8)]
    done: dict[int, tuple[float, float]] = {}

    async def one(channel: Channel, text: str) -> None:
        streamer = SceneStreamer(world.messageable(channel), first_message=await world.placeholder(channel),
                                 scheduler=scheduler)
        await stream(streamer, text)
        last_token = time.monotonic()
        await streamer.finish(text)
        done[channel.id] = (last_token, time.monotonic())

    await asyncio.gather(*(one(c, t) for c, t in zip(channels, texts)))
    for channel, text in zip(channels, texts):
        assert channel.messages[0].text == text
        updates = [at for at, cid, _ in world.shown if cid == channel.id][1:]  # after the placeholder
        gaps = [b - a for a, b in zip(updates, updates[1:])]
        assert max(gaps) <= 8 / 4 + 1.5, gaps  # one round (streams / (budget − 1 kept for finals)) + finals
        last_token, _ = done[channel.id]
        assert updates[-1] - last_token <= 0.5  # the final edit jumped the queue


@e2e
async def test_show_text_switches_a_variant_in_place_adding_or_deleting_the_tail(world: World) -> None:
    channel = world.channel()
    long, short = scene(6000), scene(700)
    messageable = world.messageable(channel)
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Regenerate", custom_id="test:render:regen"))
    shown = await show_text(messageable, [], long, view=view)
    assert len(shown) == 2 and "\n\n".join(m.text for m in channel.messages) == long
    assert channel.messages[-1].find_component("Regenerate")

    ids = [m.id for m in shown]
    shown = await show_text(messageable, shown, short, header="**v2**\n", view=view)
    assert [m.id for m in shown] == ids[:1] and [m.text for m in channel.messages] == ["**v2**\n" + short]
    assert channel.messages[0].find_component("Regenerate")

    shown = await show_text(messageable, shown, long, view=view)
    assert [m.id for m in shown][:1] == ids[:1] and len(shown) == 2
    first, *_, last = channel.messages
    assert first.component_items() == [] and last.find_component("Regenerate")
    assert "\n\n".join(m.text for m in channel.messages) == long


def largest_view() -> discord.ui.View:
    """The most a scene card carries: 4 choices + Your action; Regenerate, Branch, Continue,
    Narrate, New chapter; the versions menu; the rating; Favourite, Close vote, Join, Retry."""
    versions = [ui.VariantInfo(n, n, "regenerate", "…", None, False, n == 1) for n in range(1, 30)]
    view = ui.scene_view(21, 22, [Choice(f"Choice {n}") for n in range(1, 5)], versions, offer_chapter=True,
                         group=True)
    view.add_item(ui.RetryButton("choose", 21, 1))
    return view


@e2e
async def test_the_largest_card_with_a_full_text_and_a_tally_holds_discords_limits(world: World) -> None:
    channel = world.channel()
    footer = ui.choices_footer([Choice(f"Choice {n}") for n in range(1, 5)])
    text = scene(CARD_LIMIT - len(footer) - 5)  # text and choices fill the card: no room for a tally
    (message,) = await show_text(world.messageable(channel), [], text, footer=footer, view=largest_view())
    (shown,) = channel.messages
    assert len(shown.component_items()) == 16 and len(shown.text) > 3900
    full = await world.messageable(channel).fetch_message(message.id)  # type: ignore[attr-defined]
    tally = discord.Embed(title="🗳️ Vote", description="\n".join(f"**{n}.** Choice {n} — 0" for n in range(1, 5)))
    await full.edit(**ui.with_tally(full, tally))  # accepted: the tally is cut to the room left
    assert shown.text.startswith(text) and shown.flags & IS_COMPONENTS_V2
    short = scene(1000)
    (message,) = await show_text(world.messageable(channel), [message], short, footer=footer, view=largest_view(),
                                 reserve=ui.TALLY_ROOM)
    full = await world.messageable(channel).fetch_message(message.id)  # type: ignore[attr-defined]
    await full.edit(**ui.with_tally(full, tally, disable=True, chosen_custom_id="kahani:v1:choose:21:2"))
    assert shown.text.endswith("**🗳️ Vote**\n" + tally.description)  # whole, above the components
    assert all(c.get("disabled") for c in shown.component_items())
    assert shown.find_component("kahani:v1:choose:21:2")["style"] == discord.ButtonStyle.success.value


@e2e
async def test_disabled_copy_greys_a_card_and_a_message_from_before_the_cards_alike(world: World) -> None:
    channel = world.channel()
    messageable = world.messageable(channel)
    (card_message,) = await show_text(messageable, [], scene(300), footer="**1.** Go", view=largest_view())
    old = await messageable.send(scene(300), view=largest_view())  # content and classic rows
    for sent in (card_message, old):
        full = await messageable.fetch_message(sent.id)  # type: ignore[attr-defined]
        copy = ui.disabled_copy(full, "kahani:v1:choose:21:1")
        assert isinstance(copy, discord.ui.LayoutView) is bool(full.flags.components_v2)
        await full.edit(view=copy)
    new, classic = channel.messages
    assert new.flags & IS_COMPONENTS_V2 and new.text == scene(300) + "\n\n**1.** Go"  # the text stays
    assert not classic.flags & IS_COMPONENTS_V2 and classic.content == scene(300)
    for message in (new, classic):
        assert all(c.get("disabled") for c in message.component_items())
        assert message.find_component("kahani:v1:choose:21:1")["style"] == discord.ButtonStyle.success.value
        assert len(message.component_items()) == 16


# ------------------------------------------------------------ budgets (fake clock) ---

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rate_window_opens_at_its_first_request_and_ends_after_the_answer() -> None:
    window = RateWindow(5, 5.0)
    ticket = window.take(10.0)
    assert ticket is not None and window.ends == float("inf")  # unknown until Discord answers
    assert [window.take(10.1) for _ in range(4)] == [None] * 4 and window.left(10.2) == 0
    window.answered(ticket, 10.05)
    assert window.ends == pytest.approx(15.05)
    assert window.left(15.0) == 0 and window.left(15.05) == 5

    window.take(20.0)
    window.answered(window.take(20.0), 20.01)  # not the opener: the window's end stays unknown
    assert window.left(20.02) == 3 and window.ends == float("inf")


def test_nothing_is_sent_in_a_windows_last_moment() -> None:
    window = RateWindow(5, 5.0)
    window.answered(window.take(0.0), 0.0)
    assert window.left(4.85) == 4 and window.left(4.95) == 0  # it could land in Discord's next window
    assert window.left(5.0) == 5


def test_streaming_edits_spend_the_window_about_once_a_second_and_keep_a_reserve() -> None:
    clock = FakeClock()
    budget = ChannelBudget(1, clock=clock)
    sent: list[float] = []
    waits_for_final: list[float] = []
    end = clock.now + 60
    while clock.now < end:
        at = budget.edit_ready_at(Urgency.STREAM)
        # a final text arriving at any moment until then would wait at most RESERVE_LEAD
        for k in range(20):
            t = clock.now + (at - clock.now) * k / 20
            waits_for_final.append(budget.edit_ready_at(Urgency.FINAL, t) - t)
        clock.now = at
        ticket = budget.take_edit(clock.now)
        sent.append(clock.now)
        clock.now += 0.01  # Discord answers
        budget.edits.answered(ticket, clock.now)
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert statistics.median(gaps) <= 1.05 and max(gaps) <= 1.5
    assert max(waits_for_final) <= ChannelBudget.RESERVE_LEAD + 0.011
    for start in sent:  # Discord's view: never 6 edits within 5 s of a window's first one
        assert sum(start <= t < start + 5.0 for t in sent) <= 5


def test_first_text_goes_at_once_and_creates_never_use_the_last_token() -> None:
    clock = FakeClock()
    budget = ChannelBudget(1, clock=clock)
    assert budget.edit_ready_at(Urgency.FIRST) == clock.now
    budget.creates.answered(budget.take_create(clock.now), clock.now)
    assert budget.edit_ready_at(Urgency.STREAM) == clock.now + ChannelBudget.INTERVAL  # paced after the post
    for _ in range(3):
        budget.creates.answered(budget.take_create(clock.now), clock.now)
    assert budget.create_ready_at() == pytest.approx(clock.now + 5.0)  # the 5th would block inside discord.py


class _FakeMessage:
    def __init__(self, channel: _FakeChannel, content: str) -> None:
        self.id, self.channel, self.content = id(self), channel, content

    async def edit(self, *, content: str | None = None, **_: Any) -> _FakeMessage:
        self.content = content or ""
        return self


class _FakeChannel:
    """Just what SceneStreamer calls: posts and edits succeed at once."""

    def __init__(self, channel_id: int) -> None:
        self.id = channel_id
        self.messages: dict[int, _FakeMessage] = {}

    async def send(self, content: str = "", **_: Any) -> _FakeMessage:
        message = _FakeMessage(self, content)
        self.messages[message.id] = message
        return message

    def get_partial_message(self, message_id: int) -> _FakeMessage:
        return self.messages[message_id]


class _HandDriven(StreamScheduler):
    """A scheduler whose requests the test sends itself, one _pick at a time."""

    def poke(self) -> None:
        pass


async def test_a_final_text_keeps_the_turn_its_stream_already_waited_for() -> None:
    clock = FakeClock()
    scheduler = _HandDriven(clock=clock)
    streams = {}
    for name, channel_id in (("a", 1), ("b", 2)):
        channel = _FakeChannel(channel_id)
        streams[name] = SceneStreamer(channel, first_message=await channel.send("writing…"),  # type: ignore[arg-type]
                                      scheduler=scheduler)
        await streams[name].feed("The first words of a scene, long enough to show. ")

    async def send_next(expected: str) -> None:
        best, _, _ = scheduler._pick(clock.now)
        assert best is not None and best.stream is streams[expected]
        scheduler._dispatch(best, clock.now)
        await asyncio.gather(*scheduler._requests)

    await send_next("a")  # first texts, in order
    await send_next("b")
    clock.now += 1.0  # b last sent at 1000, a at 1003: b has waited longest
    await streams["a"].feed("More words. ")
    await streams["b"].feed("More words. ")
    clock.now += 2.0
    await send_next("a")
    await streams["a"].feed("And more. ")
    clock.now += 5.0  # b's scene ends 7 s after its last update: its final text goes before a's update
    finishing = asyncio.create_task(streams["b"].finish("The end."))
    await asyncio.sleep(0)
    best, _, _ = scheduler._pick(clock.now)
    assert best is not None and best.stream is streams["b"] and best.urgency is Urgency.FINAL
    assert best.key[0] == 1000.0  # its own turn, sooner than a head start from the end (1008 − 4)
    await send_next("b")
    assert await finishing


async def test_a_placeholder_waits_for_requests_in_flight_to_be_answered() -> None:
    clock = FakeClock()
    scheduler = StreamScheduler(clock=clock, global_limit=3)
    in_flight = [scheduler.global_budget.take(clock.now, final=True) for _ in range(3)]
    channel = _FakeChannel(5)
    posting = asyncio.create_task(post_paced(channel, "writing…", scheduler=scheduler))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert not posting.done()  # the budget is full
    clock.now += 1.0
    for ticket in in_flight[:2]:
        scheduler.global_budget.answered(ticket, clock.now - 1.0)  # answered a second ago: no longer counted
    scheduler.poke()
    message = await asyncio.wait_for(posting, 0.5)  # at once, not after a guessed sleep
    assert message.content == "writing…"


def test_the_global_budget_is_a_sliding_count() -> None:
    budget = GlobalBudget(5, 1.0)  # running texts: a burst of 2, then 4 a second; finals: the 5th

    def send(t: float, *, final: bool = False) -> None:
        budget.answered(budget.take(t, final=final), t)  # answered at once

    for t in (0.0, 0.0, 0.25, 0.5):
        assert budget.ready_at(t) == t
        send(t)
    assert budget.ready_at(0.6) == pytest.approx(1.0)  # 4 in the last second
    assert budget.ready_at(0.6, final=True) == 0.6  # one kept for a final text
    send(0.6, final=True)
    assert budget.ready_at(0.7, final=True) == pytest.approx(1.0)
    assert budget.ready_at(1.0) == pytest.approx(1.0)
    send(1.0)
    assert budget.ready_at(1.0) == pytest.approx(1.25)  # the burst is spent: evenly spaced


def test_a_request_counts_until_a_period_after_its_answer() -> None:
    # A burst sent at 0.0 can reach Discord as late as its answer (0.3): a request sent
    # at 1.0 could land within a second of it. The budget waits until 1.3.
    budget = GlobalBudget(3, 1.0)
    tickets = [budget.take(0.0, final=True) for _ in range(3)]
    assert budget.ready_at(0.2, final=True) == pytest.approx(1.2)  # in flight: a period from now at the earliest
    for ticket in tickets:
        budget.answered(ticket, 0.3)
    assert budget.ready_at(1.0, final=True) == pytest.approx(1.3)
    assert budget.ready_at(1.3, final=True) == 1.3

    # A caller that never reports the answer: counted as answered UNANSWERED after sending.
    budget = GlobalBudget(2, 1.0)
    budget.take(5.0, final=True)
    budget.take(5.0, final=True)
    assert budget.ready_at(5.5, final=True) == pytest.approx(6.5)
    assert budget.ready_at(6.5, final=True) == pytest.approx(5.0 + GlobalBudget.UNANSWERED + 1.0)


# -------------------------------------------------------------------- splitting ---

def test_split_prefers_paragraphs_then_sentences_then_words_and_never_cuts_a_word() -> None:
    paragraphs = "Alpha beta gamma.\n\nDelta epsilon zeta eta. Theta iota kappa lambda mu"
    assert split_text(paragraphs, 40) == ["Alpha beta gamma.", "Delta epsilon zeta eta.", "Theta iota kappa lambda mu"]
    sentences = "One two three. Four five six seven eight nine ten eleven."
    assert split_text(sentences, 30) == ["One two three.", "Four five six seven eight nine", "ten eleven."]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]  # no boundary at all: the only cut
    for chunk_limit in range(12, 60):
        chunks = split_text(scene(400), chunk_limit)
        assert all(len(c) <= chunk_limit for c in chunks)
        rebuilt = re.escape(chunks[0]) + "".join(r"\s+" + re.escape(c) for c in chunks[1:])
        assert re.fullmatch(rebuilt, scene(400))


def test_split_does_not_break_markdown_when_it_can_avoid_it() -> None:
    text = "Plain words here. **The bold part goes on. And on** and the end."
    chunks = split_text(text, 46)
    assert chunks == ["Plain words here.", "**The bold part goes on. And on** and the end."]
    fenced = "Intro.\n\n```\nline one\n\nline two\n```\nAfter the code block there is more."
    assert split_text(fenced, 40) == ["Intro.\n\n```\nline one\n\nline two\n```", "After the code block there is more."]
