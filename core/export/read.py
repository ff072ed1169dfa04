"""Reading a story for export, page by page.

The active path is read from its tip (docs/architecture.md, "The story tree"): one recursive walk up that carries
only ids (a few integers per scene), then the texts in pages of ``PAGE`` scenes, so a
10,000-scene story never has more than one page of text in memory. Whole-tree exports
add each branch as a run of scenes found by walking down from its first scene along
the active versions (branches have no stored tip), read the same way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core import repository as repo
from core.export.model import Alternative, Block, ChapterStart, ChapterSummary, LineStart, SceneBlock, StoryInfo
from core.models import Chapter, InstructionKind, MemberStatus, Scene, SceneVariant, Story, StoryMember, User

PAGE = 500  # scenes whose text is read (and held) at once
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class _Step:
    scene_id: int
    depth: int
    chapter_id: int
    variant_id: int | None  # the version the path follows (None: read by scene)


async def story_info(session: AsyncSession, story: Story) -> StoryInfo:
    """The title page: the story's fields and its players' names as recorded."""
    names = await session.scalars(
        select(User.display_name)
        .join(StoryMember, StoryMember.user_id == User.id)
        .where(StoryMember.story_id == story.id, StoryMember.status == MemberStatus.JOINED.value)
        .order_by(StoryMember.role.desc(), StoryMember.joined_at, User.id)  # "owner" sorts first
    )
    tip_depth = await session.scalar(select(Scene.depth).where(Scene.id == story.tip_scene_id))
    language = str((story.settings or {}).get("language") or DEFAULT_LANGUAGE)
    return StoryInfo(
        story_id=story.id, title=story.title, genre=story.genre, tone=story.tone, premise=story.premise,
        world_setting=story.world_setting, authors=tuple(n for n in names if n), language=language,
        scenes=0 if tip_depth is None else tip_depth + 1,
    )


async def chapter_summaries(session: AsyncSession, story_id: int) -> list[ChapterSummary]:
    """The closed chapters of the active path with their summaries, oldest first."""
    return [
        ChapterSummary(title=pc.chapter.title or f"Chapter {pc.chapter.number}", text=pc.summary.content)
        for pc in await repo.path_chapters(session, story_id)
        if pc.summary is not None and pc.summary.content.strip()
    ]


def lead_in(instruction_kind: str, instruction: str) -> str:
    """What was chosen or done just before a scene ("" for the opening)."""
    return "" if instruction_kind == InstructionKind.OPENING.value else " ".join(instruction.split())


async def _active_spine(session: AsyncSession, tip_scene_id: int) -> list[_Step]:
    """The active path's ids, oldest first: a walk up from the tip that reads no text."""
    anchor_scene = aliased(Scene)
    up = (
        select(SceneVariant.id.label("variant_id"), anchor_scene.id.label("scene_id"), anchor_scene.depth,
               anchor_scene.chapter_id, anchor_scene.parent_variant_id)
        .join(anchor_scene, anchor_scene.id == SceneVariant.scene_id)
        .where(SceneVariant.scene_id == tip_scene_id, SceneVariant.is_active)
        .cte("export_up", recursive=True)
    )
    variant, scene = aliased(SceneVariant), aliased(Scene)
    up = up.union_all(
        select(variant.id, scene.id, scene.depth, scene.chapter_id, scene.parent_variant_id)
        .select_from(up)
        .join(variant, variant.id == up.c.parent_variant_id)
        .join(scene, scene.id == variant.scene_id)
    )
    rows = await session.execute(
        select(up.c.scene_id, up.c.depth, up.c.chapter_id, up.c.variant_id).order_by(up.c.depth)
    )
    return [_Step(*row) for row in rows]


async def _spine_down(session: AsyncSession, start_scene_id: int) -> list[_Step]:
    """A branch's ids, from its first scene down along each scene's active version."""
    down = (
        select(Scene.id.label("scene_id"), Scene.depth, Scene.chapter_id)
        .where(Scene.id == start_scene_id)
        .cte("export_down", recursive=True)
    )
    active, child = aliased(SceneVariant), aliased(Scene)
    down = down.union_all(
        select(child.id, child.depth, child.chapter_id)
        .select_from(down)
        .join(active, and_(active.scene_id == down.c.scene_id, active.is_active))
        .join(child, child.parent_variant_id == active.id)
    )
    rows = await session.execute(select(down.c.scene_id, down.c.depth, down.c.chapter_id).order_by(down.c.depth))
    return [_Step(scene_id, depth, chapter_id, None) for scene_id, depth, chapter_id in rows]


