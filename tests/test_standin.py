"""The Discord stand-in, driven by a minimal real discord.py client over real sockets.

The client here is deliberately tiny (not Kahani's bot): a slash command answering
with a button, a command group with a modal and options, a persistent DynamicItem,
a select, a DM, threads. The second half is the stand-in's self-test: it must refuse
what Discord refuses, so we know it would catch the bot breaking those rules.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.http import Route

from tests.discord_standin import (
    GUILD_VOICE, AdjustableClock, Channel, DiscordStandin, Guild, Permissions, User, run_client,
)
from tests.discord_standin import rules
from tests.discord_standin.fixtures import discord_rules  # noqa: F401  (autouse: zero 429s, no rule broken)

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Recorder:
    """Client-side events, with event-driven waits (no polling)."""

    def __init__(self) -> None:
        self.events: dict[str, list[Any]] = defaultdict(list)
        self._waiters: list[tuple[str, int, asyncio.Future[list[Any]]]] = []

    def record(self, name: str, value: Any = None) -> None:
        self.events[name].append(value)
        for waiter in list(self._waiters):
            wanted, count, future = waiter
            if wanted == name and len(self.events[name]) >= count and not future.done():
                future.set_result(self.events[name])

    async def wait(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        if len(self.events[name]) >= count:
            return self.events[name]
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        waiter = (name, count, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(waiter)


class Choose(discord.ui.DynamicItem[discord.ui.Button], template=r"test:v1:choose:(?P<n>\d)"):
    """A persistent button: the id carries the state, so it works after a restart."""

    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(label=f"Choice {n}", custom_id=f"test:v1:choose:{n}"))
        self.n = n

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> Choose:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"you chose {self.n}", ephemeral=True)


class WaveView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Wave", custom_id="test:wave")
    async def wave(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content=f"{interaction.user.name} waved")


class MoodView(discord.ui.View):
    @discord.ui.select(custom_id="test:mood", placeholder="Mood", options=[
        discord.SelectOption(label="Happy", value="happy"), discord.SelectOption(label="Grim", value="grim")])
    async def mood(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.edit_message(content=f"mood: {select.values[0]}", view=None)


class StoryModal(discord.ui.Modal, title="New story"):
    name = discord.ui.TextInput(label="Title", max_length=100)
    premise = discord.ui.TextInput(label="Premise", style=discord.TextStyle.long, required=False)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"created {self.name.value!r} ({self.premise.value or '-'})",
                                                ephemeral=True)


@dataclass
class World:
    standin: DiscordStandin
    clock: AdjustableClock
    client: discord.Client
    recorder: Recorder
    guild: Guild
    general: Channel
    voice: Channel
    alice: User
    bob: User
    release_slow: asyncio.Event = field(default_factory=asyncio.Event)

    def channel(self, name: str) -> Channel:
        return self.standin.add_channel(self.guild, name)


def build_client(world_ref: dict[str, World], recorder: Recorder) -> discord.Client:
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.1)
    tree = app_commands.CommandTree(client)

    @tree.command(name="hello", description="Say hello with a button")
    async def hello(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Hello!", view=WaveView())

    @tree.command(name="choices", description="Offer persistent choices")
    async def choices(interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None)
        for n in (1, 2):
            view.add_item(Choose(n))
        await interaction.response.send_message("Pick one", view=view)

    @tree.command(name="mood", description="Pick a mood")
    async def mood(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("How do you feel?", view=MoodView())

    @tree.command(name="count", description="Defer, then follow up and edit")
    async def count(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        followup = await interaction.followup.send("1", wait=True)
        for n in (2, 3):
            await followup.edit(content=str(n))
        await interaction.edit_original_response(content="counted")

    @tree.command(name="dmme", description="Send me a DM")
    @app_commands.allowed_contexts(guilds=True, dms=True)
    async def dmme(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("check your DMs", ephemeral=True)
        await interaction.user.send("hello in private")

    @tree.command(name="slow", description="Answers only when the test says so")
    async def slow(interaction: discord.Interaction) -> None:
        await world_ref["world"].release_slow.wait()
        try:
            await interaction.response.send_message("finally")
        except discord.HTTPException as exc:
            recorder.record("slow_error", exc)

    @tree.command(name="thread", description="Start a thread for the caller")
    async def thread(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("a thread for you")
        message = await interaction.original_response()
        created = await message.create_thread(name=f"{interaction.user.name}'s thread")
        await created.add_user(interaction.user)
        await created.send("welcome")
        await created.edit(archived=True)

    @tree.command(name="export", description="Answer with a file")
    async def export(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("your story", file=discord.File(io.BytesIO(b"chapter one"), "story.txt"))

    story = app_commands.Group(name="story", description="Stories")

    @story.command(name="new", description="Start a story")
    async def story_new(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(StoryModal())

    @story.command(name="show", description="Show a story")
    @app_commands.describe(title="Which story", chapter="Which chapter")
    async def story_show(interaction: discord.Interaction, title: str, chapter: int = 1) -> None:
        await interaction.response.send_message(f"{title} chapter {chapter}", ephemeral=True)

    tree.add_command(story)

    async def setup_hook() -> None:
        client.add_dynamic_items(Choose)
        await tree.sync()

    async def before_identify_hook(shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every re-IDENTIFY (Discord's identify pacing); not here."""

    client.setup_hook = setup_hook  # type: ignore[method-assign]
    client.before_identify_hook = before_identify_hook  # type: ignore[method-assign]

    @client.event
    async def on_resumed() -> None:
        recorder.record("resumed")

    @client.event
    async def on_raw_message_delete(payload: discord.RawMessageDeleteEvent) -> None:
        recorder.record("raw_message_delete", payload.message_id)

    @client.event
    async def on_raw_thread_delete(payload: discord.RawThreadDeleteEvent) -> None:
        recorder.record("raw_thread_delete", payload.thread_id)

    @client.event
    async def on_voice_state_update(member: discord.Member, before: Any, after: discord.VoiceState) -> None:
        recorder.record("voice", (member.id, after.channel.id if after.channel else None))

    return client


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world() -> AsyncIterator[World]:
    clock = AdjustableClock()
    async with DiscordStandin(clock=clock) as standin:
        guild = standin.add_guild("Tavern")
        general = standin.add_channel(guild, "general")
        voice = standin.add_channel(guild, "Stage", type=GUILD_VOICE)
        player = standin.add_role(guild, "player", Permissions.SEND_MESSAGES)
        alice = standin.add_user("alice", guild=guild, roles=(player,))
        bob = standin.add_user("bob", guild=guild)
        recorder = Recorder()
        ref: dict[str, World] = {}
        client = build_client(ref, recorder)
        ref["world"] = World(standin, clock, client, recorder, guild, general, voice, alice, bob)
        async with run_client(client, standin):
            yield ref["world"]
        standin.assert_clean()


