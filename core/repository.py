"""The story repository: reads and writes of the story tree, chapters, characters,
members, user settings and generation leases.

Every function takes the caller's ``AsyncSession`` (one unit of work, see
``core.db.Database.transaction``) and never commits: the caller decides when a unit
of work ends. Reading the active path walks up from the story's tip in one recursive
query, so its cost does not grow with the story (docs/architecture.md, "The story tree").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Integer, and_, bindparam, delete, false, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.errors import Conflict, NotFound
from core.models import (
    Chapter,
    Character,
    GenerationLease,
    InstructionKind,
    MemberRole,
    MemberStatus,
    Scene,
    SceneChoice,
    SceneVariant,
    Story,
    StoryMember,
    StoryMode,
    Summary,
    SummaryKind,
    User,
    UserSettings,
    VariantKind,
    VariantMessage,
    utcnow,
)

LEASE_TTL = timedelta(seconds=30)


@dataclass(frozen=True)
class ChoiceSpec:
    """A choice to store: its full text and the (≤ 80 character) button label."""

    text: str
    label: str = ""


@dataclass(frozen=True)
class PathScene:
    """One scene of the active path, with the variant the path goes through."""

    scene_id: int
    depth: int
    chapter_id: int
    variant: SceneVariant


# --- users ----------------------------------------------------------------------------


async def find_user(session: AsyncSession, discord_id: int) -> User | None:
    """The user with this Discord id, if Kahani has stored them (nothing is created)."""
    return await session.scalar(select(User).where(User.discord_id == discord_id))


async def get_or_create_user(
    session: AsyncSession, discord_id: int | None, display_name: str
) -> User:
    """The user with this Discord id (created on first sight; display name kept fresh)."""
    if discord_id is not None:
        user = await session.scalar(select(User).where(User.discord_id == discord_id))
        if user is not None:
            if display_name and user.display_name != display_name:
                user.display_name = display_name[:100]
            return user
    user = User(discord_id=discord_id, display_name=display_name[:100])
    session.add(user)
    await session.flush()
    return user


async def get_user_settings(session: AsyncSession, user_id: int) -> UserSettings:
    """The user's settings; a row with the defaults is created on first use."""
    settings = await session.get(UserSettings, user_id)
    if settings is None:
        settings = UserSettings(user_id=user_id, preferences={})
        session.add(settings)
        await session.flush()
    return settings


async def update_user_settings(session: AsyncSession, user_id: int, **changes: Any) -> UserSettings:
    """Change some of a user's settings (scene_length, tts_voice, tts_speed, auto_narrate…)."""
    settings = await get_user_settings(session, user_id)
    for name, value in changes.items():
        if not hasattr(UserSettings, name) or name in ("user_id", "user"):
            raise ValueError(f"unknown user setting {name!r}")
        setattr(settings, name, value)
    await session.flush()
    return settings


# --- stories --------------------------------------------------------------------------


async def create_story(
    session: AsyncSession,
    owner: User,
    title: str,
    *,
    genre: str = "",
    tone: str = "",
    world_setting: str = "",
    premise: str = "",
    point_of_view: str = "second",
    scene_length: str = "medium",
    mode: str = "solo",
    guild_id: int | None = None,
    channel_id: int | None = None,
    thread_id: int | None = None,
    settings: dict[str, Any] | None = None,
    private: bool = False,
) -> Story:
    """Create a story with its owner as a member and its first (empty) chapter."""
    story = Story(
        owner_id=owner.id,
        title=title,
        genre=genre,
        tone=tone,
        world_setting=world_setting,
        premise=premise,
        point_of_view=point_of_view,
        scene_length=scene_length,
        mode=mode,
        guild_id=guild_id,
        channel_id=channel_id,
        thread_id=thread_id,
        settings=settings or {},
        private=private,
    )
    session.add(story)
    await session.flush()
    session.add(
        StoryMember(
            story_id=story.id,
            user_id=owner.id,
            role=MemberRole.OWNER.value,
            status=MemberStatus.JOINED.value,
        )
    )
    session.add(Chapter(story_id=story.id, number=1, title="Chapter 1"))
    await session.flush()
    return story


