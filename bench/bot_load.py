"""Benchmark: the whole bot under load — N players click a choice at the same moment.

The real KahaniBot (in this process) plays N solo stories against the Discord stand-in
(its own thread and event loop, as Discord is its own server) and the fake LM Studio
writing at 30 tokens/s. Each story has a first scene with its buttons; all N players
click choice 1 at once, the N next scenes stream in their threads at the same time.

Measured: interaction acknowledgement latency (p50/p99; Discord's limit is 3 s), time
until every scene is finished, event-loop lag of the bot's loop (p99, sampled every
50 ms), process memory growth, Discord REST 429s, scenes stored.

Run: .venv/bin/python bench/bot_load.py [--sizes 50,200]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.streaming import StandinThread, pct  # noqa: E402
from core import db as dbmod  # noqa: E402
from core import repository as repo  # noqa: E402
from core.db import Database  # noqa: E402
from tests.discord_standin.models import Revision  # noqa: E402
from tests.fakes.llm import FakeLLM  # noqa: E402
from tests.harness import running_bot  # noqa: E402

SCENE = "The lantern gutters in the salt wind.\n\n### Choices\n1. Climb\n2. Wait\n3. Call out\n4. Run"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def loop_lag(samples: list[float], stop: asyncio.Event, every: float = 0.05) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(every)
        samples.append(max(0.0, time.perf_counter() - started - every))


async def run(size: int, st: StandinThread, llm: FakeLLM, url: str) -> dict[str, Any]:
    standin = st.standin

    def world() -> tuple[Any, Any, list[Any]]:
        guild = standin.add_guild(f"load-{size}")
        channel = standin.add_channel(guild, "stories")
        users = [standin.add_user(f"p{size}-{n}", guild=guild) for n in range(size)]
        return guild, channel, users

    async def make_world() -> tuple[Any, Any, list[Any]]:
        return world()

    guild, channel, users = st.call(make_world())
    db = Database.from_url(url)
    threads, messages = [], []
    for n, user in enumerate(users):
        async def thread_for(user: Any = user, n: int = n) -> Any:
            return standin.add_thread(channel, f"story {n}", owner=user)

        thread = st.call(thread_for())
        async with db.transaction() as s:
            owner = await repo.get_or_create_user(s, user.id, user.name)
            story = await repo.create_story(s, owner, f"story {n}", mode="solo", guild_id=guild.id,
                                            channel_id=channel.id, thread_id=thread.id, scene_length="short")
            _, variant = await repo.add_scene(s, story.id, None, "A quiet harbour.",
                                              [repo.ChoiceSpec(c) for c in ("Climb", "Wait", "Call out", "Run")])

        async def post(thread: Any = thread, variant_id: int = variant.id) -> Any:
            button = {"type": 2, "style": 1, "label": "1. Climb", "custom_id": f"kahani:v1:choose:{variant_id}:1"}
            return standin.post_message(thread, standin.bot_user, Revision(
                content="A quiet harbour.", components=[{"type": 1, "components": [button]}]))

        threads.append(thread)
        messages.append(st.call(post()))
    await db.dispose()
    for _ in range(size):
        llm.script(SCENE)

    lag: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(loop_lag(lag, stop))
    memory_before = rss_mb()
    hits_before = len(standin.rate_limit_hits)
    started = time.monotonic()

    async def click_all() -> list[Any]:
        return [await standin.click(user, message, "1. Climb") for user, message in zip(users, messages)]

    records = st.call(click_all())

    def finished() -> int:
        return sum(1 for t in threads if any("lantern gutters" in m.content and m.component_items()
                                             for m in t.messages))

    while True:  # the stand-in runs in another thread: poll it from here
        done = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_value(finished), st.loop))
        if done == size or time.monotonic() - started > 120:
            break
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    stop.set()
    await sampler
    acks = [r.response.at - r.created_at for r in records if r.response is not None]
    return {
        "size": size, "ack_p50": pct(acks, 0.5), "ack_p99": pct(acks, 0.99), "unanswered": size - len(acks),
        "seconds": elapsed, "done": done, "lag_p99": pct(lag, 0.99) * 1000, "lag_max": max(lag) * 1000,
        "memory": rss_mb() - memory_before, "429s": len(standin.rate_limit_hits) - hits_before,
    }


async def _value(fn: Any) -> Any:
    return fn()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    st = StandinThread()
    results = []
    try:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite+aiosqlite:///{directory}/bench.db"
            await dbmod.upgrade(url)
            async with FakeLLM(token_rate=30) as llm, running_bot(st.standin, url, llm_base_url=llm.base_url):
                for size in sizes:
                    results.append(await run(size, st, llm, url))
                    print(f"  {size} players: done in {results[-1]['seconds']:.1f} s", file=sys.stderr)
    finally:
        st.stop()
    print("\nN players click a choice at once; N short scenes stream at 30 tokens/s (SQLite, one process)\n")
    print("| players | ack p50 | ack p99 | unanswered | all scenes done | loop lag p99 / max | memory growth | 429s |")
    print("|--------:|--------:|--------:|-----------:|----------------:|-------------------:|--------------:|-----:|")
    for r in results:
        print(f"| {r['size']} | {r['ack_p50'] * 1000:.0f} ms | {r['ack_p99'] * 1000:.0f} ms | {r['unanswered']} "
              f"| {r['done']}/{r['size']} in {r['seconds']:.1f} s | {r['lag_p99']:.0f} / {r['lag_max']:.0f} ms "
              f"| {r['memory']:.0f} MB | {r['429s']} |")


if __name__ == "__main__":
    asyncio.run(main())