@pytest.fixture
def standin(world: World) -> DiscordStandin:
    return world.standin


# --------------------------------------------------------------- the client works ---

async def test_login_reaches_ready_and_syncs_commands(world: World) -> None:
    standin, client = world.standin, world.client
    assert client.user is not None and client.user.id == standin.bot_user.id
    assert client.application_id == standin.application_id
    assert standin.command_syncs == 1
    names = {c["name"] for c in standin.global_commands}
    assert {"hello", "story", "choices", "mood", "count", "dmme", "slow", "thread"} <= names
    guild = client.get_guild(world.guild.id)
    assert guild is not None and guild.get_channel(world.general.id) is not None
    assert standin.gateway.identifies == 1 and standin.gateway.heartbeats >= 1
    # discord.py always asks for compression: zstd-stream with `zstandard` installed, else zlib-stream
    assert standin.gateway.compression == [discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE]


async def test_slash_command_answers_with_a_button(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "hello")
    response = await rec.wait_response()
    assert response.type == 4
    message = rec.original
    assert message is not None and message in world.general.messages
    assert message.content == "Hello!"
    assert message.find_component("Wave")["custom_id"] == "test:wave"


async def test_click_runs_the_button_callback_and_edits_in_place(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "hello")
    await rec.wait_response()
    click = await world.standin.click(world.bob, rec.original, "Wave")
    assert (await click.wait_response()).type == 7
    assert [r.content for r in rec.original.history] == ["Hello!", "bob waved"]


