"""What an export is made of: the story's front matter and a stream of blocks (a branch
starts, a chapter starts, a scene), in reading order. Writers turn these into files."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StoryInfo:
    """The title page: what the story is and who played it (names as recorded)."""

    story_id: int
    title: str
    genre: str
    tone: str
    premise: str
    world_setting: str
    authors: tuple[str, ...]
    language: str
    scenes: int  # on the active path


@dataclass(frozen=True)
class LineStart:
    """Whole-tree exports: a run of scenes starts. Line 0 is the active path; line n > 0
    is a branch that continues version ``after_version`` of scene ``after_scene``."""

    number: int
    after_scene: int | None = None
    after_version: int | None = None


@dataclass(frozen=True)
class ChapterStart:
    number: int
    title: str


@dataclass(frozen=True)
class Alternative:
    """Whole-tree exports: another version of a scene (and the branch that follows it)."""

    number: int
    kind: str
    lead_in: str
    content: str
    branch: int | None  # the line that continues this version, if any


@dataclass(frozen=True)
class SceneBlock:
    """A scene as the path goes through it; ``lead_in`` is the choice or action taken
    just before it ("" for the opening)."""

    scene_id: int
    number: int  # 1-based position on its path (depth + 1)
    lead_in: str
    content: str
    version: int = 1
    kind: str = "original"
    alternatives: tuple[Alternative, ...] = field(default=())


@dataclass(frozen=True)
class ChapterSummary:
    title: str
    text: str


Block = LineStart | ChapterStart | SceneBlock
