"""Benchmark: Kahani at scale — one or two bot processes, N stories at once, one LLM server.

Real bot processes (``python -m bot run``, four gateway shards: all in one process, or
0,1 and 2,3 in two) on one scratch PostgreSQL database, the Discord stand-in and the
fake LLM in this process. The fake LLM writes at ``--token-rate`` tokens/s with
``--slots`` parallel slots (llama.cpp ``--parallel``); the bots run with
``LLM_MAX_CONCURRENCY=--concurrency``. N solo stories, each with a first scene, are
spread over ``--guilds`` guilds on all four shards — one busy guild holds
``--busy-share`` of them. Every player clicks choice 1 (in random order, all at
once, or over ``--spread`` seconds), waits for the scene, clicks again: K scenes a story.

Measured:
- throughput: scenes written per minute, from the first click to the last scene;
- queue wait p50/p99: from a click until the scene's first text shows (in line for the
  storyteller, then its time to first token), as the players see it;
- fairness: scenes finished per guild while every guild still had scenes to come
  (until the first guild was done), max/min — about 1 when the line is shared round
  robin by guild, about the busy guild's share × guilds when it is first come, first
  served; and the max/min of the guilds' median waits;
- interaction acknowledgement p99 (Discord's limit is 3 s), clicks not acknowledged in time
  ("unanswered": the story stops there), Discord
  429s (must be 0), the most streams the LLM server generated at once.

The run is bound by the LLM: N × K scenes of about ``--words`` + 20 tokens, ``--slots``
at a time at ``--token-rate``. The defaults (500 stories, 3 scenes, 30 tokens/s, 4 slots)
take about 10 minutes for each process count; ``--stories 20`` is a quick check.

Run: .venv/bin/python bench/scale.py [--stories 500] [--scenes 3] [--processes 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_POSTGRES, postgres_database  # noqa: E402
from bench.streaming import pct  # noqa: E402
from core import db as dbmod  # noqa: E402
from core import repository as repo  # noqa: E402
from core.db import Database  # noqa: E402
from tests.discord_standin import Channel, DiscordStandin, Guild, User  # noqa: E402
from tests.discord_standin.models import InteractionRecord, Message, Revision  # noqa: E402
from tests.fakes.llm import FakeLLM  # noqa: E402
from tests.harness import BotProcess  # noqa: E402

SHARDS = 4
MARKER = "Lanterns"  # every written scene starts with it: its first text is on screen
CHOICES = ("Climb", "Wait", "Call out", "Run")
CHOOSE = "kahani:v1:choose:"


def scene_text(words: int) -> str:
    body = " ".join((["sway", "over", "the", "harbour", "wall", "and"] * (words // 6 + 1))[:words])
    return f"{MARKER} {body}.\n\n### Choices\n" + "\n".join(f"{n}. {c}" for n, c in enumerate(CHOICES, 1))


def on_shard(shard: int, n: int) -> int:
    """A guild id Discord routes to ``shard`` of four."""
    return ((SHARDS * (n + 1) + shard) << 22) + n + 1


def choose_id(message: Message) -> str | None:
    return next((c["custom_id"] for c in message.component_items() if c.get("custom_id", "").startswith(CHOOSE)),
                None)


@dataclass(eq=False)
class Player:
    """One story and its player; the times (stand-in clock) of each scene asked for."""

    user: User
    guild: Guild
    thread: Channel
    message: Message  # the latest finished scene
    clicked: str | None = None  # the custom_id clicked, while its scene is on the way
    clicked_at: float = 0.0
    first_text: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    waits: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # when each scene was done
    records: list[InteractionRecord] = field(default_factory=list)
    failed: str | None = None


class Watcher:
    """Follows the bot's messages in the stand-in: a scene's first text, its end."""

    def __init__(self, standin: DiscordStandin) -> None:
        self.standin = standin
        self.players: dict[int, Player] = {}  # thread id → player
        post, edit = standin.post_message, standin.edit_message

        def on_post(channel: Any, author: Any, revision: Revision, **kw: Any) -> Message:
            message = post(channel, author, revision, **kw)
            self.seen(message)
            return message

        def on_edit(message: Message, body: dict[str, Any], files: list[Any]) -> Message:
            edited = edit(message, body, files)
            self.seen(message)
            return edited

        standin.post_message = on_post  # type: ignore[method-assign]
        standin.edit_message = on_edit  # type: ignore[method-assign]

    def seen(self, message: Message) -> None:
        player = self.players.get(message.channel.id)
        if player is None or player.clicked is None or message is player.message:
            return
        if MARKER not in message.content:
            if "⚠️" in message.content and player.failed is None:
                player.failed = message.content[:200]
            return
        now = self.standin.clock.now()
        if player.first_text is None:
            player.first_text = now
        custom_id = choose_id(message)
        if custom_id is not None and custom_id != player.clicked:
            player.waits.append(player.first_text - player.clicked_at)
            player.finished.append(now)
            player.message, player.clicked, player.first_text = message, None, None
            player.done.set()


async def build(standin: DiscordStandin, url: str, args: argparse.Namespace,
                watcher: Watcher) -> list[Player]:
    """Guilds on all shards, a thread and a solo story with its first scene per player."""
    guilds = [standin.add_guild(f"guild{g}", id=on_shard(g % SHARDS, g // SHARDS)) for g in range(args.guilds)]
    channels = {g.id: standin.add_channel(g, "stories") for g in guilds}
    busy = round(args.stories * args.busy_share) if args.guilds > 1 else 0
    homes = [guilds[0]] * busy + [guilds[1 + n % (args.guilds - 1)] if args.guilds > 1 else guilds[0]
                                  for n in range(args.stories - busy)]
    db = Database.from_url(url)
    players = []
    try:
        for n, guild in enumerate(homes):
            user = standin.add_user(f"p{n}", guild=guild)
            thread = standin.add_thread(channels[guild.id], f"story {n}", owner=user)
            async with db.transaction() as s:
                owner = await repo.get_or_create_user(s, user.id, user.name)
                story = await repo.create_story(s, owner, f"story {n}", mode="solo", guild_id=guild.id,
                                                channel_id=channels[guild.id].id, thread_id=thread.id,
                                                scene_length="short")
                _, variant = await repo.add_scene(s, story.id, None, "A quiet harbour.",
                                                  [repo.ChoiceSpec(c) for c in CHOICES])
            button = {"type": 2, "style": 1, "label": f"1. {CHOICES[0]}", "custom_id": f"{CHOOSE}{variant.id}:1"}
            message = standin.post_message(thread, standin.bot_user, Revision(
                content="A quiet harbour.", components=[{"type": 1, "components": [button]}]))
            player = Player(user, guild, thread, message)
            watcher.players[thread.id] = player
            players.append(player)
    finally:
        await db.dispose()
    return players


async def play(standin: DiscordStandin, player: Player, scenes: int, timeout: float, delay: float = 0.0) -> None:
    await asyncio.sleep(delay)  # when this player first clicks
    for _ in range(scenes):
        custom_id = choose_id(player.message)
        if custom_id is None:
            player.failed = player.failed or "no choice button"
            return
        player.done.clear()
        player.clicked, player.clicked_at = custom_id, standin.clock.now()
        record = await standin.click(player.user, player.message, custom_id)
        player.records.append(record)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(record.answered.wait(), 10)
        if record.response is None:  # refused (late) or never answered: this story stops here
            player.failed = player.failed or f"click not acknowledged: {record.callbacks}"
            return
        try:
            await asyncio.wait_for(player.done.wait(), timeout)
        except TimeoutError:
            player.failed = player.failed or f"no scene within {timeout:.0f} s"
            return


def fairness(players: list[Player], scenes: int) -> tuple[float, float]:
    """(max/min scenes finished per guild until the first guild was done,
    max/min of the guilds' median waits)."""
    by_guild: dict[int, list[Player]] = defaultdict(list)
    for p in players:
        by_guild[p.guild.id].append(p)
    done_at = [max(t for p in ps for t in p.finished) for ps in by_guild.values()
               if all(len(p.finished) == scenes for p in ps)]
    if not done_at or len(by_guild) < 2:
        return float("nan"), float("nan")
    until = min(done_at)
    served = Counter({g: sum(1 for p in ps for t in p.finished if t <= until) for g, ps in by_guild.items()})
    waits = [median([w for p in ps for w in p.waits]) for ps in by_guild.values() if any(p.waits for p in ps)]
    return max(served.values()) / max(1, min(served.values())), max(waits) / max(min(waits), 1e-3)


async def run(processes: int, args: argparse.Namespace) -> dict[str, Any]:
    name = f"kahani_bench_scale_{processes}"
    async with (postgres_database(args.postgres, name) as url, DiscordStandin() as standin,
                FakeLLM(token_rate=args.token_rate, parallel_slots=args.slots or None) as llm):
        await dbmod.upgrade(url)
        env = {"SHARD_COUNT": str(SHARDS), "LLM_MAX_CONCURRENCY": str(args.concurrency),
               "LLM_FIRST_TOKEN_TIMEOUT": str(min(args.timeout, 3600)),
               # the per-user and per-guild caps are not what is measured here
               "GENERATIONS_PER_USER_PER_MINUTE": "0", "GENERATIONS_PER_GUILD_PER_MINUTE": "0"}
        shard_ids = ["0,1,2,3"] if processes == 1 else ["0,1", "2,3"]
        bots = [BotProcess(standin, url, llm_base_url=llm.base_url, env={**env, "SHARD_IDS": ids})
                for ids in shard_ids]
        try:
            for bot in bots:
                await bot.start(ready_timeout=60)
            watcher = Watcher(standin)
            players = await build(standin, url, args, watcher)
            text = scene_text(args.words)
            for _ in range(args.stories * args.scenes):
                llm.script(text)
            order = random.Random(7).sample(players, len(players))
            hits_before = len(standin.rate_limit_hits)
            started = standin.clock.now()
            await asyncio.gather(*(play(standin, p, args.scenes, args.timeout, args.spread * n / len(order))
                                   for n, p in enumerate(order)))
            elapsed = standin.clock.now() - started
            for bot in bots:
                await bot.stop(timeout=30)
        finally:
            for bot in bots:
                await bot.close()
    written = sum(len(p.finished) for p in players)
    waits = [w for p in players for w in p.waits]
    records = [r for p in players for r in p.records]
    acks = [r.response.at - r.created_at for r in records if r.response is not None]
    served, waited = fairness(players, args.scenes)
    failed = [p.failed for p in players if p.failed]
    if failed:
        print(f"  {len(failed)} stories stopped early, e.g. {failed[0]!r}", file=sys.stderr)
    return {
        "processes": processes, "stories": len(players), "scenes": written, "expected": len(players) * args.scenes,
        "seconds": elapsed, "per_min": written / elapsed * 60 if elapsed else 0.0,
        "wait_p50": pct(waits, 0.5) if waits else float("nan"), "wait_p99": pct(waits, 0.99) if waits else float("nan"),
        "served": served, "waited": waited,
        "ack_p99": pct(acks, 0.99) if acks else float("nan"), "unanswered": len(records) - len(acks),
        "429s": len(standin.rate_limit_hits) - hits_before, "llm_max": llm.max_concurrent,
        "broken": Counter(v.rule for v in standin.violations),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--stories", type=int, default=500)
    parser.add_argument("--scenes", type=int, default=3, help="scenes each story plays")
    parser.add_argument("--processes", default="1,2", help="bot process counts to run, e.g. 1,2 or 2")
    parser.add_argument("--guilds", type=int, default=20)
    parser.add_argument("--spread", type=float, default=0.0,
                        help="the first clicks come over this many seconds (0: all at once)")
    parser.add_argument("--busy-share", type=float, default=0.25, help="share of the stories in one busy guild")
    parser.add_argument("--token-rate", type=float, default=30.0, help="fake LLM tokens per second per stream")
    parser.add_argument("--slots", type=int, default=4, help="fake LLM parallel slots (0: no limit)")
    parser.add_argument("--concurrency", type=int, default=4, help="LLM_MAX_CONCURRENCY of the bots")
    parser.add_argument("--words", type=int, default=20, help="words of story text in each scene")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a story may wait for a scene")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES,
                        help="an admin URL; a scratch database is created next to it")
    args = parser.parse_args()
    results = []
    for processes in (int(n) for n in args.processes.split(",")):
        print(f"  {processes} process(es), {args.stories} stories × {args.scenes} scenes…", file=sys.stderr)
        t0 = time.perf_counter()
        results.append(await run(processes, args))
        print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(f"\n{args.stories} solo stories × {args.scenes} scenes over {args.guilds} guilds on {SHARDS} shards "
          f"({args.busy_share:.0%} in one guild), first clicks over {args.spread:g} s; fake LLM {args.token_rate:g} tokens/s, {args.slots} slots; "
          f"LLM_MAX_CONCURRENCY={args.concurrency}; PostgreSQL\n")
    print("| processes | scenes | time | scenes/min | wait p50 | wait p99 | served/guild max/min | "
          "guild median wait max/min | ack p99 | unanswered | 429s | LLM streams at once | Discord rules broken |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['processes']} | {r['scenes']}/{r['expected']} | {r['seconds']:.0f} s | {r['per_min']:.0f} "
              f"| {r['wait_p50']:.1f} s | {r['wait_p99']:.1f} s | {r['served']:.2f} | {r['waited']:.2f} "
              f"| {r['ack_p99'] * 1000:.0f} ms | {r['unanswered']} | {r['429s']} | {r['llm_max']} "
              f"| {', '.join(f'{n}× {rule}' for rule, n in r['broken'].items()) or 'none'} |")


if __name__ == "__main__":
    asyncio.run(main())