async def get_story(session: AsyncSession, story_id: int, *, for_update: bool = False) -> Story:
    """The story, or NotFound."""
    query = select(Story).where(Story.id == story_id)
    if for_update:
        query = query.with_for_update()
    story = await session.scalar(query)
    if story is None:
        raise NotFound(f"Story #{story_id} does not exist (it may have been deleted).")
    return story


async def list_stories(
    session: AsyncSession,
    *,
    owner_id: int | None = None,
    guild_id: int | None = None,
    status: str | None = None,
    limit: int = 25,
) -> Sequence[Story]:
    """Stories, newest first, filtered by owner, guild and status."""
    query = select(Story).order_by(Story.updated_at.desc(), Story.id.desc()).limit(limit)
    if owner_id is not None:
        query = query.where(Story.owner_id == owner_id)
    if guild_id is not None:
        query = query.where(Story.guild_id == guild_id)
    if status is not None:
        query = query.where(Story.status == status)
    return (await session.scalars(query)).all()


async def story_for_thread(session: AsyncSession, thread_id: int) -> Story | None:
    """The story that lives in this Discord thread (or DM channel), if any."""
    return await session.scalar(
        select(Story).where(
            (Story.thread_id == thread_id) | ((Story.channel_id == thread_id) & Story.guild_id.is_(None)))
        .order_by(Story.updated_at.desc(), Story.id.desc()).limit(1)
    )


async def stories_for_user(
    session: AsyncSession, user_id: int | None, *, guild_id: int | None = None, search: str = "", limit: int = 25
) -> Sequence[Story]:
    """Stories the user owns or plays in (and, with ``guild_id``, the server's group
    stories), newest first, optionally filtered by a piece of the title. A superset of
    what the user may see: the caller filters with the access policy (bot/access.py)."""
    visible: Any = false()
    if user_id is not None:
        member = select(StoryMember.story_id).where(
            StoryMember.user_id == user_id, StoryMember.status != MemberStatus.KICKED.value
        )
        visible = (Story.owner_id == user_id) | Story.id.in_(member)
    if guild_id is not None:
        visible = visible | ((Story.guild_id == guild_id) & (Story.mode == StoryMode.GROUP.value))
    query = select(Story).where(visible).order_by(Story.updated_at.desc(), Story.id.desc()).limit(limit)
    if search:
        query = query.where(func.lower(Story.title).contains(search.lower()))
    return (await session.scalars(query)).all()


async def member_statuses(session: AsyncSession, story_ids: Sequence[int], user_id: int) -> dict[int, str]:
    """The user's membership status in each of these stories they are a member of."""
    if not story_ids:
        return {}
    rows = await session.execute(
        select(StoryMember.story_id, StoryMember.status).where(
            StoryMember.user_id == user_id, StoryMember.story_id.in_(story_ids))
    )
    return {story_id: status for story_id, status in rows}


async def get_member(session: AsyncSession, story_id: int, user_id: int) -> StoryMember | None:
    return await session.get(StoryMember, (story_id, user_id))


async def delete_story(session: AsyncSession, story_id: int) -> None:
    """Delete a story and, through the schema's cascades, every row of its tree."""
    result = await session.execute(delete(Story).where(Story.id == story_id))
    # A DELETE's result is a CursorResult; AsyncSession.execute is typed as the plain Result.
    if cast("CursorResult[Any]", result).rowcount == 0:
        raise NotFound(f"Story #{story_id} does not exist (it may have been deleted).")


# --- members --------------------------------------------------------------------------


async def set_member(
    session: AsyncSession, story_id: int, user_id: int, status: MemberStatus
) -> StoryMember:
    """Add or change a member (invited, joined, kicked). The owner cannot be changed."""
    member = await session.get(StoryMember, (story_id, user_id))
    if member is None:
        member = StoryMember(story_id=story_id, user_id=user_id, status=status.value)
        session.add(member)
    elif member.role == MemberRole.OWNER.value:
        raise Conflict("The story's owner is always a member.")
    else:
        member.status = status.value
    await session.flush()
    return member


async def list_members(session: AsyncSession, story_id: int) -> Sequence[StoryMember]:
    query = select(StoryMember).where(StoryMember.story_id == story_id).order_by(StoryMember.joined_at)
    return (await session.scalars(query)).all()


# --- the tree -------------------------------------------------------------------------


