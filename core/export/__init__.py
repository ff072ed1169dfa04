"""Story export: the active path (or the whole tree) as Markdown, HTML, EPUB or PDF.

Discord-free: ``/story export`` and ``kahani export`` both call :func:`export_story`.

- Markdown and HTML stream: scenes are read in pages and written as they come, so any
  length works in little memory (10,000 scenes in a few seconds).
- EPUB and PDF are built in memory by their libraries, in a worker thread so the event
  loop keeps running; stories longer than ``MAX_BOOK_SCENES`` are refused with a pointer
  to Markdown/HTML (docs/architecture.md, "Export").
- Nothing the model wrote becomes markup: see ``core.export.text``.
"""

from __future__ import annotations

import asyncio
import enum
import re
import unicodedata
from dataclasses import dataclass
from typing import IO

from core import messages as msg
from core import repository as repo
from core.db import Database
from core.errors import KahaniError
from core.export import read
from core.export.model import Block, ChapterSummary, StoryInfo
from core.export.stream import HtmlWriter, MarkdownWriter

MAX_BOOK_SCENES = 1_000
WRITE_BATCH = 200  # scenes rendered per trip to the worker thread


class ExportFormat(enum.StrEnum):
    MARKDOWN = "markdown"
    HTML = "html"
    EPUB = "epub"
    PDF = "pdf"

    @property
    def label(self) -> str:
        return {"markdown": "Markdown", "html": "HTML", "epub": "EPUB", "pdf": "PDF"}[self.value]

    @property
    def extension(self) -> str:
        return {"markdown": "md", "html": "html", "epub": "epub", "pdf": "pdf"}[self.value]

    @property
    def streams(self) -> bool:
        """Written while the scenes are read (any length), rather than built in memory."""
        return self in (ExportFormat.MARKDOWN, ExportFormat.HTML)

    @classmethod
    def parse(cls, value: str) -> ExportFormat:
        aliases = {"md": "markdown", "htm": "html"}
        try:
            return cls(aliases.get(value.strip().lower(), value.strip().lower()))
        except ValueError:
            raise KahaniError(msg.EXPORT_UNKNOWN_FORMAT) from None


class ExportError(KahaniError):
    """This export cannot be made (no scenes, too long for the format…); says what to do."""


@dataclass(frozen=True)
class ExportResult:
    filename: str
    format: ExportFormat
    scenes: int  # on the active path
    size: int  # bytes written
    title: str


class ExportTooBig(ExportError):
    """The file grew past the most that may be sent; writing stopped there."""


class _Counting:
    """Counts what goes through to ``out``, and stops (ExportTooBig) past ``limit``."""

    def __init__(self, out: IO[bytes], limit: int | None = None, message: str = "") -> None:
        self.out, self.size, self.limit, self.message = out, 0, limit, message

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise ExportTooBig(self.message)
        return self.out.write(data)


def filename_for(title: str, fmt: ExportFormat, *, whole_tree: bool = False) -> str:
    """A safe file name from the title: ``the-lighthouse.epub`` (non-Latin titles keep
    their letters; nothing but letters, digits and dashes)."""
    normal = unicodedata.normalize("NFKC", title).lower()
    slug = re.sub(r"[^\w]+", "-", normal).strip("-_")[:60].strip("-_") or "story"
    return f"{slug}{'-tree' if whole_tree else ''}.{fmt.extension}"


