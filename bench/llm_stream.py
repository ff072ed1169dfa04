"""Benchmark: what LLMClient.stream_chat + SceneTextFilter add over reading the stream raw.

Both paths read the same FakeLLM stream on 127.0.0.1:
- raw: httpx, split SSE lines, json.loads, take delta.content (the least a client can do);
- engine: LLMClient.stream_chat (the openai client, timeouts, typed events) feeding each
  TextDelta to SceneTextFilter.

Throughput uses an unpaced stream of 4,000 tokens; latency uses 30 tokens/s (a local
model's speed), measuring from the moment the fake writes a delta to the moment the
consumer has it (for the engine: after SceneTextFilter.feed returned).

Run: .venv/bin/python bench/llm_stream.py   (targets: < 1 ms added per delta; first text
event within 5 ms of the first token being written)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.llm import LLMClient, TextDelta  # noqa: E402
from core.streaming import SceneTextFilter  # noqa: E402
from tests.fakes.llm import FakeLLM, default_scene  # noqa: E402

MESSAGES = [{"role": "user", "content": "Continue the story."}]
THROUGHPUT_TOKENS = 4000
THROUGHPUT_RUNS = 5
LATENCY_RUNS = 3


def long_reply(tokens: int) -> str:
    scene, choices = default_scene(0)
    words = (scene + " ").split(" ")
    body = " ".join(words[i % len(words)] for i in range(tokens))
    return body + "\n\n### Choices\n" + "\n".join(f"{i}. {c}" for i, c in enumerate(choices, 1))


async def read_raw(fake: FakeLLM, http: httpx.AsyncClient) -> list[float]:
    """Receive times (perf_counter) of each content delta, reading SSE by hand."""
    received: list[float] = []
    body = {"model": fake.model, "messages": MESSAGES, "max_tokens": 100_000, "stream": True,
            "stream_options": {"include_usage": True}}
    async with http.stream("POST", f"{fake.base_url}/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            chunk: dict[str, Any] = json.loads(data)
            choices = chunk.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                received.append(time.perf_counter())
    return received


async def read_engine(fake: FakeLLM, client: LLMClient) -> tuple[list[float], float | None]:
    """Receive times of each TextDelta (after filtering), and when text first became visible."""
    received: list[float] = []
    first_visible: float | None = None
    scene_filter = SceneTextFilter()
    async for event in client.stream_chat(MESSAGES, max_tokens=100_000):
        if isinstance(event, TextDelta):
            visible = scene_filter.feed(event.text)
            now = time.perf_counter()
            received.append(now)
            if visible and first_visible is None:
                first_visible = now
    scene_filter.finish()
    return received, first_visible


def latencies_ms(fake: FakeLLM, received: list[float]) -> list[float]:
    sent = [t for t, _ in fake.streams[-1].sent]
    assert len(sent) == len(received), (len(sent), len(received))
    return [(r - s) * 1000 for s, r in zip(sent, received)]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


async def main() -> None:
    rows: dict[str, dict[str, float]] = {"raw httpx": {}, "stream_chat + filter": {}}
    async with FakeLLM(token_rate=None) as fake, httpx.AsyncClient(timeout=30) as http, \
            LLMClient(fake.base_url, model=fake.model) as client:
        times: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(THROUGHPUT_RUNS):
            fake.script(long_reply(THROUGHPUT_TOKENS))
            start = time.perf_counter()
            raw = await read_raw(fake, http)
            times["raw httpx"].append(time.perf_counter() - start)
            fake.script(long_reply(THROUGHPUT_TOKENS))
            start = time.perf_counter()
            engine, _ = await read_engine(fake, client)
            times["stream_chat + filter"].append(time.perf_counter() - start)
        deltas = len(raw)
        assert len(engine) == deltas
        for name, values in times.items():
            rows[name]["events/s"] = deltas / statistics.median(values)
            rows[name]["ms/delta (cpu)"] = statistics.median(values) * 1000 / deltas

    lat: dict[str, list[float]] = {name: [] for name in rows}
    first: dict[str, list[float]] = {name: [] for name in rows}
    async with FakeLLM(token_rate=30, ttft=0.2) as fake, httpx.AsyncClient(timeout=30) as http, \
            LLMClient(fake.base_url, model=fake.model) as client:
        for _ in range(LATENCY_RUNS):
            fake.script(long_reply(45))
            raw = await read_raw(fake, http)
            lat["raw httpx"] += latencies_ms(fake, raw)
            first["raw httpx"].append((raw[0] - fake.streams[-1].sent[0][0]) * 1000)
            fake.script(long_reply(45))
            engine, first_visible = await read_engine(fake, client)
            lat["stream_chat + filter"] += latencies_ms(fake, engine)
            assert first_visible is not None
            first["stream_chat + filter"].append((first_visible - fake.streams[-1].sent[0][0]) * 1000)
    for name in rows:
        rows[name]["latency median ms"] = statistics.median(lat[name])
        rows[name]["latency p95 ms"] = p95(lat[name])
        rows[name]["first text ms (max)"] = max(first[name])

    columns = ["events/s", "ms/delta (cpu)", "latency median ms", "latency p95 ms", "first text ms (max)"]
    print(f"{'path':<24}" + "".join(f"{c:>21}" for c in columns))
    for name, row in rows.items():
        print(f"{name:<24}" + "".join(f"{row[c]:>21.3f}" if c != "events/s" else f"{row[c]:>21,.0f}" for c in columns))
    raw_row, engine_row = rows["raw httpx"], rows["stream_chat + filter"]
    added_cpu = engine_row["ms/delta (cpu)"] - raw_row["ms/delta (cpu)"]
    added_lat = engine_row["latency median ms"] - raw_row["latency median ms"]
    print()
    print(f"added per delta: {added_cpu:.3f} ms of processing (unpaced), "
          f"{added_lat:.3f} ms median latency at 30 tokens/s  (target < 1 ms)")
    print(f"first visible text after the first token was written: "
          f"{engine_row['first text ms (max)']:.2f} ms worst of {LATENCY_RUNS}  (target < 5 ms)")


if __name__ == "__main__":
    asyncio.run(main())
