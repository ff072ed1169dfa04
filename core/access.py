"""Who may see and do what with a story: the one place these rules live.

Every command, component, form and autocomplete of the Discord layer asks this module,
through ``bot/access.py``, which resolves the Discord side of an :class:`Actor` (can the
user see the story's thread, do they hold Manage Threads *in that thread*). The rules
(docs/architecture.md, "Who may see and do what"):

- A **solo** story is its owner's alone: nobody else sees it through any command,
  export or autocomplete (people may read a public thread in Discord, that is all).
- A **group** story in a server is seen and played by whoever can see its thread: for a
  public thread at an open table, the channel's viewers; for a private thread or an
  invite-only table, its members only (owner, invited, joined). From DMs or another
  server, only its owner and members reach it. A kicked member plays no more.
- **Moderators** (Manage Threads in the story's own thread, from the story's server) may
  end, delete, kick and edit (chapters, characters, settings) any story of that thread,
  and see a group story there even when it is members-only (Discord shows them private
  threads too); a solo story stays its owner's to see. They do not play, host or vote
  unless they could anyway (an open table in a thread they can read).
- The **host** (the owner) alone regenerates, branches, continues and switches versions.

A refusal to someone who may not see the story is the same message as "no such story":
it names nothing of the story, not even whether it exists.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from core import messages as msg
from core.errors import KahaniError, NotFound
from core.models import MemberStatus, Story, StoryMode
from core.votes import VoteSettings


class Need(enum.Enum):
    """What the caller wants to do with the story."""

    SEE = "see"  # read its details, text, chapters, cast; export it
    PLAY = "play"  # choose, act, vote, rate, narrate, resume
    HOST = "host"  # regenerate, branch, continue, switch versions
    MODERATE = "moderate"  # end, delete, kick, invite, settings, chapters, characters


class Refused(KahaniError):
    """The user may not do this to this story; the message names nothing of it."""


class Hidden(NotFound):
    """The user may not see the story: answered exactly as a story that does not exist."""

    def __init__(self) -> None:
        super().__init__(msg.STORY_NOT_FOUND)


@dataclass(frozen=True)
class Actor:
    """The person behind a request, as far as access goes.

    ``user_id`` is the database id (None for someone Kahani has never stored: they own
    and play nothing). ``guild_id`` is the server the request came from (None from DMs).
    ``sees_thread`` and ``manages_thread`` are about the *story's own thread*, resolved
    by the front end (Discord: View Channel and Manage Threads there); both False when
    the request comes from outside the story's server."""

    user_id: int | None
    guild_id: int | None = None
    sees_thread: bool = False
    manages_thread: bool = False


@dataclass(frozen=True)
class StoryFacts:
    """The rows of a story that access depends on, and the actor's membership."""

    owner_id: int
    guild_id: int | None
    mode: str
    private: bool
    open_table: bool
    member_status: str | None  # the actor's story_members status, None if not a member

    @property
    def group(self) -> bool:
        return self.mode == StoryMode.GROUP.value


def facts_of(story: Story, member_status: str | None, *, private_thread: bool = False) -> StoryFacts:
    """The facts of a story row (``private_thread``: the front end knows its thread is
    private, e.g. a story made before the ``private`` column)."""
    return StoryFacts(
        owner_id=story.owner_id, guild_id=story.guild_id, mode=story.mode,
        private=story.private or private_thread, open_table=VoteSettings.of(story).open_table,
        member_status=member_status,
    )


def _is_owner(story: StoryFacts, actor: Actor) -> bool:
    return actor.user_id is not None and actor.user_id == story.owner_id


def _is_member(story: StoryFacts) -> bool:
    return story.member_status in (MemberStatus.INVITED.value, MemberStatus.JOINED.value)


def _kicked(story: StoryFacts) -> bool:
    return story.member_status == MemberStatus.KICKED.value


def _from_its_server(story: StoryFacts, actor: Actor) -> bool:
    return story.guild_id is not None and actor.guild_id == story.guild_id


def members_only(story: StoryFacts) -> bool:
    """Only its members see it: a private thread, or an invite-only table."""
    return story.private or not story.open_table


def can_moderate(story: StoryFacts, actor: Actor) -> bool:
    """End, delete, kick, invite, settings, chapters, characters."""
    return _is_owner(story, actor) or (_from_its_server(story, actor) and actor.manages_thread)


def can_see(story: StoryFacts, actor: Actor) -> bool:
    """Details, text, chapters, cast, export, autocomplete."""
    if _is_owner(story, actor):
        return True
    if not story.group:
        return False
    if _is_member(story):
        return True
    if not _from_its_server(story, actor):
        return False
    if actor.manages_thread:
        return True
    return not members_only(story) and actor.sees_thread


def can_play(story: StoryFacts, actor: Actor) -> bool:
    """Choose, act, vote, join, rate, narrate, resume."""
    if _is_owner(story, actor):
        return True
    if not story.group or _kicked(story):
        return False
    if _is_member(story):
        return True
    return _from_its_server(story, actor) and not members_only(story) and actor.sees_thread


def can_host(story: StoryFacts, actor: Actor) -> bool:
    """Regenerate, branch, continue, switch versions: the owner (a group's host)."""
    return _is_owner(story, actor)


def refusal(need: Need, story: StoryFacts, actor: Actor, *, shown: bool = False) -> KahaniError | None:
    """Why ``actor`` may not do ``need`` to ``story`` (None: they may).

    Someone who may not see the story gets :class:`Hidden`, the same answer as for no
    story at all — unless ``shown``: the request comes from the story's own message (a
    button, a select), which Discord shows only to those who can read it, so the
    refusal may say why without revealing anything new."""
    if need is Need.MODERATE:
        if can_moderate(story, actor):
            return None
        return Refused(msg.NOT_YOUR_STORY_TO_MANAGE) if shown or can_see(story, actor) else Hidden()
    if not shown and not can_see(story, actor):
        return Hidden()
    if need is Need.HOST:
        if can_host(story, actor):
            return None
        return Refused(msg.GROUP_HOST_ONLY) if story.group and can_play(story, actor) else _why_not_play(story)
    allowed = can_see(story, actor) if need is Need.SEE else can_play(story, actor)
    return None if allowed else _why_not_play(story)


def _why_not_play(story: StoryFacts) -> Refused:
    if not story.group:
        return Refused(msg.NOT_YOUR_STORY)
    if _kicked(story):
        return Refused(msg.NOT_A_PLAYER_KICKED)
    return Refused(msg.VOTE_INVITE_ONLY)


def require(need: Need, story: StoryFacts, actor: Actor, *, shown: bool = False) -> None:
    """Raise the refusal when ``actor`` may not do ``need`` to ``story``."""
    refused = refusal(need, story, actor, shown=shown)
    if refused is not None:
        raise refused