def _choice_rows(variant_id: int, choices: Sequence[ChoiceSpec]) -> list[SceneChoice]:
    return [
        SceneChoice(
            variant_id=variant_id,
            position=position,
            text=choice.text,
            label=(choice.label or choice.text)[:80],
        )
        for position, choice in enumerate(choices, start=1)
    ]


async def _first_chapter(session: AsyncSession, story_id: int) -> Chapter:
    chapter = await session.scalar(
        select(Chapter).where(Chapter.story_id == story_id, Chapter.parent_chapter_id.is_(None))
    )
    if chapter is None:  # stories are created with one; recreate if it was lost
        chapter = Chapter(story_id=story_id, number=1, title="Chapter 1")
        session.add(chapter)
        await session.flush()
    return chapter


async def add_scene(
    session: AsyncSession,
    story_id: int,
    parent_variant_id: int | None,
    content: str,
    choices: Sequence[ChoiceSpec] = (),
    *,
    instruction_kind: InstructionKind = InstructionKind.OPENING,
    instruction: str = "",
    token_count: int = 0,
    model: str = "",
    created_by_id: int | None = None,
) -> tuple[Scene, SceneVariant]:
    """Append the next scene to the story's path, with its first variant and choices.

    The new scene continues the tip's active variant (or is the first scene of an empty
    story); anything else is a Conflict, so two generations can never both append.
    """
    story = await get_story(session, story_id)
    if parent_variant_id is None:
        if story.tip_scene_id is not None:
            raise Conflict("This story already has its first scene.")
        chapter = await _first_chapter(session, story_id)
        depth = 0
    else:
        row = (
            await session.execute(
                select(SceneVariant, Scene)
                .join(Scene, Scene.id == SceneVariant.scene_id)
                .where(SceneVariant.id == parent_variant_id, Scene.story_id == story_id)
            )
        ).one_or_none()
        if row is None:
            raise NotFound("That scene is not part of this story any more.")
        parent_variant, parent_scene = row
        if parent_scene.id != story.tip_scene_id or not parent_variant.is_active:
            raise Conflict("That scene is no longer the last one of the story.")
        opened = await session.scalar(
            select(Chapter).where(Chapter.opened_after_variant_id == parent_variant_id)
        )
        chapter_id = opened.id if opened is not None else parent_scene.chapter_id
        chapter = opened or await session.get_one(Chapter, chapter_id)
        depth = parent_scene.depth + 1

    scene = Scene(
        story_id=story_id, chapter_id=chapter.id, parent_variant_id=parent_variant_id, depth=depth
    )
    session.add(scene)
    await session.flush()
    if chapter.start_scene_id is None:
        chapter.start_scene_id = scene.id
    variant = SceneVariant(
        scene_id=scene.id,
        number=1,
        kind=VariantKind.ORIGINAL.value,
        instruction_kind=instruction_kind.value,
        instruction=instruction,
        content=content,
        token_count=token_count,
        is_active=True,
        model=model,
        created_by_id=created_by_id,
    )
    session.add(variant)
    await session.flush()
    session.add_all(_choice_rows(variant.id, choices))
    story.tip_scene_id = scene.id
    story.updated_at = utcnow()
    await session.flush()
    return scene, variant


async def get_variant(session: AsyncSession, variant_id: int) -> SceneVariant:
    variant = await session.get(SceneVariant, variant_id)
    if variant is None:
        raise NotFound("That version of the scene does not exist any more.")
    return variant


async def variant_story_id(session: AsyncSession, variant_id: int) -> int:
    """The id of the story a variant belongs to (NotFound when it is gone)."""
    story_id = await session.scalar(
        select(Scene.story_id).join(SceneVariant, SceneVariant.scene_id == Scene.id).where(
            SceneVariant.id == variant_id
        )
    )
    if story_id is None:
        raise NotFound("That version of the scene does not exist any more.")
    return story_id


async def list_variants(session: AsyncSession, scene_id: int) -> Sequence[SceneVariant]:
    query = select(SceneVariant).where(SceneVariant.scene_id == scene_id).order_by(SceneVariant.number)
    return (await session.scalars(query)).all()


async def get_choices(session: AsyncSession, variant_id: int) -> Sequence[SceneChoice]:
    query = select(SceneChoice).where(SceneChoice.variant_id == variant_id).order_by(SceneChoice.position)
    return (await session.scalars(query)).all()


