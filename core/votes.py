"""Group votes on a scene's choices, Discord-free (docs/architecture.md, "How a vote closes").

A group story's latest scene (its tip variant) has a **ballot**: one vote per member,
changeable, withdrawn by voting for the same option again. A ballot closes at its
deadline, when every joined member has voted — only at a table of two or more, and never
in the first :attr:`VoteSettings.min_open` seconds after the scene appeared, so players
still reading can join by voting (all votes in before then: the deadline moves up to
that moment) — or when the host closes it; the winner
is the option with the most votes, a tie going to the **earliest option** among the
tied (1 before 2 …; a proposed own action, option 5, comes last).

Everything lives in the database, so a restart loses nothing and several processes
can share the work: closing is a claim — ``UPDATE ballots SET closed_at … WHERE id = …
AND closed_at IS NULL RETURNING`` — so exactly one closer wins, whichever process or
timer gets there. Deadlines are plain columns: a front end asks :meth:`VoteService.due`
for the ballots past their deadline (at start-up and periodically) and settles them.

A ballot with no votes at its deadline is extended once; with none at the second
deadline it closes without a winner and the host is asked (their next click decides).

Whoever closes a ballot (Close vote, or the vote after which everyone has voted) is
stored with the close claim, and the winner's scene counts against their generation
limit; closed by its deadline (or a kick), it counts against the host. A front end's
``may_close`` check (e.g. the limit) runs inside the closing transaction: refused,
nothing is written, not even the vote that would have closed it.

A decided ballot's winning scene is **handed off** to a generation by a second claim,
``UPDATE ballots SET taken_at … WHERE taken_at IS NULL RETURNING``: the closer takes it
at once (:meth:`VoteService.take`). If the closer dies before that, or its generation
dies or fails, no scene follows; :meth:`VoteService.recover` (at start-up and with the
deadlines) claims such ballots — still the story's tip, no generation lease held, no
scene after them, closed more than :data:`TAKE_GRACE` ago and never taken, or taken
more than :data:`RETAKE_AFTER` ago, at most :data:`MAX_TAKES` hand-offs in all — so
exactly one process starts the winner's scene.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import messages as msg
from core import repository as repo
from core.db import Database
from core.errors import Conflict, KahaniError, NotFound
from core.models import (
    Ballot,
    GenerationLease,
    InstructionKind,
    MemberStatus,
    Scene,
    SceneVariant,
    Story,
    StoryMember,
    StoryMode,
    StoryStatus,
    User,
    Vote,
    utcnow,
)

MIN_DURATION = 10  # seconds
MAX_DURATION = 24 * 3600
MAX_MIN_OPEN = 3600  # seconds "everyone voted" may wait for readers to join
ACTION_POSITION = 5  # a proposed own action joins the ballot as option 5
SETTINGS_KEY = "votes"  # Story.settings["votes"]
# The front end's access check for a vote: (story, user id, membership status) -> raises.
MayVote = Callable[[Story, int, str | None], None]
# The front end's check on whoever closes a ballot with a winner (its scene counts against
# them): (session, story, user id) -> raises to refuse (e.g. over the generation limit).
MayClose = Callable[[AsyncSession, Story, int], Awaitable[None]]
# The winner's hand-off (see the module doc): a decided ballot nobody took this long after
# it closed lost its closer; one taken this long ago with no lease and no scene after it
# lost its generation (the process died, or the generation failed). One automatic retry.
TAKE_GRACE = timedelta(seconds=10)
RETAKE_AFTER = timedelta(seconds=60)
MAX_TAKES = 2


class VoteRefused(KahaniError):
    """The vote cannot be cast (kicked, invite-only table, closed ballot, bad option)."""


class CloseReason(enum.StrEnum):
    DEADLINE = "deadline"
    EVERYONE = "everyone"
    HOST = "host"
    VOID = "void"


@dataclass(frozen=True)
class VoteSettings:
    """A group story's vote settings, stored in ``Story.settings["votes"]``."""

    duration: int = 60  # seconds a ballot stays open
    own_actions: bool = True  # players may propose their own action (option 5)
    host_closes: bool = True  # only the host (or a moderator) may close a vote early
    open_table: bool = True  # anyone who sees the thread may vote; False: invited members only
    # "Everyone voted" closes a ballot no sooner than this many seconds after it opened.
    min_open: int = 10

    @classmethod
    def of(cls, story: Story) -> VoteSettings:
        stored = (story.settings or {}).get(SETTINGS_KEY) or {}
        known = {k: v for k, v in stored.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def changed(self, **changes: Any) -> VoteSettings:
        """These settings with ``changes`` (None leaves a setting); VoteRefused when invalid."""
        new = replace(self, **{k: v for k, v in changes.items() if v is not None})
        if not MIN_DURATION <= new.duration <= MAX_DURATION:
            raise VoteRefused(msg.VOTE_BAD_DURATION.format(seconds=new.duration))
        if not 0 <= new.min_open <= MAX_MIN_OPEN:
            raise VoteRefused(msg.VOTE_BAD_MIN_OPEN.format(seconds=new.min_open, most=MAX_MIN_OPEN))
        return new

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class BallotState:
    """A ballot as players see it: the options, the counts, the deadline, the outcome."""

    ballot_id: int
    story_id: int
    variant_id: int
    opened_at: datetime
    deadline: datetime
    extended: bool
    closed_at: datetime | None
    closed_by: str | None
    closer_id: int | None  # the user who closed it (None: the deadline, a kick, a void)
    winner: int | None
    outcome: str | None
    options: tuple[str, ...]  # the choices' texts, option n at index n - 1
    action: str | None  # the proposed own action (option 5), if any
    counts: dict[int, int]  # option → votes
    voters: int
    eligible: int  # joined members (the owner included)

    @property
    def open(self) -> bool:
        return self.closed_at is None

    @property
    def everyone_voted(self) -> bool:
        """Every joined player voted, at a table of at least two: a table of one closes
        only by its timer or **Close vote** (the host voting first must not end the vote
        before anyone else could vote)."""
        return self.eligible >= 2 and self.voters >= self.eligible

    def counts_against(self, owner_id: int) -> int:
        """Whose generation limit the winner's scene counts against: the closer's, else
        the host's (``owner_id``)."""
        return self.closer_id if self.closer_id is not None else owner_id

    def text_of(self, position: int) -> str:
        if position == ACTION_POSITION and self.action is not None:
            return self.action
        return self.options[position - 1] if 1 <= position <= len(self.options) else ""


@dataclass(frozen=True)
class CastResult:
    position: int | None  # the vote now counted; None when it was withdrawn
    joined: bool  # this vote made the user a member
    state: BallotState
    by_owner: bool = False  # the story's owner (host) cast it
    after_no_votes: bool = False  # it opened a new round after a vote that nobody voted in
    voter_id: int | None = None  # who cast it
    closes: CloseReason | None = None  # this vote closes the ballot (everyone voted; the host, asked)


@dataclass(frozen=True)
class Settled:
    """What happened to a ballot: closed (with or without a winner) or extended."""

    state: BallotState
    extended: bool = False

    @property
    def winner(self) -> int | None:
        return self.state.winner

    @property
    def ask_host(self) -> bool:
        """Closed at the deadline with no votes, after the extension: the host decides."""
        return not self.extended and self.state.winner is None and self.state.closed_by == CloseReason.DEADLINE

    @property
    def instruction(self) -> tuple[InstructionKind, str]:
        """How the winning option is taken: a choice, or the proposed own action."""
        assert self.state.winner is not None
        kind = InstructionKind.ACTION if self.state.winner == ACTION_POSITION else InstructionKind.CHOICE
        return kind, self.state.text_of(self.state.winner)


def pick_winner(counts: dict[int, int]) -> tuple[int | None, list[int]]:
    """The winning option and the options tied at the top (ties: the earliest option)."""
    top = max(counts.values(), default=0)
    if top <= 0:
        return None, []
    tied = sorted(p for p, n in counts.items() if n == top)
    return tied[0], tied


def describe_outcome(counts: dict[int, int], reason: str) -> tuple[int | None, str]:
    """The winner and the sentence that says how it was decided."""
    winner, tied = pick_winner(counts)
    why = {
        CloseReason.DEADLINE: msg.VOTE_WHY_DEADLINE,
        CloseReason.EVERYONE: msg.VOTE_WHY_EVERYONE,
        CloseReason.HOST: msg.VOTE_WHY_HOST,
    }.get(CloseReason(reason), "")
    if winner is None:
        return None, msg.VOTE_NO_VOTES
    votes = counts[winner]
    if len(tied) > 1:
        listed = ", ".join(str(p) for p in tied)
        return winner, msg.VOTE_TIE.format(options=listed, votes=votes, winner=winner, why=why)
    return winner, msg.VOTE_WON.format(winner=winner, votes=votes, total=sum(counts.values()), why=why)


class VoteService:
    """The public API of group votes. One per process; safe to share."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    # --- settings ----------------------------------------------------------------------

    async def update_settings(self, story_id: int, **changes: Any) -> VoteSettings:
        """Change a story's vote settings (duration in seconds, own_actions, host_closes,
        open_table); None leaves a setting as it is."""
        async with self.db.transaction() as s:
            story = await repo.get_story(s, story_id, for_update=True)
            new = VoteSettings.of(story).changed(**changes)
            story.settings = {**(story.settings or {}), SETTINGS_KEY: new.as_json()}
            return new

    # --- ballots -----------------------------------------------------------------------

    async def open_ballot(self, variant_id: int) -> BallotState | None:
        """The ballot players vote in on this variant: the open one, else a new one —
        unless the variant's last ballot already closed (its outcome stands; a click
        starts a new round). Other open ballots of the story are voided. None for a solo
        story or a variant that is not the story's latest scene."""
        for attempt in (1, 2):
            try:
                async with self.db.transaction() as s:
                    story = await self._story_of(s, variant_id)
                    if story.mode != StoryMode.GROUP.value or not await self._is_tip(s, story, variant_id):
                        return None
                    ballot = await self._latest(s, variant_id)
                    if ballot is not None and (ballot.closed_at is None or ballot.closed_by != CloseReason.VOID):
                        return await self._state(s, ballot)
                    return await self._state(s, await self._new_ballot(s, story, variant_id))
            except IntegrityError:  # another process opened it at the same moment
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def void(self, story_id: int) -> list[BallotState]:
        """Call off the story's open ballots (its scene is being rewritten or switched)."""
        async with self.db.transaction() as s:
            ids = (await s.scalars(
                update(Ballot)
                .where(Ballot.story_id == story_id, Ballot.closed_at.is_(None))
                .values(closed_at=self.clock(), closed_by=CloseReason.VOID.value, outcome=msg.VOTE_VOIDED)
                .returning(Ballot.id)
            )).all()
            return [await self._state(s, await s.get_one(Ballot, i)) for i in ids]

    async def state(self, ballot_id: int) -> BallotState:
        async with self.db.read() as s:
            ballot = await s.get(Ballot, ballot_id)
            if ballot is None:
                raise NotFound(msg.VOTE_GONE)
            return await self._state(s, ballot)

    async def latest(self, variant_id: int) -> BallotState | None:
        """The variant's newest ballot (open or closed), if it has one."""
        async with self.db.read() as s:
            ballot = await self._latest(s, variant_id)
            return None if ballot is None else await self._state(s, ballot)

    async def cast(self, variant_id: int, user_id: int, position: int, *, action: str | None = None) -> CastResult:
        """Vote for ``position`` on the variant's ballot (a new round starts when its last
        ballot closed without a winner). Voting for the option already voted for
        withdraws the vote. A first vote joins the story. ``action`` proposes an own
        action as option 5 (one proposal per ballot while anyone votes for it)."""
        async with self.db.transaction() as s:
            return await self._cast(s, variant_id, user_id, position, action)

    async def cast_as(self, variant_id: int, discord_id: int, display_name: str, position: int, *,
                      action: str | None = None, may_vote: MayVote | None = None, moderator: bool = False,
                      may_close: MayClose | None = None) -> CastResult:
        """:meth:`cast` for a Discord user (created on first sight), in one transaction:
        a burst of votes costs one short write each. ``may_vote(story, user_id,
        member_status)`` is the front end's access check (core/access.py); it raises to
        refuse, and then nothing is written, not even the user. The result's ``closes``
        says whether this vote closes the ballot (the caller then calls :meth:`close`):
        everyone has voted, or the host (or a ``moderator``) voted in the round after a
        vote nobody voted in; ``may_close(session, story, user_id)`` may refuse that
        vote, as ``may_vote`` does."""
        async with self.db.transaction() as s:
            user = await repo.get_or_create_user(s, discord_id, display_name)
            return await self._cast(s, variant_id, user.id, position, action, may_vote, moderator, may_close)

    async def _cast(self, s: AsyncSession, variant_id: int, user_id: int, position: int,
                    action: str | None, may_vote: MayVote | None = None, moderator: bool = False,
                    may_close: MayClose | None = None) -> CastResult:
        story = await self._story_of(s, variant_id)
        member = await repo.get_member(s, story.id, user_id)
        if may_vote is not None:
            may_vote(story, user_id, member.status if member is not None else None)
        if story.mode != StoryMode.GROUP.value:
            raise VoteRefused(msg.VOTE_SOLO)
        settings = VoteSettings.of(story)
        if member is not None and member.status == MemberStatus.KICKED.value:
            raise VoteRefused(msg.NOT_A_PLAYER_KICKED)
        if member is None and not settings.open_table:
            raise VoteRefused(msg.VOTE_INVITE_ONLY)
        if not await self._is_tip(s, story, variant_id):
            raise Conflict(msg.NOT_LAST_SCENE)
        ballot = await s.scalar(
            select(Ballot).where(Ballot.variant_id == variant_id, Ballot.closed_at.is_(None)).with_for_update()
        )
        after_no_votes = False
        if ballot is None:
            last = await self._latest(s, variant_id)
            if last is not None and last.winner_position is not None:
                raise VoteRefused(msg.VOTE_ALREADY_DECIDED.format(winner=last.winner_position))
            after_no_votes = last is not None and last.closed_by == CloseReason.DEADLINE
            ballot = await self._new_ballot(s, story, variant_id)
        joined = member is None or member.status != MemberStatus.JOINED.value
        if joined:
            await repo.set_member(s, story.id, user_id, MemberStatus.JOINED)
        counted = await self._record(s, ballot, user_id, position, action, settings, len(
            await repo.get_choices(s, variant_id)))
        state = await self._state(s, ballot)
        by_owner = story.owner_id == user_id
        closes = None
        if counted is not None and after_no_votes and (by_owner or moderator):
            closes = CloseReason.HOST  # the host was asked, and answered
        elif state.everyone_voted:
            closes, state = await self._everyone_voted(s, ballot, state, settings)
        if closes is not None and may_close is not None:
            await may_close(s, story, user_id)  # raises: the vote is not recorded either
        return CastResult(counted, joined, state, by_owner=by_owner, after_no_votes=after_no_votes,
                          voter_id=user_id, closes=closes)

    async def withdraw_member(self, story_id: int, user_id: int) -> tuple[BallotState, CloseReason | None] | None:
        """Remove a (kicked) member's vote from the story's open ballot: its state after,
        and :attr:`CloseReason.EVERYONE` when everyone left has voted and it may close now."""
        async with self.db.transaction() as s:
            ballot = await s.scalar(select(Ballot).where(Ballot.story_id == story_id, Ballot.closed_at.is_(None)))
            if ballot is None:
                return None
            await s.execute(delete(Vote).where(Vote.ballot_id == ballot.id, Vote.user_id == user_id))
            state = await self._state(s, ballot)
            if not state.everyone_voted:
                return state, None
            story = await repo.get_story(s, ballot.story_id)
            reason, state = await self._everyone_voted(s, ballot, state, VoteSettings.of(story))
            return state, reason

    async def _everyone_voted(self, s: AsyncSession, ballot: Ballot, state: BallotState,
                              settings: VoteSettings) -> tuple[CloseReason | None, BallotState]:
        """Everyone voted: close now (EVERYONE) if the ballot has been open for
        ``min_open`` seconds, else move its deadline up to that moment (the timer closes
        it then, unless someone joins and votes first)."""
        early = ballot.opened_at + timedelta(seconds=settings.min_open)
        if self.clock() >= early:
            return CloseReason.EVERYONE, state
        if ballot.deadline > early:
            ballot.deadline = early
            await s.flush()
            state = replace(state, deadline=early)
        return None, state

    async def close(self, ballot_id: int, reason: CloseReason, *, closer_id: int | None = None,
                    may_close: MayClose | None = None) -> Settled | None:
        """Close the ballot now (everyone voted, or the host closed it) and decide the
        winner; ``closer_id`` is who closed it (the winner's scene counts against them).
        None when it was already closed — by another process or timer. With a winner,
        ``may_close(session, story, closer_id)`` may refuse (it raises; nothing closes)."""
        async with self.db.transaction() as s:
            return await self._close(s, ballot_id, reason, due_only=False, closer_id=closer_id, may_close=may_close)

    async def settle_due(self, ballot_id: int) -> Settled | None:
        """A ballot at or past its deadline: extended once when nobody voted, else
        closed. None when it is not due (any more) or someone else settled it."""
        now = self.clock()
        async with self.db.transaction() as s:
            ballot = await s.get(Ballot, ballot_id)
            if ballot is None:
                return None
            story = await repo.get_story(s, ballot.story_id)
            no_votes = ~exists().where(Vote.ballot_id == Ballot.id)
            extended = await s.scalar(
                update(Ballot)
                .where(Ballot.id == ballot_id, Ballot.closed_at.is_(None), Ballot.deadline <= now,
                       Ballot.extended.is_(False), no_votes)
                .values(deadline=now + timedelta(seconds=VoteSettings.of(story).duration), extended=True)
                .returning(Ballot.id)
            )
            if extended is not None:
                await s.refresh(ballot)
                return Settled(await self._state(s, ballot), extended=True)
            return await self._close(s, ballot_id, CloseReason.DEADLINE, due_only=True)

    async def take(self, ballot_id: int) -> bool:
        """Claim the decided ballot's winning scene for a generation (the closer does, at
        once). False when it was already taken — by another process or a recovery."""
        async with self.db.transaction() as s:
            return await s.scalar(
                update(Ballot)
                .where(Ballot.id == ballot_id, Ballot.winner_position.is_not(None), Ballot.taken_at.is_(None))
                .values(taken_at=self.clock(), takes=Ballot.takes + 1)
                .returning(Ballot.id)
            ) is not None

    def _stranded(self, now: datetime) -> Any:
        """Decided ballots whose winning scene nobody is writing: still the story's tip
        (an active story), no generation lease, no scene after the variant, and either
        never taken though closed :data:`TAKE_GRACE` ago, or taken :data:`RETAKE_AFTER`
        ago with a retry left."""
        return and_(
            Ballot.closed_at.is_not(None),
            Ballot.winner_position.is_not(None),
            Ballot.takes < MAX_TAKES,
            or_(
                and_(Ballot.taken_at.is_(None), Ballot.closed_at <= now - TAKE_GRACE),
                Ballot.taken_at <= now - RETAKE_AFTER,
            ),
            ~exists().where(GenerationLease.story_id == Ballot.story_id),
            ~exists().where(Scene.parent_variant_id == Ballot.variant_id),
            exists().where(
                Story.id == Ballot.story_id,
                Story.status == StoryStatus.ACTIVE.value,
                Story.mode == StoryMode.GROUP.value,
                SceneVariant.id == Ballot.variant_id,
                SceneVariant.is_active,
                SceneVariant.scene_id == Story.tip_scene_id,
            ).correlate(Ballot),
        )

    async def recover(self) -> list[Settled]:
        """Claim the decided ballots whose winning scene was never started, or whose
        generation died (see :meth:`_stranded`); each is returned to exactly one caller,
        whichever process asks — the caller starts its winner's scene."""
        now = self.clock()
        async with self.db.read() as s:
            # Driven from the group stories' tips (ix_ballots_story_id): no scan of old ballots.
            candidates = (await s.scalars(
                select(Ballot.id)
                .join(Story, Story.id == Ballot.story_id)
                .join(SceneVariant, and_(SceneVariant.id == Ballot.variant_id,
                                         SceneVariant.scene_id == Story.tip_scene_id))
                .where(Story.mode == StoryMode.GROUP.value, Story.status == StoryStatus.ACTIVE.value,
                       self._stranded(now))
                .order_by(Ballot.closed_at)
            )).all()
        claimed: list[Settled] = []
        for ballot_id in candidates:
            async with self.db.transaction() as s:
                won = await s.scalar(
                    update(Ballot).where(Ballot.id == ballot_id, self._stranded(now))
                    .values(taken_at=now, takes=Ballot.takes + 1).returning(Ballot.id)
                )
                if won is not None:
                    claimed.append(Settled(await self._state(s, await s.get_one(Ballot, ballot_id))))
        return claimed

    async def due(self) -> list[int]:
        """Open ballots at or past their deadline, oldest deadline first."""
        async with self.db.read() as s:
            return list((await s.scalars(
                select(Ballot.id).where(Ballot.closed_at.is_(None), Ballot.deadline <= self.clock())
                .order_by(Ballot.deadline)
            )).all())

    async def next_deadline(self) -> datetime | None:
        """The earliest deadline of an open ballot (what a timer sleeps until)."""
        async with self.db.read() as s:
            return await s.scalar(select(func.min(Ballot.deadline)).where(Ballot.closed_at.is_(None)))

    # --- internals -----------------------------------------------------------------------

    async def _story_of(self, s: AsyncSession, variant_id: int) -> Story:
        return await repo.get_story(s, await repo.variant_story_id(s, variant_id))

    async def _is_tip(self, s: AsyncSession, story: Story, variant_id: int) -> bool:
        return bool(await s.scalar(
            select(SceneVariant.id)
            .join(Scene, Scene.id == SceneVariant.scene_id)
            .where(SceneVariant.id == variant_id, SceneVariant.is_active, Scene.id == story.tip_scene_id)
        ))

    async def _latest(self, s: AsyncSession, variant_id: int) -> Ballot | None:
        return await s.scalar(
            select(Ballot).where(Ballot.variant_id == variant_id).order_by(Ballot.id.desc()).limit(1)
        )

    async def _new_ballot(self, s: AsyncSession, story: Story, variant_id: int) -> Ballot:
        now = self.clock()
        await s.execute(
            update(Ballot)
            .where(Ballot.story_id == story.id, Ballot.closed_at.is_(None), Ballot.variant_id != variant_id)
            .values(closed_at=now, closed_by=CloseReason.VOID.value, outcome=msg.VOTE_VOIDED)
        )
        ballot = Ballot(story_id=story.id, variant_id=variant_id, opened_at=now,
                        deadline=now + timedelta(seconds=VoteSettings.of(story).duration))
        s.add(ballot)
        await s.flush()
        return ballot

    async def _record(self, s: AsyncSession, ballot: Ballot, user_id: int, position: int, action: str | None,
                      settings: VoteSettings, choice_count: int) -> int | None:
        mine = await s.get(Vote, (ballot.id, user_id))
        action = " ".join(action.split()) if action else None
        if position == ACTION_POSITION:
            if not settings.own_actions:
                raise VoteRefused(msg.VOTE_NO_OWN_ACTIONS)
            proposed = await s.scalar(select(Vote.action_text).where(
                Vote.ballot_id == ballot.id, Vote.position == ACTION_POSITION, Vote.user_id != user_id).limit(1))
            if action is None:
                action = proposed or (mine.action_text if mine is not None else None)
                if action is None:
                    raise VoteRefused(msg.VOTE_NO_ACTION_YET)
            elif proposed is not None and proposed != action:
                raise VoteRefused(msg.VOTE_ACTION_TAKEN.format(action=proposed))
        elif not 1 <= position <= min(choice_count, 4):
            raise VoteRefused(msg.CHOICE_GONE)
        same = mine is not None and mine.position == position and (action is None or mine.action_text == action)
        if mine is not None:
            await s.delete(mine)
            await s.flush()
        if same:
            return None
        s.add(Vote(ballot_id=ballot.id, user_id=user_id, position=position, action_text=action,
                   cast_at=self.clock()))
        await s.flush()
        return position

    async def _close(self, s: AsyncSession, ballot_id: int, reason: CloseReason, *, due_only: bool,
                     closer_id: int | None = None, may_close: MayClose | None = None) -> Settled | None:
        now = self.clock()
        claim = update(Ballot).where(Ballot.id == ballot_id, Ballot.closed_at.is_(None))
        if due_only:
            claim = claim.where(Ballot.deadline <= now)
        # The claim: of every process and timer trying, exactly one gets the row back.
        won = await s.scalar(claim.values(closed_at=now, closed_by=reason.value, closed_by_user_id=closer_id)
                             .returning(Ballot.id))
        if won is None:
            return None
        ballot = await s.get_one(Ballot, ballot_id)
        await s.refresh(ballot)
        counts = await self._counts(s, ballot_id)
        ballot.winner_position, ballot.outcome = describe_outcome(counts, reason)
        if ballot.winner_position is not None and closer_id is not None and may_close is not None:
            await may_close(s, await repo.get_story(s, ballot.story_id), closer_id)  # raises: the claim is undone
        await s.flush()
        return Settled(await self._state(s, ballot))

    async def _counts(self, s: AsyncSession, ballot_id: int) -> dict[int, int]:
        rows = await s.execute(
            select(Vote.position, func.count()).where(Vote.ballot_id == ballot_id).group_by(Vote.position)
        )
        return {position: n for position, n in rows}

    async def _state(self, s: AsyncSession, ballot: Ballot) -> BallotState:
        counts = await self._counts(s, ballot.id)
        action = await s.scalar(select(Vote.action_text).where(
            Vote.ballot_id == ballot.id, Vote.position == ACTION_POSITION).order_by(Vote.cast_at).limit(1))
        eligible = await s.scalar(select(func.count()).select_from(StoryMember).where(
            StoryMember.story_id == ballot.story_id, StoryMember.status == MemberStatus.JOINED.value))
        options = tuple(c.text for c in await repo.get_choices(s, ballot.variant_id))[:4]
        return BallotState(
            ballot_id=ballot.id, story_id=ballot.story_id, variant_id=ballot.variant_id, opened_at=ballot.opened_at,
            deadline=ballot.deadline,
            extended=ballot.extended, closed_at=ballot.closed_at, closed_by=ballot.closed_by,
            closer_id=ballot.closed_by_user_id, winner=ballot.winner_position, outcome=ballot.outcome,
            options=options, action=action, counts=counts, voters=sum(counts.values()), eligible=max(eligible or 0, 1),
        )


async def host_of(db: Database, story_id: int) -> int | None:
    """The Discord id of the story's host (its owner), for the one ping the bot may send."""
    async with db.read() as s:
        story = await repo.get_story(s, story_id)
        user = await s.get(User, story.owner_id)
        return None if user is None else user.discord_id


def options_summary(state: BallotState) -> Sequence[tuple[int, str, int]]:
    """(option, text, votes) for every option of the ballot, in order."""
    rows = [(n, text, state.counts.get(n, 0)) for n, text in enumerate(state.options, start=1)]
    if state.action is not None:
        rows.append((ACTION_POSITION, state.action, state.counts.get(ACTION_POSITION, 0)))
    return rows
