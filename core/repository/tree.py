"""The story tree: scenes, their variants and choices, and the path through it.

Appending a scene, adding, activating and rating variants, and reading the active path
(or the path that ends at a variant) by walking up from the story's tip in one
recursive query, so its cost does not grow with the story (docs/architecture.md, "The
story tree")."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.errors import Conflict, NotFound
from core.models import Chapter, InstructionKind, Scene, SceneChoice, SceneVariant, Story, VariantKind, utcnow
from core.reading import Outline, TreeScene, TreeVariant, outline
from core.repository.chapters import _first_chapter
from core.repository.stories import get_story


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
    story); anything else is a Conflict, so two generations can never both append. After
    a rewind (:func:`rewind`) the tip's variant may already have a scene after it: the
    new text becomes a new, active variant (a branch) of that scene, so the scenes that
    followed stay in the tree and come back when their version is selected again.
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
        after = await session.scalar(select(Scene).where(Scene.parent_variant_id == parent_variant_id))
        if after is not None:  # a rewound story: the next scene exists, a new version of it begins
            variant = await add_variant(
                session, after.id, VariantKind.BRANCH, content, choices, instruction_kind=instruction_kind,
                instruction=instruction, token_count=token_count, model=model, created_by_id=created_by_id,
            )
            return after, variant

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


async def rewind(session: AsyncSession, story_id: int, scene_id: int) -> PathScene:
    """Make an earlier scene of the story's path its tip ("Go back here").

    Nothing is deleted: the later scenes stay under that scene's active variant, and the
    next scene written becomes a new version of the one after it (see :func:`add_scene`).
    """
    path = await active_path(session, story_id)
    found = next((p for p in path if p.scene_id == scene_id), None)
    if found is None:
        raise NotFound("That scene is not on the story's current path.")
    await session.execute(
        update(Story).where(Story.id == story_id).values(tip_scene_id=scene_id, updated_at=utcnow())
    )
    return found


async def story_outline(session: AsyncSession, story_id: int) -> Outline:
    """The shape of the story's tree (core.reading.outline): two queries, ids and
    numbers only (no scene text)."""
    story = await get_story(session, story_id)
    scenes = [TreeScene(*row) for row in await session.execute(
        select(Scene.id, Scene.parent_variant_id, Scene.depth).where(Scene.story_id == story_id))]
    variants = [TreeVariant(*row) for row in await session.execute(
        select(SceneVariant.id, SceneVariant.scene_id, SceneVariant.number, SceneVariant.kind, SceneVariant.is_active)
        .join(Scene, Scene.id == SceneVariant.scene_id).where(Scene.story_id == story_id))]
    return outline(scenes, variants, story.tip_scene_id)


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
