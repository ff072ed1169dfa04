"""Benchmark: how fast streamed scenes appear in Discord (docs/architecture.md, "Streaming a scene": the targets).

The Discord stand-in runs in its own thread (its own event loop, as Discord is its own
server); the bot side is a real discord.py client with bot/ui/render.py's SceneStreamer.
Each scene is a placeholder message ("the storyteller is writing…") that the streamer
edits while word pieces arrive at 30 tokens/s — the pieces the fake LLM streams — and
then replaces with the final text. Every create and edit the stand-in applies is timed
on the monotonic clock; "visible" is that moment.

Measured per scene: first token → first 20 characters visible; last token → final text
visible; gaps between visible updates; requests per scene; messages per scene; 429s;
words cut at message boundaries; text lost. 1 stream runs several scenes one after
another; 20 and 200 run at once in different channels (200 also meets Discord's global
50 requests/s).

Each case runs with the scene cards (Components V2: text displays, 4,000 characters a
message) and with the classic content messages the bot sent before them (2,000 a
message), side by side; ``--layout`` runs one of them. The stand-in checks Discord's
rules on every request but, unless ``--openapi``, not the OpenAPI schema: validating a
card's nested components against it takes ~3.5 ms of this process's CPU (a classic
message 0.04 ms), which would be counted as the bot's time.

Run: .venv/bin/python bench/streaming.py [--quick] [--chars 3900] [--cases 20 200 200:5] [--layout cards]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.ui.render import CARDS, CLASSIC, WRITING, Layout, SceneStreamer, StreamScheduler, card  # noqa: E402
from tests.discord_standin import DiscordStandin, run_client  # noqa: E402
from tests.discord_standin.models import IS_COMPONENTS_V2, Revision  # noqa: E402
from tests.fakes.llm import default_scene  # noqa: E402

PIECE = re.compile(r"\s*\S{1,6}|\s+")  # the fake LLM's word pieces
TOKEN_RATE = 30.0
PLACEHOLDER = "✍️ The storyteller is writing…"
LAYOUTS = {"cards": CARDS, "classic": CLASSIC}


def placeholder(layout: Layout) -> Revision:
    """The "the storyteller is writing…" message a scene streams into, as the bot posts it."""
    if layout.cards:
        return Revision(components=card([], writing=CARDS.writing).to_components(), flags=IS_COMPONENTS_V2)
    return Revision(content=PLACEHOLDER)


def written(text: str) -> str:
    """A message's text without the "still writing" marker (a card's line, a classic cursor)."""
    return text.removesuffix("\n\n" + CARDS.writing).removesuffix(WRITING)


def scene_text(n: int, chars: int) -> str:
    """About ``chars`` characters of the fake LLM's prose, in paragraphs."""
    paragraphs: list[str] = []
    k = n
    while sum(len(p) + 2 for p in paragraphs) < chars:
        paragraphs.extend(default_scene(k)[0].split("\n\n"))
        k += 1
    text = "\n\n".join(paragraphs)
    cut = text.rfind(". ", 0, chars)
    return text[: cut + 1] if cut > 0 else text[:chars]