def human_size(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{max(1, round(size / 1024))} KB"


def smaller_option(fmt: ExportFormat, *, whole_tree: bool, story_id: int) -> str:
    """What to try when a file is too big to send: the path alone, Markdown, the CLI."""
    if whole_tree:
        return msg.EXPORT_TRY_PATH_ONLY
    if fmt is not ExportFormat.MARKDOWN:
        return msg.EXPORT_TRY_MARKDOWN
    return msg.EXPORT_TRY_CLI.format(story_id=story_id)


def check_fits(result: ExportResult, limit: int, *, whole_tree: bool, story_id: int) -> None:
    """Raise ExportError (with a smaller option) if the file is over ``limit`` bytes."""
    if result.size > limit:
        raise ExportError(msg.EXPORT_TOO_BIG_HERE.format(
            format=result.format.label, size=human_size(result.size), limit=human_size(limit),
            smaller=smaller_option(result.format, whole_tree=whole_tree, story_id=story_id)))


async def export_story(
    db: Database,
    story_id: int,
    fmt: ExportFormat | str,
    out: IO[bytes],
    *,
    whole_tree: bool = False,
    summaries: bool = False,
    max_bytes: int | None = None,
) -> ExportResult:
    """Write story ``story_id`` to ``out`` in ``fmt``: its active path (title page, one
    section per chapter, the choice taken between scenes), or with ``whole_tree`` every
    version and branch (Markdown/HTML only); ``summaries`` adds the chapter summaries.
    Rendering runs in a worker thread (the event loop keeps serving players); past
    ``max_bytes`` writing stops with :class:`ExportTooBig`.

    Raises NotFound for a missing story and ExportError when this export cannot be made.
    """
    fmt = ExportFormat.parse(fmt) if isinstance(fmt, str) else fmt
    if whole_tree and not fmt.streams:
        raise ExportError(msg.EXPORT_TREE_FORMATS)
    too_big = "" if max_bytes is None else msg.EXPORT_TOO_BIG_WHILE_WRITING.format(
        format=fmt.label, limit=human_size(max_bytes),
        smaller=smaller_option(fmt, whole_tree=whole_tree, story_id=story_id))
    counting = _Counting(out, max_bytes, too_big)
    async with db.read() as session:
        story = await repo.get_story(session, story_id)
        info = await read.story_info(session, story)
        if info.scenes == 0:
            raise ExportError(msg.EXPORT_NO_SCENES)
        if not fmt.streams and info.scenes > MAX_BOOK_SCENES:
            raise ExportError(msg.EXPORT_BOOK_TOO_LONG.format(scenes=info.scenes, format=fmt.label,
                                                              limit=MAX_BOOK_SCENES))
        appendix = await read.chapter_summaries(session, story_id) if summaries else []
        blocks = read.whole_tree_blocks(session, story) if whole_tree else read.active_path_blocks(session, story)
        if fmt.streams:
            writer = (MarkdownWriter if fmt is ExportFormat.MARKDOWN else HtmlWriter)(counting)  # type: ignore[arg-type]
            await asyncio.to_thread(writer.begin, info, whole_tree=whole_tree)
            batch: list[Block] = []
            async for block in blocks:
                batch.append(block)
                if len(batch) >= WRITE_BATCH:
                    await asyncio.to_thread(_write, writer, batch)
                    batch = []
            await asyncio.to_thread(_write, writer, batch)
            await asyncio.to_thread(writer.end, appendix)
        else:
            collected = [block async for block in blocks]
    if not fmt.streams:
        # The session is closed: building the book is CPU work, done off the event loop.
        counting.write(await asyncio.to_thread(_build_book, fmt, info, collected, appendix))
    return ExportResult(filename=filename_for(story.title, fmt, whole_tree=whole_tree), format=fmt,
                        scenes=info.scenes, size=counting.size, title=story.title)


def _write(writer: MarkdownWriter | HtmlWriter, blocks: list[Block]) -> None:
    for block in blocks:
        writer.block(block)


def _build_book(fmt: ExportFormat, info: StoryInfo, blocks: list[Block], summaries: list[ChapterSummary]) -> bytes:
    # Imported here: the PDF fonts and ebooklib are only loaded by those who use them.
    if fmt is ExportFormat.EPUB:
        from core.export.epub import build_epub

        return build_epub(info, blocks, summaries)
    from core.export.pdf import build_pdf

    return build_pdf(info, blocks, summaries)


__all__ = [
    "MAX_BOOK_SCENES", "ExportError", "ExportFormat", "ExportResult", "ExportTooBig", "check_fits", "export_story",
    "filename_for", "human_size", "smaller_option",
]