async def replace_choices(
    session: AsyncSession, variant_id: int, choices: Sequence[ChoiceSpec]
) -> None:
    """Store a variant's choices (e.g. ones fetched by the extra call after the scene)."""
    await session.execute(delete(SceneChoice).where(SceneChoice.variant_id == variant_id))
    session.add_all(_choice_rows(variant_id, choices))
    await session.flush()


async def add_variant(
    session: AsyncSession,
    scene_id: int,
    kind: VariantKind,
    content: str,
    choices: Sequence[ChoiceSpec] = (),
    *,
    instruction_kind: InstructionKind | None = None,
    instruction: str | None = None,
    source_variant_id: int | None = None,
    token_count: int = 0,
    model: str = "",
    created_by_id: int | None = None,
    activate: bool = True,
) -> SceneVariant:
    """Add a new variant of a scene (nothing is overwritten) and, by default, make it active.

    Without an explicit instruction, the variant keeps the one of the variant it was made
    from (a regenerated scene remembers the choice that led to it).
    """
    source = await get_variant(session, source_variant_id) if source_variant_id else None
    if source is not None and source.scene_id != scene_id:
        raise Conflict("A variant can only be made from a variant of the same scene.")
    if source is None:
        source = await session.scalar(
            select(SceneVariant).where(SceneVariant.scene_id == scene_id).order_by(SceneVariant.number).limit(1)
        )
        if source is None:
            raise NotFound("That scene does not exist any more.")
    number = await session.scalar(
        select(func.max(SceneVariant.number)).where(SceneVariant.scene_id == scene_id)
    )
    variant = SceneVariant(
        scene_id=scene_id,
        number=(number or 0) + 1,
        kind=kind.value,
        instruction_kind=(instruction_kind or InstructionKind(source.instruction_kind)).value,
        instruction=source.instruction if instruction is None else instruction,
        source_variant_id=source.id,
        content=content,
        token_count=token_count,
        is_active=False,
        model=model,
        created_by_id=created_by_id,
    )
    session.add(variant)
    await session.flush()
    session.add_all(_choice_rows(variant.id, choices))
    await session.flush()
    if activate:
        await set_active_variant(session, variant.id)
    return variant


async def set_active_variant(session: AsyncSession, variant_id: int) -> int:
    """Make a variant its scene's active one and recompute the story's tip.

    The scenes that followed the previously active variant are kept and come back when it
    is selected again. Returns the new tip scene id.
    """
    variant = await get_variant(session, variant_id)
    scene = await session.get_one(Scene, variant.scene_id)
    # Two statements: the partial unique index allows one active variant at any moment.
    await session.execute(
        update(SceneVariant)
        .where(SceneVariant.scene_id == scene.id, SceneVariant.is_active, SceneVariant.id != variant_id)
        .values(is_active=False)
    )
    await session.execute(
        update(SceneVariant).where(SceneVariant.id == variant_id).values(is_active=True)
    )
    tip = await _walk_down(session, scene.id)
    await session.execute(
        update(Story).where(Story.id == scene.story_id).values(tip_scene_id=tip, updated_at=utcnow())
    )
    return tip


async def _walk_down(session: AsyncSession, scene_id: int) -> int:
    """The last scene reached from ``scene_id`` by following active variants."""
    child = aliased(Scene)
    active = aliased(SceneVariant)
    down = select(Scene.id.label("scene_id"), literal(0).label("n")).where(Scene.id == scene_id).cte(
        "down", recursive=True
    )
    down = down.union_all(
        select(child.id, down.c.n + 1)
        .select_from(down)
        .join(active, and_(active.scene_id == down.c.scene_id, active.is_active))
        .join(child, child.parent_variant_id == active.id)
    )
    tip = await session.scalar(select(down.c.scene_id).order_by(down.c.n.desc()).limit(1))
    assert tip is not None
    return tip


async def active_path(
    session: AsyncSession, story_id: int, limit: int | None = None
) -> list[PathScene]:
    """The scenes of the story's active path, oldest first: all, or the last ``limit``.

    One query whatever the story length: a recursive walk up from the stored tip that
    stops after ``limit`` scenes, so only those rows are read.
    """
    return await _walk_up(session, "story", story_id, limit)


async def ancestry(session: AsyncSession, variant_id: int, limit: int | None = None) -> list[PathScene]:
    """The path that ends at this variant (its scene and the scenes above it), oldest
    first: all, or the last ``limit``. One query, like :func:`active_path`."""
    return await _walk_up(session, "variant", variant_id, limit)


