"""Benchmark: story export time and file size. Targets (docs/architecture.md, "Export"):
Markdown and HTML stream 10,000 scenes in < 10 s; PDF and EPUB build 1,000 in < 15 s.

    python bench/export.py [--postgres URL] [--scenes N] [--book-scenes N]

Stories are built with bench/context_path.py's bulk builder, with ~1,400-character
scenes (a "medium" scene) holding some Markdown, and a choice before each scene.
Each export writes to a temporary file, as /story export does. Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy import select, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import context_path  # noqa: E402
from bench.common import DEFAULT_POSTGRES, postgres_database, sqlite_database  # noqa: E402
from core import db as dbmod  # noqa: E402
from core.db import Database  # noqa: E402
from core.export import ExportFormat, export_story, human_size  # noqa: E402
from core.models import InstructionKind, Scene, SceneVariant  # noqa: E402

PARAGRAPH = ("The keeper *hesitated* at the door, **listening** to the storm beyond the glass. "
             "Salt had crusted the hinges; the café below was dark, its façade streaming with rain. ")
SCENE = "\n\n".join([PARAGRAPH * 2] * 4)  # ~1,400 characters, four paragraphs
TARGETS = {ExportFormat.MARKDOWN: 10.0, ExportFormat.HTML: 10.0, ExportFormat.EPUB: 15.0, ExportFormat.PDF: 15.0}


async def build(url: str, scenes: int) -> int:
    builder = Database(dbmod.make_engine(url, foreign_keys=False))
    context_path.SCENE_TEXT = SCENE
    try:
        story_id = await context_path.build_story(builder, scenes)
        async with builder.transaction() as s:  # a choice led to every scene but the first
            await s.execute(
                update(SceneVariant)
                .where(SceneVariant.scene_id.in_(select(Scene.id).where(Scene.story_id == story_id, Scene.depth > 0)))
                .values(instruction_kind=InstructionKind.CHOICE.value, instruction="They opened the door")
            )
        return story_id
    finally:
        await builder.dispose()


async def measure(db: Database, story_id: int, fmt: ExportFormat) -> tuple[float, int, float]:
    """Seconds, bytes, and the peak of Python memory allocated during the export (MB)."""
    with tempfile.TemporaryFile() as out:
        tracemalloc.start()
        started = time.perf_counter()
        result = await export_story(db, story_id, fmt, out)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return elapsed, result.size, peak / 1024 / 1024


async def bench_engine(name: str, url: str, scenes: int, book_scenes: int) -> list[tuple]:
    await dbmod.upgrade(url)
    big, book = await build(url, scenes), await build(url, book_scenes)
    db = Database.from_url(url)
    rows = []
    try:
        for fmt in ExportFormat:
            story_id, count = (big, scenes) if fmt.streams else (book, book_scenes)
            # Timed without tracemalloc (it slows Python down), then once more for memory.
            with tempfile.TemporaryFile() as out:
                started = time.perf_counter()
                result = await export_story(db, story_id, fmt, out)
                elapsed = time.perf_counter() - started
            _, _, peak = await measure(db, story_id, fmt)
            rows.append((name, fmt, count, elapsed, result.size, peak))
    finally:
        await db.dispose()
    return rows


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES,
                        help="an admin URL; a scratch database is created next to it ('' to skip)")
    parser.add_argument("--scenes", type=int, default=10_000, help="scenes for Markdown and HTML")
    parser.add_argument("--book-scenes", type=int, default=1_000, help="scenes for EPUB and PDF")
    args = parser.parse_args()

    rows = []
    async with sqlite_database() as url:
        rows += await bench_engine("sqlite", url, args.scenes, args.book_scenes)
    if args.postgres:
        async with postgres_database(args.postgres, "kahani_bench_export") as url:
            rows += await bench_engine("postgresql", url, args.scenes, args.book_scenes)

    print("\nExport a story's active path (~1,400-character scenes) to a file\n")
    print("| engine     | format   | scenes | seconds | target | file size | peak Python memory |")
    print("|------------|----------|-------:|--------:|-------:|----------:|-------------------:|")
    ok = True
    for name, fmt, count, elapsed, size, peak in rows:
        target = TARGETS[fmt]
        ok &= elapsed < target
        print(f"| {name:<10} | {fmt.label:<8} | {count:>6,} | {elapsed:>7.2f} | {target:>4.0f} s | "
              f"{human_size(size):>9} | {peak:>15.1f} MB |")
    print(f"\ntargets: Markdown/HTML < 10 s, EPUB/PDF < 15 s -> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
