"""Use cases that change a story (core/stories.py), on SQLite and PostgreSQL: each asks the
access policy itself, so a front end that forgot to check changes nothing."""

from __future__ import annotations

import pytest

from core import repository as repo
from core import stories
from core.access import Actor, Hidden, Refused
from core.db import Database
from core.errors import KahaniError
from core.models import MemberStatus, StoryMode, StoryStatus

GUILD = 77


async def group_story(db: Database) -> tuple[int, int, int, int]:
    """A server's group story: (story, owner, a joined player, a stranger) ids."""
    async with db.transaction() as s:
        owner, player, stranger = [await repo.get_or_create_user(s, 500 + n, f"u{n}") for n in range(3)]
        story = await repo.create_story(s, owner, "Tides", mode=StoryMode.GROUP.value, guild_id=GUILD)
        await repo.set_member(s, story.id, player.id, MemberStatus.JOINED)
        return story.id, owner.id, player.id, stranger.id


async def state(db: Database, story_id: int) -> tuple[str, str, dict[int, str]]:
    async with db.read() as s:
        story = await repo.get_story(s, story_id)
        members = {m.user_id: m.status for m in await repo.list_members(s, story_id)}
        return story.status, story.scene_length, members


async def test_a_player_or_stranger_may_not_end_change_invite_or_kick_and_nothing_changes(db: Database) -> None:
    story_id, owner, player, stranger = await group_story(db)
    before = await state(db, story_id)
    tries = [
        (Actor(player, GUILD, sees_thread=True), Refused),  # sees it, may not moderate it
        (Actor(stranger, None), Hidden),  # from DMs: as if there were no such story
        (Actor(None, GUILD, sees_thread=True), Refused),  # a viewer Kahani never stored
    ]
    for actor, refusal in tries:
        for attempt in (
            lambda s, a=actor: stories.end(s, story_id, a),
            lambda s, a=actor: stories.change_settings(s, story_id, a, scene_length="long"),
            lambda s, a=actor: stories.invite(s, story_id, a, stranger),
            lambda s, a=actor: stories.kick(s, story_id, a, player),
        ):
            with pytest.raises(refusal):
                async with db.transaction() as s:
                    await attempt(s)
    assert await state(db, story_id) == before


async def test_the_owner_and_a_moderator_of_its_thread_may(db: Database) -> None:
    story_id, owner, player, stranger = await group_story(db)
    moderator = Actor(stranger, GUILD, sees_thread=True, manages_thread=True)
    async with db.transaction() as s:
        await stories.invite(s, story_id, moderator, stranger)
        await stories.kick(s, story_id, Actor(owner, GUILD), player)
        await stories.change_settings(s, story_id, moderator, scene_length="long")
        with pytest.raises(KahaniError):
            await stories.kick(s, story_id, moderator, owner)  # the owner stays
        await stories.end(s, story_id, Actor(owner, None))  # from DMs too
    status, length, members = await state(db, story_id)
    assert (status, length) == (StoryStatus.ENDED.value, "long")
    assert members[stranger] == MemberStatus.INVITED.value and members[player] == MemberStatus.KICKED.value
    # A moderator from another server moderates nothing here (and, not a member, sees nothing).
    with pytest.raises(Hidden):
        async with db.transaction() as s:
            await stories.change_settings(s, story_id, Actor(None, GUILD + 1, manages_thread=True))
