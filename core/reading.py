"""Reading a story back: its current path in pages, and the shape of its tree.

Pure functions over rows the repository read (``core.repository.story_outline`` and
``active_path``); the Discord reader (bot/ui/reader.py) shows what they return. A page
holds whole scenes where they fit and splits a longer one at paragraphs, never inside a
word; each chapter starts on a new page so "jump to chapter" lands on its first line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PAGE_LIMIT = 3800  # characters of story per page (an embed description holds 4,096)


@dataclass(frozen=True)
class ReadScene:
    """One scene of the path as the reader shows it."""

    number: int  # 1 for the opening scene
    chapter: int  # the chapter's position on the path, 1 first
    chapter_title: str
    instruction: str  # what led to it: the choice or action ("" for the opening)
    text: str


@dataclass(frozen=True)
class Page:
    text: str
    chapter: int  # the chapter the page starts in
    first_scene: int
    last_scene: int


def reader_pages(scenes: Sequence[ReadScene], split: Callable[[str, int], list[str]],
                 limit: int = PAGE_LIMIT) -> list[Page]:
    """The path in pages of at most ``limit`` characters; ``split(text, limit)`` cuts a
    scene longer than a page (the bot's own message splitter, which never cuts a word)."""
    pages: list[Page] = []
    parts: list[str] = []
    size = first = last = chapter = 0

    def close() -> None:
        nonlocal parts, size
        if parts:
            pages.append(Page("\n\n".join(parts), chapter, first, last))
            parts, size = [], 0

    def add(piece: str, number: int) -> None:
        nonlocal size, first, last
        if parts and size + 2 + len(piece) > limit:
            close()
        if not parts:
            first = number
        size += len(piece) + (2 if parts else 0)
        parts.append(piece)
        last = number

    for scene in scenes:
        head = f"-# Scene {scene.number}" + (f" · → {scene.instruction}" if scene.instruction else "")
        block = f"{head}\n{scene.text}"
        if scene.chapter != chapter:
            close()  # a chapter starts a page
            chapter = scene.chapter
            block = f"__**{scene.chapter_title}**__\n\n{block}"
        if parts and size + 2 + len(block) > limit:
            close()
        for piece in split(block, limit) if len(block) > limit else [block]:
            add(piece, scene.number)
    close()
    return pages


# --- the tree -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TreeScene:
    id: int
    parent_variant_id: int | None
    depth: int


@dataclass(frozen=True)
class TreeVariant:
    id: int
    scene_id: int
    number: int
    kind: str
    is_active: bool


@dataclass(frozen=True)
class Fork:
    """A scene of the current path that has more than one version."""

    scene_number: int
    versions: int
    active: int  # the active version's number
    others: tuple[tuple[int, str, int], ...]  # (number, kind, scenes after it on its branch)


@dataclass(frozen=True)
class Outline:
    path_scenes: int
    scenes: int  # in the whole tree
    versions: int
    forks: tuple[Fork, ...]
    rewound: int  # scenes after the tip on its own branch (a rewound story), else 0


def outline(scenes: Sequence[TreeScene], variants: Sequence[TreeVariant], tip_scene_id: int | None) -> Outline:
    """Which scenes of the path have other versions, and how far each other branch goes."""
    child = {s.parent_variant_id: s for s in scenes if s.parent_variant_id is not None}
    by_scene: dict[int, list[TreeVariant]] = defaultdict(list)
    for v in sorted(variants, key=lambda v: v.number):
        by_scene[v.scene_id].append(v)
    by_id = {s.id: s for s in scenes}

    def length_after(variant_id: int) -> int:
        """Scenes after ``variant_id``, following the active versions down."""
        n, current = 0, child.get(variant_id)
        while current is not None:
            n += 1
            active = next((v for v in by_scene[current.id] if v.is_active), None)
            current = child.get(active.id) if active is not None else None
        return n

    path: list[TreeScene] = []
    current = by_id.get(tip_scene_id) if tip_scene_id is not None else None
    while current is not None:
        path.append(current)
        parent = next((v for v in variants if v.id == current.parent_variant_id), None)
        current = by_id.get(parent.scene_id) if parent is not None else None
    path.reverse()
    forks = []
    for number, scene in enumerate(path, 1):
        versions = by_scene[scene.id]
        if len(versions) < 2:
            continue
        active = next((v for v in versions if v.is_active), versions[-1])
        others = tuple((v.number, v.kind, length_after(v.id)) for v in versions if v.id != active.id)
        forks.append(Fork(number, len(versions), active.number, others))
    rewound = 0
    if path:
        active = next((v for v in by_scene[path[-1].id] if v.is_active), None)
        rewound = length_after(active.id) if active is not None else 0
    return Outline(len(path), len(scenes), len(variants), tuple(forks), rewound)
