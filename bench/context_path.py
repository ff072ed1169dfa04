"""Benchmark: reading the last 20 scenes of a story's active path, for 10, 1,000 and
10,000 scenes, on SQLite and PostgreSQL. Target: 10,000 within 1.5x of 10.

    python bench/context_path.py [--postgres URL] [--runs N]

Prints a table: engine, scenes, queries per read, rows returned, median and p95 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import func, insert, select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import count_statements, on_both_databases, parse_args  # noqa: E402
from core import db as dbmod  # noqa: E402
from core import repository as repo  # noqa: E402
from core.db import Database  # noqa: E402
from core.models import Chapter, Scene, SceneVariant, Story  # noqa: E402

SIZES = (10, 1_000, 10_000)
LAST = 20
SCENE_TEXT = "The lantern swung in the salt wind as the keeper climbed the stair. " * 12


async def build_story(db: Database, scenes: int) -> int:
    """A story of ``scenes`` scenes on one path, written with bulk inserts.

    Each scene points at the variant before it, which is inserted in the next statement,
    so foreign keys are checked only after the load (SQLite: a builder connection without
    them; PostgreSQL: replica mode for this transaction).
    """
    async with db.transaction() as s:
        if db.dialect == "postgresql":
            await s.execute(text("SET LOCAL session_replication_role = replica"))
        owner = await repo.get_or_create_user(s, None, "bench")
        story = await repo.create_story(s, owner, f"{scenes} scenes")
        chapter = await s.scalar(select(Chapter.id).where(Chapter.story_id == story.id))
        scene_base = (await s.scalar(select(func.max(Scene.id))) or 0) + 1
        variant_base = (await s.scalar(select(func.max(SceneVariant.id))) or 0) + 1
        for start in range(0, scenes, 2_000):
            depths = range(start, min(scenes, start + 2_000))
            await s.execute(
                insert(Scene),
                [
                    dict(id=scene_base + d, story_id=story.id, chapter_id=chapter, depth=d,
                         parent_variant_id=variant_base + d - 1 if d else None)
                    for d in depths
                ],
            )
            await s.execute(
                insert(SceneVariant),
                [
                    dict(id=variant_base + d, scene_id=scene_base + d, number=1, kind="original",
                         content=f"{d}: {SCENE_TEXT}", token_count=180, is_active=True)
                    for d in depths
                ],
            )
        await s.execute(
            update(Story).where(Story.id == story.id).values(tip_scene_id=scene_base + scenes - 1)
        )
        return story.id


async def measure(db: Database, story_id: int, runs: int) -> tuple[int, int, list[float]]:
    timings: list[float] = []
    queries = rows = 0
    for run in range(runs + 3):
        with count_statements(db.engine) as statements:
            started = time.perf_counter()
            async with db.read() as s:
                path = await repo.active_path(s, story_id, limit=LAST)
                await repo.path_chapters(s, story_id)
            elapsed = (time.perf_counter() - started) * 1000
        queries, rows = len(statements), len(path)
        if run >= 3:  # warm-up runs are not counted
            timings.append(elapsed)
    return queries, rows, timings


async def bench_engine(name: str, url: str, runs: int) -> list[tuple]:
    await dbmod.upgrade(url)
    builder = Database(dbmod.make_engine(url, foreign_keys=False))
    try:
        stories = {size: await build_story(builder, size) for size in SIZES}
    finally:
        await builder.dispose()
    db = Database.from_url(url)
    results = []
    try:
        if db.dialect == "postgresql":
            async with db.engine.connect() as conn:  # what autovacuum does after a load
                await conn.execute(text("ANALYZE"))
                await conn.commit()
        for size, story_id in stories.items():
            queries, rows, timings = await measure(db, story_id, runs)
            timings.sort()
            results.append((name, size, queries, rows, statistics.median(timings),
                            timings[int(len(timings) * 0.95) - 1]))
    finally:
        await db.dispose()
    return results


async def main() -> int:
    args = parse_args(__doc__, runs=200)
    results = await on_both_databases(bench_engine, args, "kahani_bench_context_path")

    print(f"\nRead the last {LAST} scenes of the active path (+ its chapters), {args.runs} runs each\n")
    print("| engine     | scenes | queries | rows | median ms | p95 ms | vs 10 scenes |")
    print("|------------|-------:|--------:|-----:|----------:|-------:|-------------:|")
    ok = True
    base: dict[str, float] = {}
    for name, size, queries, rows, median, p95 in results:
        base.setdefault(name, median)
        ratio = median / base[name]
        ok &= ratio <= 1.5
        print(f"| {name:<10} | {size:>6} | {queries:>7} | {rows:>4} | {median:>9.3f} | {p95:>6.3f} | {ratio:>11.2f}x |")
    print(f"\ntarget: 10,000 scenes within 1.5x of 10 -> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
