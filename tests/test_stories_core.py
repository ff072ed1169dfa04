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


# --- async tables: /story notify and "Previously on…" (#19) ----------------------------------


async def test_only_joined_players_who_asked_are_notified(db: Database) -> None:
    story_id, _, player, stranger = await group_story(db)
    async with db.transaction() as s:
        with pytest.raises(KahaniError):  # not at the table: join first
            await stories.set_notify(s, story_id, stranger, True)
        await stories.set_notify(s, story_id, player, True)
    async with db.read() as s:
        assert await stories.notified(s, story_id) == [501]  # the player's Discord id; not the owner's
        assert await stories.notified(s, story_id, besides=player) == []  # they made the scene come
    async with db.transaction() as s:
        await repo.set_member(s, story_id, player, MemberStatus.KICKED)
    async with db.read() as s:
        assert await stories.notified(s, story_id) == []  # kicked: no more notices


async def test_a_recap_comes_after_the_break_and_not_before(db: Database) -> None:
    from datetime import timedelta

    from core import recap
    from core.models import SummaryKind

    story_id, owner, _, _ = await group_story(db)
    async with db.transaction() as s:
        _, first = await repo.add_scene(s, story_id, None, "The tide went out. Gulls cried over the flats.",
                                        [repo.ChoiceSpec("Walk out")])
        scene, second = await repo.add_scene(
            s, story_id, first.id, "You walked out onto the sand. A bell rang under the water. Mara turned back. "
            "The lantern guttered.", [repo.ChoiceSpec("Dig")])
        written = second.created_at
    async with db.read() as s:
        story = await repo.get_story(s, story_id)
        assert await recap.recap_due(s, story, written + timedelta(minutes=5)) is None
        # 12 hours later, with no summaries yet: the last scene's last sentences.
        assert await recap.recap_due(s, story, written + timedelta(hours=12)) == (
            "A bell rang under the water. Mara turned back. The lantern guttered.")
    async with db.transaction() as s:
        path = await repo.active_path(s, story_id)
        await repo.set_summary(s, second.id, path[-1].chapter_id, SummaryKind.ROLLING,
                               "Mara and you crossed the flats. A drowned bell rang. You dug where it rang.",
                               through_depth=1)
    async with db.transaction() as s:
        story = await repo.get_story(s, story_id)
        recapped = await recap.recap_due(s, story, written + timedelta(hours=13))
        assert recapped == "Mara and you crossed the flats. A drowned bell rang. You dug where it rang."
        await stories.change_settings(s, story_id, Actor(owner, GUILD, sees_thread=True), recap_after_hours=0)
    async with db.read() as s:
        assert await recap.recap_due(s, await repo.get_story(s, story_id), written + timedelta(days=9)) is None


def test_last_sentences_keep_whole_sentences_within_the_limit() -> None:
    from core.recap import last_sentences

    assert last_sentences("One. Two! Three? Four…") == "Two! Three? Four…"
    assert last_sentences("No end at all") == "No end at all"
    long = "word " * 300
    assert len(last_sentences(long)) <= 600 and last_sentences(long).endswith("…")