async def test_persistent_dynamic_item_survives_on_its_custom_id(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "choices")
    await rec.wait_response()
    click = await world.standin.click(world.alice, rec.original, "test:v1:choose:2")
    await click.wait_response()
    assert click.original is not None and click.original.content == "you chose 2"
    assert click.original in world.standin.ephemeral_for(world.alice)
    assert click.original not in world.general.messages


async def test_select_menu_value_reaches_the_callback(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "mood")
    await rec.wait_response()
    pick = await world.standin.select(world.alice, rec.original, ["Grim"])
    await pick.wait_response()
    assert rec.original.content == "mood: grim" and rec.original.components == []


async def test_modal_opens_and_its_submission_is_answered(world: World) -> None:
    standin = world.standin
    rec = await standin.slash(world.alice, world.general, "story new")
    assert (await rec.wait_response()).type == 9
    modal = standin.modals_for(world.alice)[-1]
    assert modal.title == "New story" and [c["label"] for c in modal.text_inputs()] == ["Title", "Premise"]
    submit = await standin.submit_modal(world.alice, modal, {"Title": "Dragons", "Premise": "They return"})
    await submit.wait_response()
    reply = await standin.wait_for_ephemeral(world.alice, lambda m: "Dragons" in m.content)
    assert reply.content == "created 'Dragons' (They return)"


async def test_subcommand_options_are_resolved_from_the_registered_commands(world: World) -> None:
    rec = await world.standin.slash(world.bob, world.general, "story show", title="Dragons", chapter=3)
    await rec.wait_response()
    assert rec.original.content == "Dragons chapter 3" and rec.original.ephemeral_for is world.bob
    with pytest.raises(TypeError):
        await world.standin.slash(world.bob, world.general, "story show")  # title is required


async def test_defer_followup_and_edits_keep_full_history(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "count")
    await rec.wait_response()
    done = await world.standin.wait_for_message(world.general, lambda m: m is rec.original and m.content == "counted")
    assert done.history[0].flags & 128  # the "thinking…" placeholder came first
    (followup,) = rec.followups
    assert [r.content for r in followup.history] == ["1", "2", "3"]


async def test_channel_message_edits_are_recorded(world: World) -> None:
    channel = world.channel("edits")
    sent = await world.client.get_partial_messageable(channel.id).send("draft 1")
    for n in (2, 3):
        sent = await sent.edit(content=f"draft {n}")
    (message,) = channel.messages
    assert [r.content for r in message.history] == ["draft 1", "draft 2", "draft 3"]


async def test_dm_from_the_bot_lands_in_the_users_dm_channel(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "dmme")
    await rec.wait_response()
    dm = await world.standin.dm(world.alice)
    message = await world.standin.wait_for_message(dm, lambda m: m.content == "hello in private")
    assert message.author is world.standin.bot_user
    in_dm = await world.standin.slash(world.alice, dm, "dmme")  # the command is allowed in DMs too
    await in_dm.wait_response()


async def test_thread_created_from_the_bots_message_with_the_user_added(world: World) -> None:
    standin = world.standin
    rec = await standin.slash(world.alice, world.general, "thread")
    await rec.wait_response()
    thread = await standin.wait_until(
        lambda: next((c for c in standin.channels.values() if c.is_thread and c.name == "alice's thread"), None))
    await standin.wait_for_message(thread, lambda m: m.content == "welcome")
    await standin.wait_until(lambda: thread.archived, what="the bot to archive its thread")
    assert thread.id == rec.original.id and world.alice.id in thread.thread_members
    await standin.moderator_delete_thread(thread)
    assert thread.id in await world.recorder.wait("raw_thread_delete")


