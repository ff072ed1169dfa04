"""Group play in Discord: the choice buttons of a group story's latest scene are votes.

The :class:`Votes` cog is the scene player's ``ballots`` (bot/player.py): the player and
the scene components (cogs/scenes.py) hand it what is specific to group stories; the
votes themselves (who may vote, the tally, deadlines, the close claim) are
``core.votes``. Here:

- a click is answered ephemerally at once ("You voted for 2"), with an interaction
  callback (no rate limit); the scene message's tally embed follows through
  :class:`TallyPainter`, which coalesces: a burst of votes becomes about one edit a
  second, spent from the render scheduler's budget of that channel, so scene streams
  and tallies together never draw a 429;
- a timer closes ballots at their deadline. Deadlines live in the database: at
  start-up and at least every :data:`TIMER_MAX` seconds the timer settles every
  ballot past due (so a deadline that passed while the bot was down fires on start-up),
  and the close claim makes one process win when several run;
- the winner is taken through the same path as a solo choice (``ScenePlayer.play`` with
  ``engine.next_scene``), once its hand-off is claimed in the database; the timer also
  recovers winners nobody is writing (the closer died between the close and the scene,
  or the scene's generation died or failed): ``VoteService.recover`` hands each to one
  process;
- the winner's scene counts against the generation limit of whoever closed the vote
  (Close vote, or the vote after which everyone had voted; stored with the close, so a
  recovery charges them too), else the host's. A click that would close a vote while its
  player is at the limit is refused with the limit's message, and nothing is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.access import decide, play_check, story_of_variant
from bot.errors import send_ephemeral
from bot.player import NoBallots
from bot.types import Interaction
from bot.ui import scene as ui
from bot.ui.common import NotAllowed, before_a_modal, within_the_deadline
from bot.ui.render import Urgency, within_global_budget
from core import access
from core import messages as msg
from core import repository as repo
from core.access import Need
from core.models import InstructionKind, MemberStatus, StoryMode
from core.votes import (
    ACTION_POSITION,
    BallotState,
    CloseReason,
    Settled,
    VoteService,
    VoteSettings,
    host_of,
    options_summary,
)

if TYPE_CHECKING:
    from bot.app import KahaniBot
    from bot.player import ScenePlayer

log = logging.getLogger(__name__)
TIMER_MAX = 15.0  # seconds: the timer looks at the database at least this often
NO_PINGS = discord.AllowedMentions.none()


def tally_embed(state: BallotState) -> discord.Embed:
    """What the scene message shows under its text: the options with their votes and
    when the vote closes, or how it ended."""
    if state.closed_by == CloseReason.VOID:
        return discord.Embed(title=msg.VOTE_VOID_TITLE, description=msg.VOTE_VOID_REWRITE)
    lines = [msg.VOTE_TALLY_LINE.format(n=n, text=ui.one_line(text, 120), votes=votes)
             for n, text, votes in options_summary(state)]
    if state.open:
        when = discord.utils.format_dt(state.deadline, "R")
        lines.append("")
        lines.append(msg.VOTE_TALLY_EXTENDED.format(when=when) if state.extended and not state.voters
                     else msg.VOTE_TALLY_OPEN.format(when=when, voters=state.voters, eligible=state.eligible))
        if state.action is not None:
            lines.append(msg.VOTE_TALLY_ACTION_HINT)
        return discord.Embed(title=msg.VOTE_TALLY_TITLE, description="\n".join(lines)[:4096])
    lines += ["", f"**{state.outcome or ''}**"]
    return discord.Embed(title=msg.VOTE_CLOSED_TITLE, description="\n".join(lines)[:4096])


def shown_tally(message: discord.Message, state: BallotState) -> dict[str, Any]:
    """The edit that shows ``state`` on its scene's last ``message`` (the card's tally, or
    the embed of a message from before the cards); decided: the buttons go grey, the
    winning choice marked."""
    decided = not state.open and state.winner is not None
    chosen = f"{ui.PREFIX}:choose:{state.variant_id}:{state.winner}" if decided else None
    return ui.with_tally(message, tally_embed(state), disable=decided, chosen_custom_id=chosen)


class TallyPainter:
    """Edits of tally embeds, coalesced per ballot and paced by the channel's budget.

    :meth:`request` returns at once; one worker per channel sends, whenever the render
    scheduler's :class:`ChannelBudget` (shared with the scene streams of that channel)
    and its global budget allow, one edit per requested ballot carrying the ballot's
    state as the database has it at that moment — so any number of votes in between
    cost one edit."""

    def __init__(self, group: Votes) -> None:
        self.group = group
        self._pending: dict[int, dict[int, Urgency]] = {}  # channel id → ballot ids (ordered) → urgency
        self._workers: dict[int, asyncio.Task[None]] = {}
        self.edits = 0  # edits sent (for the benchmark)

    def request(self, channel_id: int, ballot_id: int, *, outcome: bool = False) -> None:
        """Show the ballot's current state soon; an ``outcome`` (closed, called off) goes
        at once when the channel's budget has room, a tally change about once a second."""
        pending = self._pending.setdefault(channel_id, {})
        urgency = Urgency.FIRST if outcome else Urgency.STREAM
        pending[ballot_id] = min(urgency, pending.get(ballot_id, Urgency.STREAM))
        worker = self._workers.get(channel_id)
        if worker is None or worker.done():
            self._workers[channel_id] = asyncio.create_task(self._work(channel_id), name=f"kahani-tally-{channel_id}")

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _work(self, channel_id: int) -> None:
        pending = self._pending[channel_id]
        while pending:
            scheduler = self.group.bot.scheduler
            now = scheduler.clock()
            # Re-read every time: the scheduler drops idle budgets and makes new ones.
            urgency = min(pending.values())
            at = max(scheduler.budget(channel_id).edit_ready_at(urgency, now),
                     scheduler.global_budget.ready_at(now))
            if at > now:
                await asyncio.sleep(at - now)  # the channel's rate-limit window, not a guess
                continue
            ballot_id = next(b for b, u in pending.items() if u == urgency)
            del pending[ballot_id]
            try:
                edit = await self.group.tally_edit(ballot_id)
            except Exception:
                log.exception("could not build the tally of ballot %s", ballot_id)
                continue
            if edit is None:
                continue
            message, kwargs = edit
            now = scheduler.clock()
            budget = scheduler.budget(channel_id)
            ticket = budget.take_edit(now)
            counted = scheduler.global_budget.take(now)
            try:
                await message.edit(**kwargs)
                self.edits += 1
            except discord.HTTPException as exc:
                log.info("could not update the tally in channel %s: %s", channel_id, exc)
            finally:
                budget.edits.answered(ticket, scheduler.clock())
                scheduler.global_budget.answered(counted, scheduler.clock())
                scheduler.poke()
        self._pending.pop(channel_id, None)