_NO_LIMIT = 2**31 - 1


@functools.cache
def _walk_up_statement(start: str):  # the type is inferred: SQLAlchemy 2.0 and 2.1 spell Select[...] differently
    """The recursive walk up the tree, built once (building it costs more than running
    it): from the tip of story ``:start`` or from variant ``:start``, ``:limit`` scenes."""

    # The walk carries every column it returns, so the rows are read by primary key as
    # it goes up and nothing joins back to the whole table afterwards.
    def columns(variant: Any, scene: Any) -> list[Any]:
        return [getattr(variant, c.key) for c in SceneVariant.__table__.columns] + [
            scene.depth.label("depth"),
            scene.chapter_id.label("chapter_id"),
            scene.parent_variant_id.label("parent_variant_id"),
        ]

    anchor = aliased(SceneVariant)
    if start == "story":
        tip_scene = select(Story.tip_scene_id).where(Story.id == bindparam("start")).scalar_subquery()
        condition = and_(anchor.scene_id == tip_scene, anchor.is_active)
    else:
        condition = anchor.id == bindparam("start")
    up = (
        select(*columns(anchor, Scene), literal(1).label("n"))
        .join(Scene, Scene.id == anchor.scene_id)
        .where(condition)
        .cte("up", recursive=True)
    )
    parent_variant = aliased(SceneVariant)
    parent_scene = aliased(Scene)
    up = up.union_all(
        select(*columns(parent_variant, parent_scene), up.c.n + 1)
        .select_from(up)
        .join(parent_variant, parent_variant.id == up.c.parent_variant_id)
        .join(parent_scene, parent_scene.id == parent_variant.scene_id)
        .where(up.c.n < bindparam("limit"))
    )
    variant = aliased(SceneVariant, up)
    return select(variant, up.c.depth, up.c.chapter_id).order_by(up.c.depth)


async def _walk_up(session: AsyncSession, start: str, start_id: int, limit: int | None) -> list[PathScene]:
    if limit is not None and limit <= 0:
        return []
    rows = await session.execute(
        _walk_up_statement(start), {"start": start_id, "limit": _NO_LIMIT if limit is None else limit}
    )
    return [
        PathScene(scene_id=v.scene_id, depth=depth, chapter_id=chapter_id, variant=v)
        for v, depth, chapter_id in rows
    ]


async def tip(session: AsyncSession, story_id: int) -> PathScene | None:
    """The last scene of the active path (None for a story with no scene yet)."""
    path = await active_path(session, story_id, limit=1)
    return path[0] if path else None


async def rate_variant(
    session: AsyncSession, variant_id: int, *, rating: int | None = None, favourite: bool | None = None
) -> SceneVariant:
    """Set a variant's rating (1–5, or None to clear) and/or its favourite flag."""
    variant = await get_variant(session, variant_id)
    if rating is not None and not 1 <= rating <= 5:
        raise ValueError("rating must be between 1 and 5")
    variant.rating = rating if rating is not None else variant.rating
    if favourite is not None:
        variant.favourite = favourite
    await session.flush()
    return variant


# --- chapters and summaries -----------------------------------------------------------


