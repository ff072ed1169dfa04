"""Chapters and summaries: a story's first chapter, opening the next one with the
closing summary of the last, rolling summaries, and the chapters of the active path (one
query up the chapter tree)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Integer, and_, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.errors import Conflict, NotFound
from core.models import Chapter, Scene, SceneVariant, Story, Summary, SummaryKind, utcnow

if TYPE_CHECKING:  # only an annotation here; tree imports _first_chapter from this module
    from core.repository.tree import PathScene


async def _first_chapter(session: AsyncSession, story_id: int) -> Chapter:
    chapter = await session.scalar(
        select(Chapter).where(Chapter.story_id == story_id, Chapter.parent_chapter_id.is_(None))
    )
    if chapter is None:  # stories are created with one; recreate if it was lost
        chapter = Chapter(story_id=story_id, number=1, title="Chapter 1")
        session.add(chapter)
        await session.flush()
    return chapter


async def open_chapter(
    session: AsyncSession,
    story_id: int,
    after_variant_id: int,
    *,
    summary: str | None,
    title: str = "",
    summary_token_count: int = 0,
) -> Chapter:
    """Close the chapter that ends at ``after_variant_id`` and open the next one, which
    starts with the scene that will follow that variant. The closing summary is stored
    with it, or later (None: a summary job writes it, core/summaries.py)."""
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
    if summary is not None:
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