async def test_files_go_through_multipart_with_payload_json(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "export")  # interaction callback, multipart
    await rec.wait_response()
    assert [(a.filename, a.data) for a in rec.original.attachments] == [("story.txt", b"chapter one")]
    channel = world.channel("files")
    file = discord.File(io.BytesIO(b"\x00\x01"), "audio.bin")
    sent = await world.client.get_partial_messageable(channel.id).send("attached", file=file)
    assert sent.attachments[0].filename == "audio.bin" and channel.messages[0].attachments[0].data == b"\x00\x01"


async def test_a_user_outside_a_private_thread_cannot_act_in_it(world: World) -> None:
    secret = world.standin.add_thread(world.general, "secret", private=True, members=(world.alice,))
    with pytest.raises(PermissionError):
        await world.standin.slash(world.bob, secret, "hello")
    assert world.standin.permissions_for(world.alice, secret) & Permissions.VIEW_CHANNEL


async def test_voice_states_of_users_and_the_bot(world: World) -> None:
    standin = world.standin
    await standin.join_voice(world.alice, world.voice)
    assert (world.alice.id, world.voice.id) in await world.recorder.wait("voice")
    guild = world.client.get_guild(world.guild.id)
    await guild.change_voice_state(channel=guild.get_channel(world.voice.id))  # gateway op 4
    assert (standin.bot_user.id, world.voice.id) in await world.recorder.wait("voice", count=2)
    assert standin.guilds[world.guild.id].voice_states[standin.bot_user.id].channel is world.voice


async def test_gateway_drop_is_resumed_with_missed_events_replayed(world: World) -> None:
    standin = world.standin
    session = standin.gateway.by_shard[0]
    await standin.drop_gateway()
    rec = await standin.slash(world.alice, world.general, "hello")  # sent while the socket is down
    await rec.wait_response()
    assert session.resumes == 1 and session.replayed >= 1 and standin.gateway.identifies == 1
    await world.recorder.wait("resumed")


async def test_invalid_session_makes_the_client_identify_again(world: World) -> None:
    standin = world.standin
    await standin.invalidate_session()
    await standin.wait_until(lambda: standin.gateway.identifies == 2, what="a second IDENTIFY")
    rec = await standin.slash(world.bob, world.general, "hello")
    await rec.wait_response()


async def test_moderator_deletion_reaches_the_client_and_later_edits_fail(world: World) -> None:
    channel = world.channel("moderated")
    sent = await world.client.get_partial_messageable(channel.id).send("soon gone")
    await world.standin.moderator_delete_message(channel.messages[0])
    assert sent.id in await world.recorder.wait("raw_message_delete")
    with pytest.raises(discord.NotFound):
        await sent.edit(content="too late")


async def test_missing_permissions_answer_403_50013(world: World) -> None:
    denied = Permissions.SEND_MESSAGES | Permissions.CREATE_PUBLIC_THREADS | Permissions.CREATE_PRIVATE_THREADS
    channel = world.standin.add_channel(world.guild, "read-only", deny_bot=denied)
    messageable = world.client.get_partial_messageable(channel.id)
    with pytest.raises(discord.Forbidden) as sent:
        await messageable.send("hi")
    assert sent.value.code == 50013
    with pytest.raises(discord.Forbidden) as threaded:
        await world.client.http.start_thread_without_message(channel.id, name="t", auto_archive_duration=60, type=11)
    assert threaded.value.code == 50013 and channel.messages == []


async def test_server_errors_are_retried_and_slow_answers_awaited(world: World) -> None:
    channel = world.channel("flaky")
    world.standin.fail_next("POST", "/channels/{channel_id}/messages")
    world.standin.slow_next("GET", "/channels/{channel_id}", 0.2)
    await world.client.get_partial_messageable(channel.id).send("made it")  # discord.py retries a 500 after 1 s
    assert [m.content for m in channel.messages] == ["made it"]
    fetched = await world.client.fetch_channel(channel.id)
    assert fetched.name == "flaky"


