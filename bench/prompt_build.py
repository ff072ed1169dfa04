"""Benchmark: building the prompt for the next scene of a story of 10, 1,000 and 10,000
scenes (the story read, the budget fitted, the messages assembled — no model call), on
SQLite and PostgreSQL. Target: flat — the same queries and about the same time.

    python bench/prompt_build.py [--postgres URL] [--runs N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import count_statements, on_both_databases, parse_args  # noqa: E402
from bench.context_path import SIZES, build_story  # noqa: E402
from core import db as dbmod  # noqa: E402
from core import repository as repo  # noqa: E402
from core.db import Database  # noqa: E402
from core.engine import StoryEngine  # noqa: E402
from core.llm import LLMClient  # noqa: E402
from core.models import InstructionKind  # noqa: E402


async def build_prompt(engine: StoryEngine, story_id: int) -> int:
    """What a generation does before it calls the model; returns the message count."""
    async with engine.db.read() as s:
        story = await repo.get_story(s, story_id)
        tip = await repo.tip(s, story_id)
        chapter = await repo.current_chapter_id(s, story_id)
        ctx = await engine._context(s, story, tip.variant.id if tip else None, chapter)
    messages, *_ = engine._budget(ctx, 8192, InstructionKind.CHOICE, "Go on", False)
    return len(messages)


async def bench_engine(name: str, url: str, runs: int) -> list[tuple]:
    await dbmod.upgrade(url)
    builder = Database(dbmod.make_engine(url, foreign_keys=False))
    try:
        stories = {size: await build_story(builder, size) for size in SIZES}
    finally:
        await builder.dispose()
    db = Database.from_url(url)
    llm = LLMClient("http://127.0.0.1:9/v1", model="bench", context_length=8192)  # never called
    engine = StoryEngine(db, llm)
    if db.dialect == "postgresql":
        async with db.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    results = []
    try:
        for size, story_id in stories.items():
            timings, messages, queries = [], 0, 0
            for run in range(runs + 3):
                with count_statements(db.engine) as statements:
                    started = time.perf_counter()
                    messages = await build_prompt(engine, story_id)
                    elapsed = (time.perf_counter() - started) * 1000
                queries = len(statements)
                if run >= 3:
                    timings.append(elapsed)
            timings.sort()
            results.append((name, size, queries, messages, statistics.median(timings),
                            timings[int(len(timings) * 0.95) - 1]))
    finally:
        await llm.aclose()
        await db.dispose()
    return results


async def main() -> int:
    args = parse_args(__doc__, runs=100)
    results = await on_both_databases(bench_engine, args, "kahani_bench_prompt_build")

    print(f"\nBuild the next scene's prompt (8,192-token context), {args.runs} runs each\n")
    print("| engine     | scenes | queries | messages | median ms | p95 ms | vs 10 scenes |")
    print("|------------|-------:|--------:|---------:|----------:|-------:|-------------:|")
    base: dict[str, float] = {}
    for name, size, queries, messages, median, p95 in results:
        base.setdefault(name, median)
        print(f"| {name:<10} | {size:>6} | {queries:>7} | {messages:>8} | {median:>9.2f} | {p95:>6.2f} |"
              f" {median / base[name]:>11.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