def _variant_columns():  # the type is inferred: SQLAlchemy 2.0 and 2.1 spell Select[...] differently
    return select(
        SceneVariant.id, SceneVariant.scene_id, SceneVariant.number, SceneVariant.kind,
        SceneVariant.instruction_kind, SceneVariant.instruction, SceneVariant.content, SceneVariant.is_active,
    )


async def _chapters(session: AsyncSession, story_id: int) -> dict[int, ChapterStart]:
    rows = await session.execute(select(Chapter.id, Chapter.number, Chapter.title).where(Chapter.story_id == story_id))
    return {cid: ChapterStart(number, title or f"Chapter {number}") for cid, number, title in rows}


async def active_path_blocks(session: AsyncSession, story: Story) -> AsyncIterator[Block]:
    """The active path as chapter and scene blocks, in reading order, read in pages."""
    if story.tip_scene_id is None:
        return
    chapters = await _chapters(session, story.id)
    spine = await _active_spine(session, story.tip_scene_id)
    chapter_id: int | None = None
    for start in range(0, len(spine), PAGE):
        page = spine[start:start + PAGE]
        rows = await session.execute(_variant_columns().where(SceneVariant.id.in_([s.variant_id for s in page])))
        texts = {row.id: row for row in rows}
        for step in page:
            row = texts[step.variant_id]
            if step.chapter_id != chapter_id:
                chapter_id = step.chapter_id
                yield chapters.get(step.chapter_id, ChapterStart(0, ""))
            yield SceneBlock(step.scene_id, step.depth + 1, lead_in(row.instruction_kind, row.instruction),
                             row.content, row.number, row.kind)


async def whole_tree_blocks(session: AsyncSession, story: Story) -> AsyncIterator[Block]:
    """Every scene and version: the active path first, then each branch (a version that
    the path does not follow and that has scenes after it), in the order they are found."""
    if story.tip_scene_id is None:
        return
    chapters = await _chapters(session, story.id)
    child = aliased(Scene)
    # Branches still to write: their heading and first scene (None: the active path).
    pending: deque[tuple[LineStart, int | None]] = deque([(LineStart(0), None)])
    lines = 0
    while pending:
        heading, first_scene = pending.popleft()
        yield heading
        if first_scene is None:
            spine = await _active_spine(session, story.tip_scene_id)
        else:
            spine = await _spine_down(session, first_scene)
        chapter_id: int | None = None
        for start in range(0, len(spine), PAGE):
            page = spine[start:start + PAGE]
            rows = await session.execute(
                _variant_columns().add_columns(child.id.label("child_id"))
                .outerjoin(child, child.parent_variant_id == SceneVariant.id)
                .where(SceneVariant.scene_id.in_([s.scene_id for s in page]))
                .order_by(SceneVariant.scene_id, SceneVariant.number)
            )
            versions: dict[int, list[Any]] = {}
            for row in rows:
                versions.setdefault(row.scene_id, []).append(row)
            for step in page:
                here = versions.get(step.scene_id, [])
                followed = next((v for v in here if v.is_active), here[0] if here else None)
                if followed is None:
                    continue
                alternatives = []
                for v in here:
                    if v is followed:
                        continue
                    branch = None
                    if v.child_id is not None:
                        lines += 1
                        branch = lines
                        pending.append((LineStart(lines, step.depth + 1, v.number), v.child_id))
                    alternatives.append(Alternative(v.number, v.kind, lead_in(v.instruction_kind, v.instruction),
                                                    v.content, branch))
                if step.chapter_id != chapter_id:
                    chapter_id = step.chapter_id
                    yield chapters.get(step.chapter_id, ChapterStart(0, ""))
                yield SceneBlock(step.scene_id, step.depth + 1,
                                 lead_in(followed.instruction_kind, followed.instruction),
                                 followed.content, followed.number, followed.kind, tuple(alternatives))