# ------------------------------------------------------------ the self-test -------

async def test_rejects_a_2001_character_message(world: World) -> None:
    channel = world.channel("long")
    async with world.standin.expect_violation("content"):
        with pytest.raises(discord.HTTPException) as err:
            await world.client.get_partial_messageable(channel.id).send("x" * 2001)
    assert err.value.status == 400 and err.value.code == 50035 and channel.messages == []


def _row(prefix: str) -> dict[str, Any]:
    return {"type": 1, "components": [{"type": 2, "style": 1, "label": prefix, "custom_id": prefix}]}


async def test_rejects_a_sixth_action_row(world: World) -> None:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=world.general.id)
    async with world.standin.expect_violation("components"):
        with pytest.raises(discord.HTTPException) as err:
            await world.client.http.request(route, json={"content": "rows", "components": [
                _row(f"r{i}") for i in range(6)]})
    assert err.value.code == 50035


async def test_rejects_a_duplicate_custom_id(world: World) -> None:
    view = discord.ui.View()
    view.add_item(discord.ui.Button(label="A", custom_id="same"))
    view.add_item(discord.ui.Button(label="B", custom_id="same"))
    async with world.standin.expect_violation("custom id cannot be duplicated"):
        with pytest.raises(discord.HTTPException):
            await world.client.get_partial_messageable(world.general.id).send("dup", view=view)


async def test_rejects_invalid_command_definitions(world: World) -> None:
    other = world.standin.add_guild("Elsewhere")
    cases = [
        ([{"name": "Bad Name", "description": "ok", "type": 1}], "Command name is invalid"),
        ([{"name": "long", "description": "x" * 101, "type": 1}], "description"),
        ([{"name": "twice", "description": "a"}, {"name": "twice", "description": "b"}], "must be unique"),
    ]
    for bad, match in cases:
        async with world.standin.expect_violation(match):
            with pytest.raises(discord.HTTPException):
                await world.client.http.bulk_upsert_guild_commands(world.standin.application_id, other.id, bad)
    assert world.standin.guild_commands.get(other.id, []) == []


async def test_rejects_a_second_interaction_response(world: World) -> None:
    standin = world.standin
    rec = await standin.slash(world.alice, world.general, "hello")
    await rec.wait_response()
    url = f"{standin.api_base}/interactions/{rec.id}/{rec.token}/callback"
    async with standin.expect_violation("interaction-already-acknowledged"), aiohttp.ClientSession() as http:
        async with http.post(url, json={"type": 4, "data": {"content": "again"}}) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 40060
    assert [c.accepted for c in rec.callbacks] == [True, False]


async def test_rejects_a_late_interaction_response(world: World) -> None:
    rec = await world.standin.slash(world.alice, world.general, "slow")
    world.clock.advance(3.5)  # the bot "took" 3.5 s
    async with world.standin.expect_violation("interaction-late"):
        world.release_slow.set()
    (error,) = await world.recorder.wait("slow_error")
    assert isinstance(error, discord.NotFound) and error.code == 10062 and not rec.acked


async def test_rejects_a_followup_after_the_token_expired(world: World) -> None:
    standin = world.standin
    rec = await standin.slash(world.alice, world.general, "hello")
    await rec.wait_response()
    world.clock.advance(15 * 60 + 1)
    url = f"{standin.api_base}/webhooks/{standin.application_id}/{rec.token}?wait=1"
    async with standin.expect_violation("interaction-token-expired"), aiohttp.ClientSession() as http:
        async with http.post(url, json={"content": "too late"}) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == 50027
    assert rec.followups == []


async def test_rejects_a_thread_in_a_dm(world: World) -> None:
    dm = await world.standin.dm(world.bob)
    async with world.standin.expect_violation("thread-in-dm"):
        with pytest.raises(discord.HTTPException) as err:
            await world.client.http.start_thread_without_message(dm.id, name="no", auto_archive_duration=60, type=11)
    assert err.value.code == 50024