async def open_chapter(
    session: AsyncSession,
    story_id: int,
    after_variant_id: int,
    *,
    summary: str,
    title: str = "",
    summary_token_count: int = 0,
) -> Chapter:
    """Close the chapter that ends at ``after_variant_id`` with its summary and open the
    next one, which starts with the scene that will follow that variant."""
    row = (
        await session.execute(
            select(Scene)
            .join(SceneVariant, SceneVariant.scene_id == Scene.id)
            .where(SceneVariant.id == after_variant_id, Scene.story_id == story_id)
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("That scene is not part of this story any more.")
    if await session.scalar(select(Chapter.id).where(Chapter.opened_after_variant_id == after_variant_id)):
        raise Conflict("A new chapter already starts after this scene.")
    closing = await session.get_one(Chapter, row.chapter_id)
    await set_summary(
        session,
        after_variant_id,
        closing.id,
        SummaryKind.CHAPTER,
        summary,
        through_depth=row.depth,
        token_count=summary_token_count,
    )
    chapter = Chapter(
        story_id=story_id,
        number=closing.number + 1,
        title=title or f"Chapter {closing.number + 1}",
        parent_chapter_id=closing.id,
        opened_after_variant_id=after_variant_id,
    )
    session.add(chapter)
    await session.flush()
    return chapter


async def set_summary(
    session: AsyncSession,
    variant_id: int,
    chapter_id: int,
    kind: SummaryKind,
    content: str,
    *,
    through_depth: int,
    token_count: int = 0,
    edited_by_id: int | None = None,
) -> Summary:
    """Store (or replace) the chapter or rolling summary made at a variant."""
    summary = await session.scalar(
        select(Summary).where(Summary.variant_id == variant_id, Summary.kind == kind.value)
    )
    if summary is None:
        summary = Summary(variant_id=variant_id, chapter_id=chapter_id, kind=kind.value)
        session.add(summary)
    summary.content = content
    summary.token_count = token_count
    summary.through_depth = through_depth
    summary.edited_by_id = edited_by_id
    summary.updated_at = utcnow()
    await session.flush()
    return summary


@dataclass(frozen=True)
class PathChapter:
    """A chapter of the active path, oldest first, with its closing summary (if closed)."""

    chapter: Chapter
    summary: Summary | None


async def path_chapters(session: AsyncSession, story_id: int) -> list[PathChapter]:
    """The chapters of the active path, oldest first, each with its closing summary.

    A chapter opened after the tip's active variant (the next scene starts it) counts.
    """
    current = await current_chapter_id(session, story_id)
    return [] if current is None else await chapter_chain(session, current)


async def chapter_chain(session: AsyncSession, chapter_id: int) -> list[PathChapter]:
    """This chapter and the ones before it on its path, oldest first, each with its
    closing summary (None for ``chapter_id`` itself, which is still open there).

    Walks up the chapter tree in one query (chapters are few).
    """
    # Walking up, each row carries the variant after which its successor on the path
    # opened: the closing summary of that row's chapter is stored there.
    up = (
        select(
            Chapter.id.label("chapter_id"),
            Chapter.parent_chapter_id.label("parent_id"),
            Chapter.opened_after_variant_id.label("opened_after"),
            literal(None, type_=Integer).label("closed_at_variant"),
        )
        .where(Chapter.id == chapter_id)
        .cte("chapters_up", recursive=True)
    )
    parent = aliased(Chapter)
    up = up.union_all(
        select(parent.id, parent.parent_chapter_id, parent.opened_after_variant_id, up.c.opened_after)
        .select_from(up)
        .join(parent, parent.id == up.c.parent_id)
    )
    rows = await session.execute(
        select(Chapter, Summary)
        .join(up, up.c.chapter_id == Chapter.id)
        .outerjoin(
            Summary,
            and_(
                Summary.variant_id == up.c.closed_at_variant,
                Summary.kind == SummaryKind.CHAPTER.value,
            ),
        )
        .order_by(Chapter.number)
    )
    return [PathChapter(chapter=chapter, summary=summary) for chapter, summary in rows]


async def current_chapter_id(session: AsyncSession, story_id: int) -> int | None:
    """The chapter the next scene of the story belongs to."""
    tip_scene = aliased(Scene)
    row = (
        await session.execute(
            select(tip_scene.chapter_id, Chapter.id)
            .select_from(Story)
            .join(tip_scene, tip_scene.id == Story.tip_scene_id)
            .join(SceneVariant, and_(SceneVariant.scene_id == tip_scene.id, SceneVariant.is_active))
            .outerjoin(Chapter, Chapter.opened_after_variant_id == SceneVariant.id)
            .where(Story.id == story_id)
        )
    ).one_or_none()
    if row is None:
        first = await session.scalar(
            select(Chapter.id).where(Chapter.story_id == story_id, Chapter.parent_chapter_id.is_(None))
        )
        return first
    tip_chapter, opened = row
    return opened or tip_chapter


async def rolling_summary(
    session: AsyncSession, path: Sequence[PathScene], chapter_id: int | None = None
) -> Summary | None:
    """The newest rolling summary made at one of these path scenes' variants (in
    ``chapter_id`` when given)."""
    ids = [p.variant.id for p in path if chapter_id is None or p.chapter_id == chapter_id]
    if not ids:
        return None
    return await session.scalar(
        select(Summary)
        .where(Summary.variant_id.in_(ids), Summary.kind == SummaryKind.ROLLING.value)
        .order_by(Summary.through_depth.desc())
        .limit(1)
    )


# --- characters -----------------------------------------------------------------------


async def add_character(
    session: AsyncSession,
    story_id: int,
    name: str,
    *,
    description: str = "",
    personality: str = "",
    voice: str | None = None,
) -> Character:
    exists = await session.scalar(
        select(Character.id).where(Character.story_id == story_id, func.lower(Character.name) == name.lower())
    )
    if exists:
        raise Conflict(f"This story already has a character called {name}.")
    character = Character(
        story_id=story_id, name=name, description=description, personality=personality, voice=voice
    )
    session.add(character)
    await session.flush()
    return character


async def list_characters(session: AsyncSession, story_id: int) -> Sequence[Character]:
    query = select(Character).where(Character.story_id == story_id).order_by(Character.name)
    return (await session.scalars(query)).all()


async def get_character(session: AsyncSession, story_id: int, name: str) -> Character:
    character = await session.scalar(
        select(Character).where(Character.story_id == story_id, func.lower(Character.name) == name.lower())
    )
    if character is None:
        raise NotFound(f"This story has no character called {name}.")
    return character


async def update_character(session: AsyncSession, story_id: int, name: str, **changes: Any) -> Character:
    character = await get_character(session, story_id, name)
    for field in ("name", "description", "personality", "voice"):
        if field in changes and changes[field] is not None:
            setattr(character, field, changes[field])
    await session.flush()
    return character


async def remove_character(session: AsyncSession, story_id: int, name: str) -> None:
    character = await get_character(session, story_id, name)
    await session.delete(character)
    await session.flush()


# --- generation leases ----------------------------------------------------------------


def insert_for(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def acquire_lease(
    session: AsyncSession,
    story_id: int,
    holder: str,
    *,
    now: datetime,
    ttl: timedelta = LEASE_TTL,
    purpose: str = "",
    frontend_ref: str | None = None,
) -> bool:
    """Take the story's generation lease if nobody holds it (or the holder's expired).

    One statement: an insert that, on conflict, takes over only an expired lease. Of two
    concurrent attempts exactly one wins, on SQLite and on PostgreSQL. ``holder`` must be
    unique per generation (e.g. process id plus a random part).
    """
    insert = insert_for(session)
    values = dict(
        story_id=story_id,
        holder=holder,
        purpose=purpose,
        frontend_ref=frontend_ref,
        started_at=now,
        heartbeat_at=now,
        expires_at=now + ttl,
    )
    statement = insert(GenerationLease).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[GenerationLease.story_id],
        set_={k: statement.excluded[k] for k in values if k != "story_id"},
        where=GenerationLease.expires_at <= statement.excluded.started_at,
    ).returning(GenerationLease.holder)
    won = await session.scalar(statement)
    return won == holder


async def heartbeat_lease(
    session: AsyncSession, story_id: int, holder: str, *, now: datetime, ttl: timedelta = LEASE_TTL
) -> bool:
    """Extend a lease this holder still has; False when it was lost (expired and taken)."""
    result = await session.execute(
        update(GenerationLease)
        .where(GenerationLease.story_id == story_id, GenerationLease.holder == holder)
        .values(heartbeat_at=now, expires_at=now + ttl)
    )
    return cast("CursorResult[Any]", result).rowcount == 1  # a CursorResult, typed as Result


async def release_lease(session: AsyncSession, story_id: int, holder: str) -> bool:
    """Give the lease back (only if this holder still has it)."""
    result = await session.execute(
        delete(GenerationLease).where(
            GenerationLease.story_id == story_id, GenerationLease.holder == holder
        )
    )
    return cast("CursorResult[Any]", result).rowcount == 1  # a CursorResult, typed as Result


async def get_lease(session: AsyncSession, story_id: int) -> GenerationLease | None:
    return await session.get(GenerationLease, story_id)


async def reclaim_leases(
    session: AsyncSession, *, now: datetime, is_dead: Callable[[str], bool] = lambda holder: False
) -> list[GenerationLease]:
    """Remove and return the leases that expired, or whose holder ``is_dead`` says has
    died (e.g. a process of this host that no longer runs): their generations will never
    finish. Each is claimed by one statement, so with several processes sweeping, each
    lease is returned to exactly one of them."""
    held = (await session.execute(select(GenerationLease.story_id, GenerationLease.holder))).all()
    dead = [(story_id, holder) for story_id, holder in held if is_dead(holder)]
    reclaimed = await reclaim_expired_leases(session, now=now)
    for story_id, holder in dead:
        row = (
            await session.execute(
                delete(GenerationLease)
                .where(GenerationLease.story_id == story_id, GenerationLease.holder == holder)
                .returning(*GenerationLease.__table__.columns)
            )
        ).one_or_none()
        if row is not None:
            reclaimed.append(GenerationLease(**row._asdict()))
    return reclaimed


async def reclaim_expired_leases(session: AsyncSession, *, now: datetime) -> list[GenerationLease]:
    """Remove the leases whose holder stopped heart-beating and return them (with their
    ``frontend_ref``, so the front end can mark those messages interrupted). Live leases
    are never touched."""
    rows = await session.execute(
        delete(GenerationLease)
        .where(GenerationLease.expires_at <= now)
        .returning(
            GenerationLease.story_id,
            GenerationLease.holder,
            GenerationLease.purpose,
            GenerationLease.frontend_ref,
            GenerationLease.started_at,
            GenerationLease.heartbeat_at,
            GenerationLease.expires_at,
        )
    )
    return [GenerationLease(**row._asdict()) for row in rows]


# --- where a variant is shown ---------------------------------------------------------------


async def set_variant_messages(
    session: AsyncSession, variant_id: int, messages: Sequence[tuple[int, int]]
) -> None:
    """Record the (channel id, message id) pairs that show a variant, in order; the
    components sit on the last one. Replaces what was recorded before."""
    await session.execute(delete(VariantMessage).where(VariantMessage.variant_id == variant_id))
    ids = [message_id for _, message_id in messages]
    if ids:  # a message shows one variant at a time (variant switching edits in place)
        await session.execute(delete(VariantMessage).where(VariantMessage.message_id.in_(ids)))
    session.add_all(
        VariantMessage(variant_id=variant_id, position=n, channel_id=channel_id, message_id=message_id)
        for n, (channel_id, message_id) in enumerate(messages)
    )
    await session.flush()


async def get_variant_messages(session: AsyncSession, variant_id: int) -> list[tuple[int, int]]:
    rows = await session.execute(
        select(VariantMessage.channel_id, VariantMessage.message_id)
        .where(VariantMessage.variant_id == variant_id)
        .order_by(VariantMessage.position)
    )
    return [(channel_id, message_id) for channel_id, message_id in rows]


async def scene_messages(session: AsyncSession, scene_id: int) -> list[tuple[int, int]]:
    """The messages showing any variant of a scene (a variant switch edits them in place)."""
    rows = await session.execute(
        select(VariantMessage.channel_id, VariantMessage.message_id)
        .join(SceneVariant, SceneVariant.id == VariantMessage.variant_id)
        .where(SceneVariant.scene_id == scene_id)
        .order_by(VariantMessage.position)
    )
    return [(channel_id, message_id) for channel_id, message_id in rows]


# --- additions for the Discord cogs (chapters, characters, settings) --------------------


async def character_name_taken(
    session: AsyncSession, story_id: int, name: str, *, except_id: int | None = None
) -> bool:
    """Whether another character of the story already has this name (case-insensitive,
    like :func:`add_character`); ``except_id`` is the character being renamed."""
    query = select(Character.id).where(
        Character.story_id == story_id, func.lower(Character.name) == name.lower()
    )
    if except_id is not None:
        query = query.where(Character.id != except_id)
    return await session.scalar(query.limit(1)) is not None


async def edit_character(
    session: AsyncSession,
    story_id: int,
    character_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    personality: str | None = None,
    voice: str | None = None,
) -> Character:
    """Change a character found by id (so it can be renamed; :func:`update_character`
    finds it by a ``name`` that its changes cannot also carry). None leaves a field as
    it is; NotFound when the character is gone."""
    character = await session.scalar(
        select(Character).where(Character.id == character_id, Character.story_id == story_id)
    )
    if character is None:
        raise NotFound("That character is not in this story any more.")
    changes = {"name": name, "description": description, "personality": personality, "voice": voice}
    for field, value in changes.items():
        if value is not None:
            setattr(character, field, value)
    await session.flush()
    return character
