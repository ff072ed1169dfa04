"""Use cases that change a story: end it, change its settings, invite and kick players.

Each takes the :class:`~core.access.Actor` asking (resolved by the front end) and asks the
access policy itself, from the rows it reads in the caller's transaction, before it
changes anything — so a front end cannot forget the check. Closing a chapter is
``StoryEngine.new_chapter`` (it needs the model), which takes the actor the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import access, recap
from core import messages as msg
from core import repository as repo
from core.access import Actor, Need
from core.errors import KahaniError
from core.models import MemberStatus, Story, StoryMember, StoryMode, StoryStatus, User
from core.text import storable

AUTHOR_NOTE_MAX = 1000


async def moderated(session: AsyncSession, story_id: int, actor: Actor) -> Story:
    """The story, if ``actor`` may moderate it (else the policy's refusal)."""
    story = await repo.get_story(session, story_id)
    member = await repo.get_member(session, story.id, actor.user_id) if actor.user_id is not None else None
    access.require(Need.MODERATE, access.facts_of(story, member.status if member is not None else None), actor)
    return story


async def end(session: AsyncSession, story_id: int, actor: Actor) -> Story:
    """End the story: it stays readable, nothing is deleted, no scene follows."""
    story = await moderated(session, story_id, actor)
    story.status = StoryStatus.ENDED.value
    return story


async def change_settings(session: AsyncSession, story_id: int, actor: Actor, *, scene_length: str | None = None,
                          point_of_view: str | None = None, recap_after_hours: int | None = None) -> Story:
    """Change the story's scene length, point of view and the break after which a recap
    comes (core/recap.py; 0: never) — None keeps a setting."""
    story = await moderated(session, story_id, actor)
    if scene_length:
        story.scene_length = scene_length
    if point_of_view:
        story.point_of_view = point_of_view
    if recap_after_hours is not None:
        if not 0 <= recap_after_hours <= recap.MAX_HOURS:
            raise KahaniError(msg.RECAP_BAD_HOURS.format(hours=recap_after_hours, most=recap.MAX_HOURS))
        story.settings = {**(story.settings or {}), recap.SETTINGS_KEY: recap_after_hours}
    return story


async def check_new_story_limit(session: AsyncSession, user_id: int, *, per_hour: int, now: datetime) -> None:
    """Refuse a new story when the user started ``per_hour`` in the last hour (0: no limit)."""
    if per_hour <= 0:
        return
    since = now - timedelta(hours=1)
    recent = list(await session.scalars(
        select(Story.created_at).where(Story.owner_id == user_id, Story.created_at > since)
        .order_by(Story.created_at).limit(per_hour)
    ))
    if len(recent) >= per_hour:
        wait = recent[0] + timedelta(hours=1) - now
        raise KahaniError(msg.STORY_LIMIT.format(count=per_hour, minutes=max(1, math.ceil(wait.total_seconds() / 60))))


@dataclass(frozen=True)
class StoryDetails:
    """What the story form holds, checked and storable (bot/ui: the form's limits)."""

    title: str
    genre: str = ""
    tone: str = ""
    world_setting: str = ""
    premise: str = ""


async def edit_details(session: AsyncSession, story_id: int, actor: Actor, details: StoryDetails) -> Story:
    """Change the story's title, genre, tone, world and premise (the next scene's prompt
    uses them; scenes already written stay as they are)."""
    story = await moderated(session, story_id, actor)
    story.title = storable(details.title).strip() or story.title
    story.genre = storable(details.genre).strip()
    story.tone = storable(details.tone).strip()
    story.world_setting = storable(details.world_setting).strip()
    story.premise = storable(details.premise).strip()
    return story


async def set_author_note(session: AsyncSession, story_id: int, actor: Actor, note: str) -> Story:
    """Set (or, with blank text, clear) the story's author's note: a note to the
    storyteller placed near the end of every scene's prompt."""
    story = await moderated(session, story_id, actor)
    note = storable(note).strip()
    if len(note) > AUTHOR_NOTE_MAX:
        raise KahaniError(msg.TEXT_TOO_LONG.format(field=msg.FIELD_AUTHOR_NOTE, limit=AUTHOR_NOTE_MAX,
                                                   length=len(note)))
    story.author_note = note
    return story


async def _group_story(session: AsyncSession, story_id: int, actor: Actor) -> Story:
    story = await moderated(session, story_id, actor)
    if story.mode != StoryMode.GROUP.value:
        raise KahaniError(msg.GROUP_ONLY)
    return story


async def invite(session: AsyncSession, story_id: int, actor: Actor, user_id: int) -> Story:
    """Invite a player to a group story (a kicked one comes back invited; a member stays)."""
    story = await _group_story(session, story_id, actor)
    member = await repo.get_member(session, story.id, user_id)
    if member is None or member.status == MemberStatus.KICKED.value:
        await repo.set_member(session, story.id, user_id, MemberStatus.INVITED)
    return story


async def kick(session: AsyncSession, story_id: int, actor: Actor, user_id: int) -> Story:
    """Take a player off a group story's table: their votes stop counting."""
    story = await _group_story(session, story_id, actor)
    if user_id == story.owner_id:
        raise KahaniError(msg.MEMBER_KICK_OWNER)
    await repo.set_member(session, story.id, user_id, MemberStatus.KICKED)
    return story


async def set_notify(session: AsyncSession, story_id: int, user_id: int, on: bool) -> Story:
    """A joined player's opt-in to a DM when the story's next scene is up (its vote open)."""
    story = await repo.get_story(session, story_id)
    if story.mode != StoryMode.GROUP.value:
        raise KahaniError(msg.GROUP_ONLY)
    member = await repo.get_member(session, story.id, user_id)
    if member is None or member.status != MemberStatus.JOINED.value:
        raise KahaniError(msg.NOTIFY_JOIN_FIRST)
    member.notify = on
    return story


async def notified(session: AsyncSession, story_id: int, *, besides: int | None = None) -> list[int]:
    """The Discord ids of the story's joined players who asked for a DM (``/story
    notify``), but ``besides`` (a user id: whoever made the scene come)."""
    rows = await session.execute(
        select(User.discord_id).join(StoryMember, StoryMember.user_id == User.id).where(
            StoryMember.story_id == story_id, StoryMember.status == MemberStatus.JOINED.value,
            StoryMember.notify.is_(True), User.discord_id.is_not(None),
            *([StoryMember.user_id != besides] if besides is not None else []))
    )
    return [discord_id for (discord_id,) in rows if discord_id is not None]