async def test_rejects_a_route_missing_from_the_openapi_spec(world: World) -> None:
    if world.standin.spec is None:
        pytest.skip("no OpenAPI spec here (outside CI)")
    async with world.standin.expect_violation("route-not-in-spec"):
        with pytest.raises(discord.NotFound):
            await world.client.http.request(Route("GET", "/channels/{channel_id}/nonsense", channel_id=1))


async def test_rejects_a_body_that_does_not_match_the_schema(world: World) -> None:
    if world.standin.spec is None:
        pytest.skip("no OpenAPI spec here (outside CI)")
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=world.general.id)
    async with world.standin.expect_violation("schema"):
        with pytest.raises(discord.HTTPException):
            await world.client.http.request(route, json={"content": 42})


# --- Components V2 (IS_COMPONENTS_V2, 1 << 15) -----------------------------------------

V2 = 1 << 15


def _card(*texts: str, rows: int = 1, accent: int = 0x3B7DD8) -> discord.ui.LayoutView:
    """A container with ``texts`` in text displays and ``rows`` action rows of persistent buttons."""
    container = discord.ui.Container(*(discord.ui.TextDisplay(t) for t in texts), accent_colour=accent)
    for r in range(rows):
        container.add_item(discord.ui.ActionRow(*(Choose(n) for n in range(r * 5 + 1, min(r * 5 + 6, 10)))))
    view = discord.ui.LayoutView(timeout=None)
    view.add_item(container)
    return view


async def _raw(world: World, method: str, path: str, body: dict[str, Any], **params: Any) -> Any:
    return await world.client.http.request(Route(method, path, **params), json=body)


async def test_a_components_v2_message_is_accepted_and_its_dynamic_items_answer(world: World) -> None:
    channel = world.channel("v2-card")
    sent = await world.client.get_partial_messageable(channel.id).send(view=_card("The door is open.", "**1.** In"))
    (message,) = channel.messages
    assert message.flags & V2 and message.content == "" and message.text == "The door is open.\n\n**1.** In"
    assert sent.flags.components_v2
    click = await world.standin.click(world.alice, message, "test:v1:choose:3")  # inside container › action row
    await click.wait_response()
    assert click.original is not None and click.original.content == "you chose 3"


async def test_rejects_content_or_embeds_beside_components_v2(world: World) -> None:
    channel = world.channel("v2-content")
    components = _card("text").to_components()
    for extra in ({"content": "legacy text"}, {"embeds": [{"description": "an embed"}]}):
        async with world.standin.expect_violation("cannot be used with the IS_COMPONENTS_V2 flag"):
            with pytest.raises(discord.HTTPException) as err:
                await _raw(world, "POST", "/channels/{channel_id}/messages",
                           {**extra, "components": components, "flags": V2}, channel_id=channel.id)
        assert err.value.code == 50035
    assert channel.messages == []


async def test_rejects_buttons_outside_action_rows_and_v2_types_without_the_flag(world: World) -> None:
    channel = world.channel("v2-layout")
    button = {"type": 2, "style": 1, "label": "loose", "custom_id": "loose"}
    cases = [
        ({"components": [button], "flags": V2}, "not allowed at the top level"),
        ({"components": [{"type": 17, "components": [button]}], "flags": V2}, "not allowed in a container"),
        ({"components": [{"type": 17, "components": [{"type": 17, "components": [
            {"type": 10, "content": "nested"}]}]}], "flags": V2}, "not allowed in a container"),
        ({"components": [{"type": 10, "content": "no flag"}]}, "need IS_COMPONENTS_V2"),
        ({"components": [{"type": 10, "content": ""}], "flags": V2}, "components.0.content"),
    ]
    for body, match in cases:
        # The stand-in's own rules say why (they hold without the OpenAPI spec, which may
        # refuse first where it covers the case).
        assert any(match in str(err) for err in rules.check_message(body)), (body, match)
        async with world.standin.expect_violation(f"POST /channels/{channel.id}/messages"):
            with pytest.raises(discord.HTTPException) as refused:
                await _raw(world, "POST", "/channels/{channel_id}/messages", body, channel_id=channel.id)
        assert refused.value.status == 400 and refused.value.code == 50035
    assert channel.messages == []


