"""Benchmark: group votes under load (issue 7).

The real KahaniBot (in this process, SQLite) against the Discord stand-in and the fake
LM Studio. A group story's scene gets vote clicks from distinct members at a steady
rate; measured per rate: votes handled per second, the ack latency (click sent → the
bot's interaction callback applied by the stand-in: p50/p99/max), tally edits per
second that reach the channel (Discord allows 1/s sustained: 5 per 5 s), 429s, and
clicks answered too late (after Discord's 3 s: the user sees "interaction failed").

The stand-in runs on the bot's event loop here, so latencies include its work too.

Run: .venv/bin/python bench/votes.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import db as dbmod  # noqa: E402
from tests.discord_standin import DiscordStandin  # noqa: E402
from tests.fakes.llm import FakeLLM  # noqa: E402
from tests.harness import running_bot  # noqa: E402


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(rates: list[int], seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/kahani.db"
        await dbmod.upgrade(url)
        async with DiscordStandin() as standin, FakeLLM(token_rate=2000) as llm:
            guild = standin.add_guild("Bench")
            general = standin.add_channel(guild, "stories")
            host = standin.add_user("host", guild=guild)
            voters = [standin.add_user(f"v{n}", guild=guild) for n in range(int(max(rates) * seconds))]
            async with running_bot(standin, url, llm_base_url=llm.base_url):
                print(f"{'votes/s offered':>16} {'handled/s':>10} {'ack p50 ms':>11} {'ack p99 ms':>11} "
                      f"{'ack max ms':>11} {'tally edits/s':>14} {'429s':>5} {'late (>3 s)':>11}")
                for k, rate in enumerate(rates):
                    name = f"Bench {k}"
                    await (await standin.slash(host, general, "story new")).wait_response()
                    modal = [m for m in standin.modals_for(host) if not m.submitted][0]
                    await (await standin.submit_modal(host, modal, {"Title": name})).wait_response()
                    thread = await standin.wait_until(
                        lambda: next((c for c in standin.channels.values() if c.name == name), None))
                    scene = await standin.wait_until(lambda: next(
                        (m for m in thread.messages if m.embeds and any(
                            c.get("label", "").startswith("1. ") for c in m.component_items())), None), timeout=10)
                    labels = [c["label"] for c in scene.component_items() if c.get("label", "")[:2] in
                              ("1.", "2.", "3.", "4.")]
                    edits_before, hits_before = len(scene.history), len(standin.rate_limit_hits)
                    count = int(rate * seconds)
                    records = []
                    start = time.monotonic()
                    for n in range(count):
                        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                        records.append(await standin.click(voters[n], scene, labels[n % 4]))
                    await asyncio.gather(*(asyncio.wait_for(r.answered.wait(), 30) for r in records))
                    handled = time.monotonic() - start
                    expected = f"{count} of {count + 1}"
                    late = sum(not r.callbacks[0].accepted for r in records)  # past Discord's 3 s
                    if not late:
                        await standin.wait_until(lambda: expected in str(scene.embeds), timeout=30)
                    lasted = time.monotonic() - start
                    acks = [(r.callbacks[0].at - r.created_at) * 1000 for r in records]
                    edits = len(scene.history) - edits_before
                    print(f"{rate:>16} {count / handled:>10.0f} {statistics.median(acks):>11.1f} "
                          f"{p(acks, 0.99):>11.1f} {max(acks):>11.1f} {edits / lasted:>14.2f} "
                          f"{len(standin.rate_limit_hits) - hits_before:>5} {late:>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short run")
    args = parser.parse_args()
    asyncio.run(run([100] if args.quick else [50, 100, 200], 2.0 if args.quick else 4.0))


if __name__ == "__main__":
    main()