class StandinThread:
    """The stand-in on its own event loop in a thread; `call` runs a coroutine there."""

    def __init__(self, *, openapi: bool = False) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        standin = DiscordStandin() if openapi else DiscordStandin(spec=None)
        self.standin: DiscordStandin = self.call(standin.start())
        self.seen: list[tuple[float, int, int, str]] = []  # (monotonic, channel id, message id, text)
        self._hook()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _hook(self) -> None:
        standin, seen = self.standin, self.seen
        post, edit = standin.post_message, standin.edit_message

        def timed_post(channel: Any, author: Any, revision: Revision, **kw: Any) -> Any:
            message = post(channel, author, revision, **kw)
            seen.append((time.monotonic(), channel.id, message.id, written(message.text)))
            return message

        def timed_edit(message: Any, body: dict[str, Any], files: list[Any]) -> Any:
            edited = edit(message, body, files)
            seen.append((time.monotonic(), message.channel.id, message.id, written(message.text)))
            return edited

        standin.post_message = timed_post  # type: ignore[method-assign]
        standin.edit_message = timed_edit  # type: ignore[method-assign]

    def stop(self) -> None:
        self.call(self.standin.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Scene:
    channel_id: int
    text: str
    layout: Layout
    feeds: list[float] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    error: str | None = None


async def run_scene(client: discord.Client, standin_thread: StandinThread, scene: Scene, delay: float) -> None:
    await asyncio.sleep(delay)
    standin = standin_thread.standin

    async def make_placeholder() -> int:
        channel = standin.channels[scene.channel_id]
        return standin.post_message(channel, standin.bot_user, placeholder(scene.layout)).id

    channel = client.get_partial_messageable(scene.channel_id)
    placeholder_id = await asyncio.wrap_future(
        asyncio.run_coroutine_threadsafe(make_placeholder(), standin_thread.loop))
    streamer = SceneStreamer(channel, first_message=channel.get_partial_message(placeholder_id),
                             layout=scene.layout)
    pieces = PIECE.findall(scene.text)
    start = time.monotonic()
    for n, piece in enumerate(pieces):
        wait = start + n / TOKEN_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        scene.feeds.append(time.monotonic())
        await streamer.feed(piece)
    messages = await streamer.finish(scene.text)
    await streamer.aclose()
    scene.messages = [m.id for m in messages]
    scene.error = repr(streamer.error) if streamer.error else None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def boundary_stats(text: str, chunks: list[str]) -> tuple[int, int]:
    """(words cut at message boundaries, non-whitespace characters lost)."""
    cut = lost = 0
    pos = 0
    for i, chunk in enumerate(chunks):
        found = text.find(chunk, pos)
        if found < 0:
            return cut, len(re.sub(r"\s", "", text[pos:]))
        lost += len(re.sub(r"\s", "", text[pos:found]))
        pos = found + len(chunk)
        if i < len(chunks) - 1 and pos < len(text) and not text[pos].isspace() and not text[pos - 1].isspace():
            cut += 1
    lost += len(re.sub(r"\s", "", text[pos:]))
    return cut, lost


def measure(scenes: list[Scene], seen: list[tuple[float, int, int, str]], contents: dict[int, str]) -> dict[str, Any]:
    first, final, gaps, max_gaps, requests = [], [], [], [], []
    cuts = lost = mismatched = errors = 0
    by_channel: dict[int, list[tuple[float, int, str]]] = {}
    for at, channel_id, message_id, content in seen:
        by_channel.setdefault(channel_id, []).append((at, message_id, content))
    for scene in scenes:
        errors += scene.error is not None
        updates = [u for u in by_channel.get(scene.channel_id, []) if u[0] >= scene.feeds[0]]
        first_at = next(at for at, _, c in updates if len(c) >= 20)
        first.append(first_at - scene.feeds[0])
        final.append(updates[-1][0] - scene.feeds[-1])
        times = [at for at, _, _ in updates]
        scene_gaps = [b - a for a, b in zip(times, times[1:])]
        gaps.extend(scene_gaps)
        max_gaps.append(max(scene_gaps))
        requests.append(len(updates))
        chunks = [contents[m] for m in scene.messages]
        mismatched += "\n\n".join(chunks) != scene.text
        c, lo = boundary_stats(scene.text, chunks)
        cuts += c
        lost += lo
    return {
        "first_p50": pct(first, 0.5), "first_p95": pct(first, 0.95),
        "final_p50": pct(final, 0.5), "final_p95": pct(final, 0.95),
        "gap_median": statistics.median(gaps), "gap_max_p95": pct(max_gaps, 0.95), "gap_max": max(max_gaps),
        "requests": statistics.mean(requests), "cuts": cuts, "lost": lost, "mismatched": mismatched,
        "errors": errors, "messages": statistics.mean(len(s.messages) for s in scenes),
    }


async def run_case(st: StandinThread, streams: int, rounds: int, chars: int, spread: float,
                   layout: Layout) -> dict[str, Any]:
    standin = st.standin
    hits_before = len(standin.rate_limit_hits)
    seen_from = len(st.seen)

    async def channels(count: int) -> list[int]:
        guild = standin.add_guild(f"bench {streams}x{rounds} {time.monotonic()}")
        return [standin.add_channel(guild, f"scene-{i}").id for i in range(count)]

    scenes: list[Scene] = []
    client = st.client  # type: ignore[attr-defined]
    for r in range(rounds):
        ids = st.call(channels(streams))
        rng = random.Random(r)
        batch = [Scene(cid, scene_text(r * streams + i, round(chars * rng.uniform(0.75, 1.25))), layout)
                 for i, cid in enumerate(ids)]
        await asyncio.gather(*(run_scene(client, st, s, rng.uniform(0, spread)) for s in batch))
        scenes.extend(batch)
    contents = st.call(_contents(standin, [m for s in scenes for m in s.messages]))
    result = measure(scenes, st.seen[seen_from:], contents)
    result["429"] = len(standin.rate_limit_hits) - hits_before
    for hit in standin.rate_limit_hits[hits_before:]:
        print(f"  429 on {hit.request} (bucket {hit.bucket}, global {hit.is_global})", file=sys.stderr)
    result["scenes"] = len(scenes)
    return result


async def _contents(standin: DiscordStandin, ids: list[int]) -> dict[int, str]:
    wanted = set(ids)
    return {m.id: m.text for c in standin.channels.values() for m in c.messages if m.id in wanted}


ROWS = [
    ("first token → first 20 chars visible p50 / p95", lambda r: f"{r['first_p50']:.2f} / {r['first_p95']:.2f} s"),
    ("last token → final text visible p50 / p95", lambda r: f"{r['final_p50']:.2f} / {r['final_p95']:.2f} s"),
    ("gap between visible updates: median", lambda r: f"{r['gap_median']:.2f} s"),
    ("gap between visible updates: max (p95 of scenes / worst)",
     lambda r: f"{r['gap_max_p95']:.2f} / {r['gap_max']:.2f} s"),
    ("requests (creates + edits) per scene", lambda r: f"{r['requests']:.1f}"),
    ("messages per scene", lambda r: f"{r['messages']:.1f}"),
    ("429 responses", lambda r: str(r["429"])),
    ("words cut at message boundaries", lambda r: str(r["cuts"])),
    ("text lost (characters) / scenes not exact", lambda r: f"{r['lost']} / {r['mismatched']}"),
    ("scenes stopped by an error", lambda r: str(r["errors"])),
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter scenes, fewer rounds")
    parser.add_argument("--chars", type=int, default=2600, help="characters per scene")
    parser.add_argument("--spread", type=float, default=5.0,
                        help="the last case starts its 200 scenes over this many seconds")
    parser.add_argument("--cases", nargs="+", metavar="N[:SPREAD]",
                        help="run only these cases: N streams at once, starting over SPREAD seconds "
                             "(e.g. --cases 20 200 200:5); default: 1 (several rounds), 20, 200, 200:SPREAD")
    parser.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both",
                        help="scene cards (Components V2), classic content messages, or both side by side")
    parser.add_argument("--openapi", action="store_true",
                        help="the stand-in also validates every body against Discord's OpenAPI spec (slower)")
    args = parser.parse_args()
    layouts = list(LAYOUTS) if args.layout == "both" else [args.layout]
    chars = 900 if args.quick else args.chars
    rounds_alone = 2 if args.quick else 6
    cases = [(1, rounds_alone, 0.0), (20, 1, 0.0), (200, 1, 0.0), (200, 1, args.spread)]
    if args.cases:
        cases = []
        for spec in args.cases:
            streams, _, spread = spec.partition(":")
            cases.append((int(streams), rounds_alone if int(streams) == 1 else 1, float(spread or 0)))

    st = StandinThread(openapi=args.openapi)
    client = discord.Client(intents=discord.Intents.none(), guild_ready_timeout=0.1)
    st.client = client  # type: ignore[attr-defined]
    results = []
    try:
        async with run_client(client, st.standin):
            for streams, rounds, spread in cases:
                for name in layouts:
                    started = time.monotonic()
                    result = await run_case(st, streams, rounds, chars, spread, LAYOUTS[name])
                    result["seconds"] = time.monotonic() - started
                    result["spread"] = spread
                    result["layout"] = name
                    results.append((streams, result))
                    print(f"  {streams} stream(s), {name}: {result['scenes']} scenes in {result['seconds']:.0f} s",
                          file=sys.stderr)
    finally:
        st.stop()

    global_limit = StreamScheduler.shared().global_budget.limit
    print(f"\nScenes of {chars} ± 25 % characters fed at {TOKEN_RATE:.0f} tokens/s (fake LLM word pieces) into a "
          f"placeholder message; streamer global budget {global_limit} requests/s. cards: Components V2 "
          f"(≤ {CARDS.limit} characters a message); classic: content (≤ {CLASSIC.limit}), as before the cards.\n")
    header = "| measured per scene | " + " | ".join(
        f"{n} stream{'s' if n > 1 else ''}, {r['layout']} ({r['scenes']} scenes"
        + (f", starts over {r['spread']:g} s)" if r["spread"] else ", same start)") for n, r in results) + " |"
    print(header)
    print("|" + " --- |" * (len(results) + 1))
    for label, show in ROWS:
        print(f"| {label} | " + " | ".join(show(r) for _, r in results) + " |")


if __name__ == "__main__":
    asyncio.run(main())