async def test_counts_nested_components_to_40_and_text_displays_to_4000_characters(world: World) -> None:
    channel = world.channel("v2-limits")
    send = world.client.get_partial_messageable(channel.id).send
    await send(view=_card("a" * 2000, "b" * 2000))  # exactly 4,000 characters: fine
    # 1 container + 30 text displays + 2 rows of 5 buttons = 43 > 40 (discord.py refuses to
    # build it; a hand-made body must be refused by the stand-in all the same)
    rows = [{"type": 1, "components": [{"type": 2, "style": 2, "label": f"{r}{n}", "custom_id": f"b{r}{n}"}
                                       for n in range(5)]} for r in range(2)]
    texts = [{"type": 10, "content": f"line {n}"} for n in range(30)]
    async with world.standin.expect_violation("40 components at most"):
        with pytest.raises(discord.HTTPException):
            await _raw(world, "POST", "/channels/{channel_id}/messages",
                       {"components": [{"type": 17, "components": texts + rows}], "flags": V2},
                       channel_id=channel.id)
    async with world.standin.expect_violation("4000 characters at most"):
        with pytest.raises(discord.HTTPException):
            await send(view=_card("a" * 2000, "b" * 2001))
    (accepted,) = channel.messages
    assert len(accepted.text) == 4002  # the two displays and the blank line between them


async def test_the_v2_flag_may_be_added_by_an_edit_and_never_removed(world: World) -> None:
    channel = world.channel("v2-edit")
    send = world.client.get_partial_messageable(channel.id).send
    old = await send("classic text", view=WaveView())
    path = "/channels/{channel_id}/messages/{message_id}"
    components = _card("now a card").to_components()
    # Adding the flag without clearing the content: refused, the message stays as it was.
    async with world.standin.expect_violation("an edit adding the flag sets it to null"):
        with pytest.raises(discord.HTTPException):
            await _raw(world, "PATCH", path, {"components": components, "flags": V2},
                       channel_id=channel.id, message_id=old.id)
    (message,) = channel.messages
    assert message.content == "classic text" and not message.flags & V2
    # discord.py's way: the layout with content and embeds cleared.
    await old.edit(content=None, embed=None, view=_card("now a card"))
    assert message.flags & V2 and message.text == "now a card"
    # Later edits without flags keep it; content or a flag without the bit is refused.
    await _raw(world, "PATCH", path, {"components": _card("still a card").to_components()},
               channel_id=channel.id, message_id=old.id)
    assert message.flags & V2 and message.text == "still a card"
    for body, match in (({"content": "back to text"}, "content cannot be used"),
                        ({"components": [_row("classic")], "flags": 0}, "cannot be removed")):
        async with world.standin.expect_violation(match):
            with pytest.raises(discord.HTTPException):
                await _raw(world, "PATCH", path, body, channel_id=channel.id, message_id=old.id)
    assert message.flags & V2 and message.text == "still a card"


async def test_a_ping_in_a_text_display_is_seen(world: World) -> None:
    channel = world.channel("v2-pings")
    await world.client.get_partial_messageable(channel.id).send(
        view=_card("@everyone look"), allowed_mentions=discord.AllowedMentions.none())
    assert world.standin.pings == []
    await world.client.get_partial_messageable(channel.id).send(view=_card(f"hi <@{world.bob.id}>"))
    assert world.standin.pings and world.standin.pings[-1][1] == f"user:{world.bob.id}"
    world.standin.pings.clear()