class Votes(commands.Cog):
    """Group play: votes on a group story's choices, the vote timer, Join and Close vote.
    It is the scene player's ``ballots`` (bot/player.py) while it is loaded."""

    def __init__(self, bot: KahaniBot) -> None:
        self.bot = bot
        self.db = bot.db
        self.player: ScenePlayer = bot.player
        self.votes = VoteService(self.db)
        self.painter = TallyPainter(self)
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self.player.ballots = self
        self._timer = self.bot.spawn(self._run_timer())  # the bot cancels it on shutdown

    async def cog_unload(self) -> None:
        self.player.ballots = NoBallots()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.painter.close()

    async def _close(self, ballot_id: int, reason: CloseReason, closer_id: int | None = None, *,
                     checked: bool = False) -> Settled | None:
        """Close a ballot (a database claim: None if it was closed already) and tell
        whoever listens (metrics: ``on_kahani_vote_settled``). ``closer_id`` closed it:
        the winner's scene counts against them (``checked``: their limit was just checked)."""
        settled = await self.votes.close(ballot_id, reason, closer_id=closer_id,
                                         may_close=None if checked else self.bot.engine.check_limits)
        if settled is not None:
            self.bot.dispatch("kahani_vote_settled", settled)
        return settled

    async def _settle_due(self, ballot_id: int) -> Settled | None:
        settled = await self.votes.settle_due(ballot_id)
        if settled is not None:
            self.bot.dispatch("kahani_vote_settled", settled)
        return settled

    def wake(self) -> None:
        """Look at the deadlines now (e.g. after a test moved the clock)."""
        self._wake.set()

    # --- the timer ---------------------------------------------------------------------

    async def _run_timer(self) -> None:
        await self.bot.wait_until_ready()
        seen: datetime | None = None  # the deadline last logged
        while True:
            self._wake.clear()
            timeout = TIMER_MAX
            try:
                for ballot_id in await self.votes.due():
                    settled = await self._settle_due(ballot_id)
                    if settled is not None:
                        await self.after_settle(settled)
                for settled in await self.votes.recover():
                    log.warning("vote %s of story %s was decided but its scene never came: writing it now",
                                settled.state.ballot_id, settled.state.story_id)
                    await self.after_settle(settled, taken=True)
                upcoming = await self.votes.next_deadline()
                if upcoming is not None and upcoming != seen:
                    seen = upcoming
                    log.debug("vote timer: next deadline at %s", upcoming.isoformat())
                if upcoming is not None:
                    timeout = min(timeout, max(0.05, (upcoming - self.votes.clock()).total_seconds()))
            except Exception:
                log.exception("settling votes failed; trying again in %.0f s", timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    # --- scenes ------------------------------------------------------------------------

    async def scene_ready(self, variant_id: int) -> BallotState | None:
        """A group story's scene is shown: open its ballot (call it before the buttons
        appear, then :meth:`repaint` once the message is recorded). None: no vote."""
        state = await self.votes.open_ballot(variant_id)
        if state is not None:
            self.wake()  # the timer sleeps until the earliest deadline: this one may be earlier
        return state

    async def paint(self, variant_id: int) -> None:
        """Show the variant's ballot (the newest) on its message."""
        state = await self.votes.latest(variant_id)
        if state is not None:
            await self.repaint(state)

    async def repaint(self, state: BallotState) -> None:
        async with self.db.read() as s:
            messages = await repo.get_variant_messages(s, state.variant_id)
        if messages:
            self.painter.request(messages[-1][0], state.ballot_id, outcome=not state.open)

    async def tally_edit(self, ballot_id: int) -> tuple[discord.Message, dict[str, Any]] | None:
        """The edit that shows a ballot as it is now on its scene's last message."""
        state = await self.votes.state(ballot_id)
        async with self.db.read() as s:
            messages = await repo.get_variant_messages(s, state.variant_id)
        if not messages:
            return None
        channel: Any = self.bot.get_channel(messages[-1][0])  # the scene's thread or DM
        if channel is None:
            return None
        # A card is edited whole: read it as it is (a GET, within the global limit).
        try:
            message = await within_global_budget(self.bot.scheduler, channel.get_partial_message(messages[-1][1]).fetch)
        except discord.HTTPException:
            return None
        if state.closed_by == CloseReason.VOID and message.flags.components_v2:
            return None  # the card is being rewritten: its new version brings its own vote
        return message, shown_tally(message, state)

    async def void(self, story_id: int) -> None:
        """The scene is being changed (regenerate, branch, continue, switch): call its
        vote off, saying so on the message."""
        for state in await self.votes.void(story_id):
            await self.repaint(state)

    async def void_with_update(self, interaction: Interaction, story_id: int) -> bool:
        """Like :meth:`void`, shown through the click's own update (type 7, no channel
        budget) when the click was on the voted message; True if it answered."""
        voided = await self.votes.void(story_id)
        answered = False
        for state in voided:
            message = interaction.message
            shown_here = message is not None and await self._shows(state.variant_id, message.id)
            if message is not None and shown_here and not interaction.response.is_done():
                await interaction.response.edit_message(**ui.with_tally(message, tally_embed(state), disable=True))
                answered = True
            else:
                await self.repaint(state)
        return answered

    async def _shows(self, variant_id: int, message_id: int) -> bool:
        async with self.db.read() as s:
            return message_id in {m for _, m in await repo.get_variant_messages(s, variant_id)}

    # --- clicks ------------------------------------------------------------------------

    async def on_vote(self, interaction: Interaction, variant_id: int, n: int,
                      action: str | None = None) -> None:
        user = interaction.user
        host_perms = bool(interaction.guild_id and interaction.permissions.manage_threads)

        async def record() -> tuple[Any, Settled | None]:
            # A vote that closes the ballot starts the winner's scene, counted against
            # this player: over their limit, it is refused (RateLimited) and not recorded.
            result = await self.votes.cast_as(variant_id, user.id, user.display_name, n, action=action,
                                              may_vote=play_check(interaction), moderator=host_perms,
                                              may_close=self.bot.engine.check_limits)
            if result.closes is not None:
                return result, await self._close(result.state.ballot_id, result.closes, result.voter_id, checked=True)
            return result, None

        result, settled = await within_the_deadline(interaction, record())
        state = result.state
        if settled is None and state.everyone_voted:
            self.wake()  # everyone voted before the vote's first seconds were up: its deadline moved up
        if settled is not None and await self._answer_with_outcome(interaction, settled):
            # The click that closed the vote is answered by updating the scene message
            # with the outcome (type 7: no channel budget spent).
            await self.after_settle(settled, painted=True)
            return
        if result.position is None:
            text = msg.VOTE_WITHDRAWN.format(n=n)
        else:
            text = msg.VOTE_CAST.format(n=result.position, text=ui.one_line(state.text_of(result.position), 200))
        await send_ephemeral(interaction, text + (msg.VOTE_JOINED_NOTE if result.joined else ""))
        if settled is not None:
            await self.after_settle(settled)
            return
        if result.state.voters == 1 and result.position is not None:
            self.wake()  # perhaps a new round: its deadline may be the earliest
        await self.repaint(state)

    async def _answer_with_outcome(self, interaction: Interaction, settled: Settled) -> bool:
        variant_id = settled.state.variant_id
        if interaction.response.is_done() or interaction.message is None \
                or not await self._shows(variant_id, interaction.message.id):
            return False
        # Decided: the buttons go grey; else they stay for the next round.
        await interaction.response.edit_message(**shown_tally(interaction.message, settled.state))
        return True

    async def on_action(self, interaction: Interaction, variant_id: int) -> None:
        """Your action in a group story: propose an own action (option 5) through a form,
        or vote for the one already proposed."""
        story, state = await before_a_modal(self._action_state(interaction, variant_id))
        if not VoteSettings.of(story).own_actions:
            raise NotAllowed(msg.VOTE_NO_OWN_ACTIONS)
        if state is not None and state.open and state.action is not None:
            await self.on_vote(interaction, variant_id, ACTION_POSITION)
            return

        async def submitted(modal_interaction: Interaction, text: str) -> None:
            await self.on_vote(modal_interaction, variant_id, ACTION_POSITION, action=text.strip())

        await interaction.response.send_modal(ui.TextModal(
            "Your action", "What do you do?", "We pick the lock and slip inside… (the others vote on it)",
            submitted))

    async def _action_state(self, interaction: Interaction,
                            variant_id: int) -> tuple[Any, BallotState | None]:
        async with self.db.read() as s:
            story = await repo.get_story(s, await repo.variant_story_id(s, variant_id))
            await decide(s, interaction, story, Need.PLAY, shown=True)
        return story, await self.votes.latest(variant_id)

    async def on_close(self, interaction: Interaction, variant_id: int) -> None:
        async def close() -> Settled | None:
            async with self.db.read() as s:
                story = await repo.get_story(s, await repo.variant_story_id(s, variant_id))
                story_facts, who = await decide(s, interaction, story, Need.SEE, shown=True)
                if VoteSettings.of(story).host_closes:
                    if not access.can_moderate(story_facts, who):
                        raise NotAllowed(msg.VOTE_HOST_ONLY_CLOSE)
                elif not access.can_host(story_facts, who) and not (
                        access.can_play(story_facts, who) and story_facts.member_status == MemberStatus.JOINED.value):
                    raise NotAllowed(msg.VOTE_MEMBERS_ONLY_CLOSE)
            state = await self.votes.latest(variant_id)
            # The closer's limit is checked with the close (refused: it stays open).
            return None if state is None or not state.open else await self._close(
                state.ballot_id, CloseReason.HOST, who.user_id)

        settled = await within_the_deadline(interaction, close(), thinking=False)
        if settled is None:
            raise NotAllowed(msg.VOTE_NOTHING_OPEN)
        # The click's own update shows the outcome: no channel budget spent.
        if not await self._answer_with_outcome(interaction, settled):
            await send_ephemeral(interaction, msg.VOTE_CLOSED_BY_YOU)
            await self.after_settle(settled)
            return
        await self.after_settle(settled, painted=True)

    async def on_join(self, interaction: Interaction, variant_id: int) -> None:
        async def join() -> tuple[bool, str]:
            async with self.db.transaction() as s:
                story, who = await story_of_variant(s, interaction, variant_id, Need.PLAY)
                member = await repo.get_member(s, story.id, who.user.id)
                if story.mode != StoryMode.GROUP.value or story.owner_id == who.user.id or (
                        member is not None and member.status == MemberStatus.JOINED.value):
                    return False, story.title
                await repo.set_member(s, story.id, who.user.id, MemberStatus.JOINED)
                return True, story.title

        joined, title = await within_the_deadline(interaction, join())
        if not joined:
            await send_ephemeral(interaction, msg.VOTE_ALREADY_JOINED.format(title=title))
            return
        await send_ephemeral(interaction, msg.VOTE_JOINED.format(title=title))
        state = await self.votes.latest(variant_id)
        if state is not None and state.open:
            await self.repaint(state)

    async def decided(self, variant_id: int) -> bool:
        """Whether the variant's vote is over with a winner (a Retry may take it)."""
        state = await self.votes.latest(variant_id)
        return state is not None and not state.open and state.winner is not None

    # --- outcomes ----------------------------------------------------------------------

    async def after_settle(self, settled: Settled, *, painted: bool = False, taken: bool = False) -> None:
        """Show how a ballot ended and go on: the winner is taken as a solo choice is —
        once its hand-off is claimed (``taken``: already claimed by a recovery); no votes
        after the extension asks the host (the one ping the bot may send)."""
        state = settled.state
        if not painted:
            await self.repaint(state)
        if settled.extended:
            self.wake()
            return
        story_id = state.story_id
        async with self.db.read() as s:
            story = await repo.get_story(s, story_id)
        if story.mode != StoryMode.GROUP.value:
            return
        channel = await self.player.channel_of(story)
        if settled.ask_host:
            host = await host_of(self.db, story_id)
            if host is not None:
                only_host = discord.AllowedMentions(everyone=False, roles=False, replied_user=False,
                                                    users=[discord.Object(host)])
                await channel.send(msg.VOTE_ASK_HOST.format(host=host), allowed_mentions=only_host)
                self.bot.scheduler.budget(channel.id).note_create()
            return
        if state.winner is None:
            return
        if not taken and not await self.votes.take(state.ballot_id):
            return  # another process (or a recovery) writes it
        kind, text = settled.instruction
        retry = ("act", state.variant_id, None) if kind is InstructionKind.ACTION else \
            ("choose", state.variant_id, state.winner)
        # The scene a vote chose counts against whoever closed the vote, else the host:
        # a table of one cannot write without limit by voting.
        self.player.continue_story(channel, story_id, state.variant_id, kind, text, retry=retry,
                                   user_id=state.counts_against(story.owner_id))

    # --- members -----------------------------------------------------------------------

    async def after_kick(self, story_id: int, user_id: int) -> None:
        """A kicked member's vote no longer counts; everyone else may have voted now."""
        withdrawn = await self.votes.withdraw_member(story_id, user_id)
        if withdrawn is None:
            return
        state, closes = withdrawn
        if closes is not None:
            settled = await self._close(state.ballot_id, closes)
            if settled is not None:
                await self.after_settle(settled)
                return
        if state.everyone_voted:
            self.wake()  # everyone voted early: the deadline moved up
        await self.repaint(state)


def settings_text(title: str, settings: VoteSettings) -> str:
    return msg.VOTE_SETTINGS.format(
        title=title, duration=settings.duration,
        actions=msg.VOTE_SETTINGS_ON if settings.own_actions else msg.VOTE_SETTINGS_OFF,
        closer=msg.VOTE_SETTINGS_HOST if settings.host_closes else msg.VOTE_SETTINGS_ANYONE,
        table=msg.VOTE_SETTINGS_OPEN if settings.open_table else msg.VOTE_SETTINGS_INVITE,
        min_open=settings.min_open,
    )


async def setup(bot: KahaniBot) -> None:
    await bot.add_cog(Votes(bot))
