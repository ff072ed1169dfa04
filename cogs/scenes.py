"""What a scene's components do: choose, act, regenerate, continue, branch, switch versions,
rate, favourite and retry (bot/ui/scene.py builds them; their callbacks come here).

Every handler re-reads the database: who may act (``bot/access.py``), and whether the
scene is still the one to act on. Scenes are written and shown by the scene player
(``bot/player.py``); group stories' votes are the player's ``ballots`` (cogs/votes.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.access import Caller, check, decide, story_of_variant
from bot.errors import send_ephemeral
from bot.types import Interaction
from bot.ui import scene as ui
from bot.ui.common import NotAllowed, before_a_modal, checked_text, within_the_deadline
from bot.ui.render import card_edit, edit_paced
from core import ids
from core import messages as msg
from core import repository as repo
from core.access import Need
from core.engine import Failed, StoryEngine
from core.errors import Conflict, KahaniError, NotFound
from core.models import InstructionKind, SceneChoice, Story, StoryMode, StoryStatus
from core.text import storable

if TYPE_CHECKING:
    from bot.app import KahaniBot
    from bot.player import ScenePlayer

log = logging.getLogger(__name__)
NO_PINGS = discord.AllowedMentions.none()


class Scenes(commands.Cog):
    """The components of a story's scenes (no commands)."""

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot
        self.db = bot.db
        self.engine: StoryEngine = bot.engine
        self.player: ScenePlayer = bot.player

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*ui.DYNAMIC_ITEMS)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*ui.DYNAMIC_ITEMS)

    async def _check_tip(self, interaction: Interaction, variant_id: int) -> tuple[Story, Caller]:
        """The story, if the user may play it and this variant is where it continues."""
        async with self.db.read() as s:  # no write lock on the click's path
            story, who = await story_of_variant(s, interaction, variant_id, Need.PLAY)
            story_id = story.id
            if story.status == StoryStatus.ENDED.value:
                raise Conflict(msg.STORY_ENDED)
            tip = await repo.tip(s, story_id)
            if tip is None or tip.variant.id != variant_id:
                raise Conflict(msg.NOT_LAST_SCENE)
            if await repo.get_lease(s, story_id) is not None:
                raise Conflict(msg.STILL_WRITING)
            await self.engine.check_limits(s, story, who.user.id)
        return story, who

    async def _check_variant(self, interaction: Interaction, variant_id: int) -> tuple[Story, Caller]:
        """The story, if the user may make a new version of any scene of it: its owner
        (a group story's host)."""
        async with self.db.read() as s:  # no write lock on the click's path
            story, who = await story_of_variant(s, interaction, variant_id, Need.HOST)
            if story.status == StoryStatus.ENDED.value:
                raise Conflict(msg.STORY_ENDED)
            if await repo.get_lease(s, story.id) is not None:
                raise Conflict(msg.STILL_WRITING)
            await self.engine.check_limits(s, story, who.user.id)
        return story, who

    async def _next(self, interaction: Interaction, variant_id: int, kind: InstructionKind,
                    instruction: str, retry: tuple[str, int, int | None], *, acked: bool = False,
                    into: discord.Message | None = None, note: str = "") -> None:
        """Write the scene that follows ``variant_id`` after the player's instruction
        (into a new message, or ``into`` — e.g. the failed attempt being retried);
        ``note`` steers this scene only."""
        if not acked and not interaction.response.is_done():
            # Answer within Discord's 3 s whatever the load (a deferred update spends no
            # channel budget); a refusal below then comes as an ephemeral followup.
            await interaction.response.defer()
        story, who = await self._check_tip(interaction, variant_id)
        if not acked:
            clicked = (interaction.data or {}).get("custom_id")
            view = ui.disabled_copy(interaction.message, clicked)
            if view is not None:  # the old scene's buttons go grey (interaction webhook edit)
                with contextlib.suppress(discord.HTTPException):
                    await interaction.edit_original_response(view=view, allowed_mentions=NO_PINGS)
        channel = interaction.channel
        assert isinstance(channel, discord.abc.Messageable)  # a command's or a component's channel
        self.player.spawn(self.player.play(channel, instruction, lambda ref: self.engine.next_scene(
            story.id, instruction_kind=kind, instruction=instruction, after_variant_id=variant_id,
            user_id=who.user.id, frontend_ref=ref, note=note), retry=retry, first_message=into, story_id=story.id))

    async def on_choice(self, interaction: Interaction, variant_id: int, n: int, *,
                        into: discord.Message | None = None) -> None:
        async def look_up() -> tuple[Sequence[SceneChoice], Story]:
            async with self.db.read() as s:
                found = await repo.get_choices(s, variant_id)
                return found, await repo.get_story(s, await repo.variant_story_id(s, variant_id))

        # A loaded database must not cost the click its 3 s: past ACK_WITHIN it is deferred
        # (an update; a vote's or a refusal's answer then comes as an ephemeral followup).
        choices, story = await within_the_deadline(interaction, look_up(), thinking=False)
        if not 1 <= n <= len(choices):
            raise NotFound(msg.CHOICE_GONE)
        if story.mode == StoryMode.GROUP.value:
            if into is None:  # a group's choice buttons are votes
                await self.player.ballots.on_vote(interaction, variant_id, n)
                return
            await self._ensure_decided(variant_id)  # Retry of what a vote chose
        await self._next(interaction, variant_id, InstructionKind.CHOICE, choices[n - 1].text,
                         ("choose", variant_id, n), into=into)

    async def _ensure_decided(self, variant_id: int) -> None:
        if not await self.player.ballots.decided(variant_id):
            raise NotAllowed(msg.GROUP_HOST_ONLY)

    async def on_action(self, interaction: Interaction, variant_id: int) -> None:
        if await before_a_modal(self._may_play(interaction, variant_id)):
            await self.player.ballots.on_action(interaction, variant_id)
            return

        async def submitted(modal_interaction: Interaction, text: str, note: str) -> None:
            note = checked_text(storable(note).strip(), msg.FIELD_SCENE_NOTE, ui.SCENE_NOTE_LIMIT, required=False)
            await self._next(modal_interaction, variant_id, InstructionKind.ACTION, text.strip(),
                             ("act", variant_id, None), note=note)

        await interaction.response.send_modal(ui.TextModal(
            "Your action", "What do you do?", "I pick the lock and slip inside…", submitted, note=True))

    async def _new_version(self, interaction: Interaction, variant_id: int, kind: str,
                           direction: str | None = None) -> None:
        """Regenerate / continue / branch: the new version streams into the scene's message."""
        story, who = await within_the_deadline(interaction, self._check_variant(interaction, variant_id),
                                               thinking=False)
        if story.mode == StoryMode.GROUP.value:  # the vote on this scene is called off
            await self.player.ballots.void_with_update(interaction, story.id)
        if interaction.message is not None and not interaction.response.is_done():
            await interaction.response.edit_message(view=ui.disabled_copy(interaction.message),
                                                    allowed_mentions=NO_PINGS)
        elif not interaction.response.is_done():
            await interaction.response.defer()
        message = interaction.message
        if kind == "regen":
            start = lambda ref: self.engine.regenerate(variant_id, user_id=who.user.id, frontend_ref=ref)  # noqa: E731
        elif kind == "cont":
            start = lambda ref: self.engine.continue_scene(variant_id, user_id=who.user.id, frontend_ref=ref)  # noqa: E731
        else:
            assert direction is not None
            start = lambda ref: self.engine.branch(variant_id, direction, user_id=who.user.id, frontend_ref=ref)  # noqa: E731

        async def restore(failed: Failed) -> None:
            # Nothing changed in the story: show the scene as it was, say why privately.
            await self.player.reshow(variant_id, message)
            await interaction.followup.send(
                f"{ui.header(direction) if direction else ''}\n⚠️ {failed.reason}".strip(),
                view=ui.retry_view(kind, variant_id), ephemeral=True, allowed_mentions=NO_PINGS,
            )

        channel = interaction.channel
        assert isinstance(channel, discord.abc.Messageable)  # a command's or a component's channel
        self.player.spawn(self.player.play(channel, await self.player.header_text(variant_id, direction), start,
                              retry=(kind, variant_id, None),
                              first_message=message, on_fail=restore, story_id=story.id))

    async def on_regenerate(self, interaction: Interaction, variant_id: int) -> None:
        await self._new_version(interaction, variant_id, "regen")

    async def on_continue(self, interaction: Interaction, variant_id: int) -> None:
        await self._new_version(interaction, variant_id, "cont")

    async def on_branch(self, interaction: Interaction, variant_id: int) -> None:
        await before_a_modal(self._may(interaction, variant_id, Need.HOST))

        async def submitted(modal_interaction: Interaction, text: str) -> None:
            await self._new_version(modal_interaction, variant_id, "branch", text.strip())

        await interaction.response.send_modal(ui.TextModal(
            "Branch this scene", "Which way should it go instead?", "A storm breaks as they reach the door…",
            submitted))

    async def on_retry(self, interaction: Interaction, kind: str, target_id: int, n: int | None) -> None:
        if kind == "open":
            async with self.db.transaction() as s:
                story = await repo.get_story(s, target_id)
                who = await check(s, interaction, story, Need.PLAY, shown=True)
                if await repo.tip(s, target_id) is not None:
                    raise Conflict(msg.ALREADY_STARTED)
            await interaction.response.edit_message(**card_edit([], accent=ui.accent(target_id), writing=msg.WRITING))
            channel = interaction.channel
            assert isinstance(channel, discord.abc.Messageable)  # a component's channel
            self.player.spawn(self.player.play(channel, "", lambda ref: self.engine.next_scene(
                target_id, user_id=who.user.id, frontend_ref=ref), retry=("open", target_id, None),
                first_message=interaction.message, story_id=target_id))
        elif kind == "choose" and n is not None:
            await self.on_choice(interaction, target_id, n, into=interaction.message)
        elif kind == "act":
            if await self._is_group(target_id):
                await self._ensure_decided(target_id)
            text = ui.instruction_from(interaction.message)
            if not text:
                await self.on_action(interaction, target_id)  # ask again
                return
            await self._next(interaction, target_id, InstructionKind.ACTION, text, ("act", target_id, None),
                             into=interaction.message)
        elif kind == "branch":
            text = ui.instruction_from(interaction.message)
            if not text:
                await self.on_branch(interaction, target_id)
                return
            await self._new_version_from_retry(interaction, target_id, "branch", text)
        else:
            await self._new_version_from_retry(interaction, target_id, kind, None)

    async def _new_version_from_retry(self, interaction: Interaction, variant_id: int, kind: str,
                                      direction: str | None) -> None:
        # The Retry button sits on an ephemeral notice or an interrupted scene; the new
        # version streams into the scene's recorded message.
        async with self.db.read() as s:
            messages = await repo.get_variant_messages(s, variant_id)
        target = None
        if messages:
            channel = self.bot.get_channel(messages[-1][0]) or interaction.channel
            if channel is not None:
                target = channel.get_partial_message(messages[-1][1])  # type: ignore[union-attr]
        await interaction.response.defer(ephemeral=True)
        if target is not None:
            with contextlib.suppress(discord.HTTPException):
                target = await target.fetch()
        story, who = await within_the_deadline(interaction, self._check_variant(interaction, variant_id),
                                               thinking=False)
        if story.mode == StoryMode.GROUP.value:
            await self.player.ballots.void(story.id)
        starts = {
            "regen": lambda ref: self.engine.regenerate(variant_id, user_id=who.user.id, frontend_ref=ref),
            "cont": lambda ref: self.engine.continue_scene(variant_id, user_id=who.user.id, frontend_ref=ref),
            "branch": lambda ref: self.engine.branch(variant_id, direction or "", user_id=who.user.id,
                                                     frontend_ref=ref),
        }
        channel = interaction.channel
        assert isinstance(channel, discord.abc.Messageable)  # a command's or a component's channel

        async def restore(failed: Failed) -> None:
            await self.player.reshow(variant_id, target if isinstance(target, discord.Message) else None)
            await interaction.followup.send(f"⚠️ {failed.reason}", view=ui.retry_view(kind, variant_id),
                                            ephemeral=True, allowed_mentions=NO_PINGS)

        self.player.spawn(self.player.play(channel, await self.player.header_text(variant_id, direction), starts[kind],
                              retry=(kind, variant_id, None),
                              first_message=target if isinstance(target, discord.Message) else None,
                              on_fail=restore, story_id=story.id))

    async def on_select_variant(self, interaction: Interaction, scene_id: int, value: str) -> None:
        variant_id = ids.parse_id(value)  # a forged value may be anything (core/ids.py)
        if variant_id is None:
            raise NotFound(msg.VARIANT_GONE)

        async def check() -> Story:
            async with self.db.transaction() as s:
                variant = await repo.get_variant(s, variant_id)
                if variant.scene_id != scene_id:
                    raise NotFound(msg.VARIANT_GONE)
                story, _ = await story_of_variant(s, interaction, variant_id, Need.HOST)
                if await repo.get_lease(s, story.id) is not None:
                    raise Conflict(msg.STILL_WRITING)
                return story

        story = await within_the_deadline(interaction, check(), thinking=False)
        if story.mode == StoryMode.GROUP.value:
            await self.player.ballots.void(story.id)
        await self.engine.select_variant(variant_id)
        if not interaction.response.is_done():
            await interaction.response.defer()  # a deferred update: no channel budget spent
        async with self.db.read() as s:
            recorded = await repo.scene_messages(s, scene_id)
        messages: list[Any] = []
        channel = interaction.channel
        if channel is not None:
            messages = [channel.get_partial_message(m) for c, m in recorded if c == channel.id]  # type: ignore[union-attr]
        if interaction.message is not None and interaction.message.id not in {m.id for m in messages}:
            messages = [interaction.message]
        if messages:
            await self.player.show_variant(variant_id, sorted(messages, key=lambda m: m.id))

    async def on_rate(self, interaction: Interaction, variant_id: int, value: str) -> None:
        stars = ids.parse_int(value, 1, 5)
        if stars is None:
            raise KahaniError(msg.RATING_INVALID)

        async def rate() -> None:
            await self._check_variant_member(interaction, variant_id)
            await self.engine.rate(variant_id, rating=stars)

        await within_the_deadline(interaction, rate())
        await send_ephemeral(interaction, msg.RATED.format(stars="★" * stars))

    async def on_favourite(self, interaction: Interaction, variant_id: int) -> None:
        async def toggle() -> bool:
            await self._check_variant_member(interaction, variant_id)
            async with self.db.read() as s:
                now = not (await repo.get_variant(s, variant_id)).favourite
            await self.engine.rate(variant_id, favourite=now)
            return now

        now = await within_the_deadline(interaction, toggle())
        await send_ephemeral(interaction, msg.FAVOURITE_ON if now else msg.FAVOURITE_OFF)
        shown = ui.favourite_copy(interaction.message, now)  # the button shows it (nothing stored)
        if shown is not None and interaction.message is not None:
            message = interaction.message
            self.player.spawn(edit_paced(message, view=shown, scheduler=self.player.scheduler))

    async def _check_variant_member(self, interaction: Interaction, variant_id: int) -> None:
        async with self.db.transaction() as s:
            await story_of_variant(s, interaction, variant_id, Need.PLAY)

    async def _may(self, interaction: Interaction, variant_id: int, need: Need) -> Story:
        """The variant's story, if the user may do ``need`` to it: a read only, quick
        enough to come before a form (nothing is written for a refusal or a newcomer)."""
        async with self.db.read() as s:
            story = await repo.get_story(s, await repo.variant_story_id(s, variant_id))
            await decide(s, interaction, story, need, shown=True)
        return story

    async def _may_play(self, interaction: Interaction, variant_id: int) -> bool:
        """Whether the variant's story is a group story, if the user may play it."""
        return (await self._may(interaction, variant_id, Need.PLAY)).mode == StoryMode.GROUP.value

    async def _is_group(self, variant_id: int) -> bool:
        async with self.db.read() as s:
            story = await repo.get_story(s, await repo.variant_story_id(s, variant_id))
        return story.mode == StoryMode.GROUP.value


async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(Scenes(bot))