async def test_a_burst_of_edits_is_rate_limited_and_discord_py_waits_it_out(world: World) -> None:
    standin = world.standin
    channel = world.channel("burst")
    base = f"{standin.api_base}/channels/{channel.id}/messages"
    headers = {"Authorization": f"Bot {standin.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(base, json={"content": "v0"}) as resp:
            message_id = (await resp.json())["id"]
        answers = []
        async with standin.expect_rate_limited(at_least=1, is_global=False):
            for n in range(6):
                async with http.patch(f"{base}/{message_id}", json={"content": f"v{n + 1}"}) as resp:
                    answers.append((resp.status, resp.headers, await resp.json()))
    assert [status for status, _, _ in answers] == [200] * 5 + [429]
    assert [h["X-RateLimit-Remaining"] for _, h, _ in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert {h["X-RateLimit-Bucket"] for _, h, _ in answers} == {answers[0][1]["X-RateLimit-Bucket"]}
    _, limited_headers, limited_body = answers[5]
    assert limited_headers["X-RateLimit-Limit"] == "5" and limited_headers["Via"]
    assert limited_body["global"] is False and 0 < limited_body["retry_after"] <= 5

    # discord.py does not know this bucket is spent: it gets a 429, sleeps retry_after, retries.
    world.clock.advance(limited_body["retry_after"] - 0.5)
    partial = world.client.get_partial_messageable(channel.id).get_partial_message(int(message_id))
    async with standin.expect_rate_limited(at_least=1, is_global=False) as hits:
        await partial.edit(content="after the window")
    assert hits[0].bucket == "message-edit"
    assert channel.messages[0].content == "after the window"


async def test_the_global_limit_applies_past_50_requests_per_second(world: World) -> None:
    channel = world.channel("global")
    sent = await world.client.get_partial_messageable(channel.id).send("target")
    world.clock.advance(1.0)  # start from a fresh one-second window
    async with world.standin.expect_rate_limited(is_global=True) as hits:
        results = await asyncio.gather(*(world.client.http.get_message(channel.id, sent.id) for _ in range(60)))
    assert len(results) == 60 and all(r["id"] == str(sent.id) for r in results)
    assert hits and all(h.is_global for h in hits)
    world.clock.advance(1.0)  # leave the next test a fresh global window


async def test_auto_sharded_client_gets_guild_events_on_the_guilds_shard(world: World) -> None:
    """A second stand-in recommending 2 shards; guild events go to (guild_id >> 22) % 2, DMs to 0."""
    async with DiscordStandin(recommended_shards=2) as standin:
        base = standin.bot_user.id
        guilds = [standin.add_guild(f"shard {n}", id=base + (n << 22)) for n in range(2)]
        shard_of = {g.id: (g.id >> 22) % 2 for g in guilds}
        channels = [standin.add_channel(g, "general") for g in guilds]
        user = standin.add_user("carol")
        for guild in guilds:
            standin.add_member(guild, user)
        recorder = Recorder()
        client = discord.AutoShardedClient(intents=discord.Intents.default(), guild_ready_timeout=0.1)

        async def no_identify_pause(shard_id: int | None, *, initial: bool = False) -> None:
            pass

        @client.event
        async def on_message(message: discord.Message) -> None:
            recorder.record("message", (message.guild.id if message.guild else None, message.guild and
                                        message.guild.shard_id))

        client.before_identify_hook = no_identify_pause  # type: ignore[method-assign]
        async with run_client(client, standin):
            assert sorted(standin.gateway.by_shard) == [0, 1] and client.shard_count == 2
            for channel in channels:
                await standin.say(user, channel, "hi")
            await standin.say(user, await standin.dm(user), "psst")
            seen = await recorder.wait("message", count=3)
        assert set(seen) == {(g.id, shard_of[g.id]) for g in guilds} | {(None, None)}  # shards run independently
        for shard, session in standin.gateway.by_shard.items():
            logged = [e["d"].get("guild_id") for e in session.log if e["t"] == "MESSAGE_CREATE"]
            expected = [str(g.id) for g in guilds if shard_of[g.id] == shard] + ([None] if shard == 0 else [])
            assert logged == expected
        standin.assert_clean()
    # the module's stand-in is patched back in
    assert world.client.http is not None and discord.http.Route.BASE == world.standin.api_base
