"""Benchmark: voice narration while a scene is being written (issue 8).

A scene streams from the fake LLM at 30 tokens/s (LLMClient.stream_chat →
SceneTextFilter, as the engine does) into a NarrationJob (chunker → fake Kokoro at 5×
real time → soxr → 20 ms frames); a player thread reads the NarrationSource every 20 ms
in real time and Opus-encodes each frame, as discord.py's AudioPlayer does (only the UDP
send is missing). Measured per narration:

- first token → first audio frame: from the model's first scene token to the first
  non-silent frame the player read;
- underruns: gaps after playback started (silence while more audio was expected);
- CPU %: process CPU time / wall time while narrating (the fake LLM and Kokoro run in
  this process too, so this is an upper bound), divided by the number of channels.

Two scenes: plain narration, and dialogue whose characters have voices of their own
(their quoted lines are separate Kokoro requests with their voices).

Run: .venv/bin/python bench/narration.py [--channels 1 4] [--scene plain dialogue]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import discord

from bot.ui.audio import NarrationJob, NarrationSource
from cogs.narration import voice_problem
from core.llm import Finish, LLMClient, TextDelta
from core.streaming import SceneTextFilter
from core.tts import KokoroClient
from tests.fakes.kokoro import FakeKokoro
from tests.fakes.llm import FakeLLM

SCENE = (
    "The lighthouse door creaks open. Salt wind fills the stair, and somewhere above a shutter "
    "bangs against the stone. Mara climbs, counting the steps under her breath. At the top, the "
    "lamp room is dark; the great lens is cracked, and glass crunches under her boots. A logbook "
    "lies open on the desk, its last page torn out.\n\n### Choices\n1. Read the logbook\n"
    "2. Light the lamp\n3. Call out\n4. Go back down"
)
DIALOGUE = (
    'The lighthouse door creaks open. Mara whispered, "Someone has been here." Salt wind fills '
    'the stair. "Only the gulls," said Tom, and climbs ahead of her. At the top, the lamp room is '
    'dark. "Look," Mara said. "The logbook." Its last page is torn out.\n\n### Choices\n'
    "1. Read the logbook\n2. Light the lamp\n3. Call out\n4. Go back down"
)
SCENES = {"plain": (SCENE, {}), "dialogue": (DIALOGUE, {"Mara": "bf_emma", "Tom": "am_adam"})}
MESSAGES = [{"role": "user", "content": "Continue the story."}]


class EncodingPlayer(threading.Thread):
    """discord.py's AudioPlayer loop without the network: read, Opus-encode, every 20 ms."""

    def __init__(self, source: NarrationSource) -> None:
        super().__init__(daemon=True)
        self.source = source
        self.encoder = discord.opus.Encoder(signal_type="voice", bitrate=64) if discord.opus.is_loaded() else None
        self.finished = threading.Event()

    def run(self) -> None:
        start, loops = time.perf_counter(), 0
        while data := self.source.read():
            if self.encoder is not None:
                self.encoder.encode(data, self.encoder.SAMPLES_PER_FRAME)
            loops += 1
            time.sleep(max(0.0, start + 0.02 * loops - time.perf_counter()))
        self.finished.set()


async def narrate_one(llm: FakeLLM, tts: KokoroClient, scene: str, voices: dict[str, str]) -> tuple[float, int, int]:
    llm.script(scene)
    client = LLMClient(llm.base_url)
    job = NarrationJob(tts, voice="af_bella", speed=1.0, voices=voices)
    player = EncodingPlayer(job.source)
    player.start()
    job.start()
    scene_filter = SceneTextFilter()
    first_token: float | None = None
    try:
        async for event in client.stream_chat(MESSAGES, max_tokens=2000):
            if isinstance(event, TextDelta):
                first_token = first_token or time.perf_counter()
                visible = scene_filter.feed(event.text)
                if visible:
                    job.feed(visible)
            elif isinstance(event, Finish):
                break
        job.feed(scene_filter.finish().tail)
    finally:
        job.finish()
        await client.aclose()
    while not player.finished.is_set():
        await asyncio.sleep(0.05)
    stats = job.source.stats
    assert first_token is not None and stats.first_audio_at is not None
    return stats.first_audio_at - first_token, stats.underruns, stats.audio_frames


async def run(channels: int, scene_name: str) -> dict[str, float | int | str]:
    scene, voices = SCENES[scene_name]
    async with FakeLLM(token_rate=30) as llm, FakeKokoro(realtime_factor=5, latency=0.05) as kokoro:
        tts = KokoroClient(kokoro.base_url)
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            results = await asyncio.gather(*(narrate_one(llm, tts, scene, voices) for _ in range(channels)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            await tts.aclose()
        requests = len(kokoro.speech_requests) // channels
    latencies = [r[0] for r in results]
    return {
        "scene": scene_name,
        "channels": channels,
        "Kokoro requests / channel": requests,
        "first token → audio (median s)": statistics.median(latencies),
        "first token → audio (max s)": max(latencies),
        "underruns": sum(r[1] for r in results),
        "audio s / channel": statistics.mean(r[2] for r in results) * 0.02,
        "CPU % / channel": 100 * cpu / wall / channels,
    }


async def main(channels: list[int], scenes: list[str]) -> None:
    problem = voice_problem()
    print(f"voice: {'available' if problem is None else problem} (Opus encoding {'on' if problem is None else 'off'})")
    rows = [await run(n, name) for name in scenes for n in channels]
    keys = list(rows[0])
    print(" | ".join(f"{k:>30}" for k in keys))
    for row in rows:
        print(" | ".join(f"{row[k]:>30.3f}" if isinstance(row[k], float) else f"{row[k]:>30}" for k in keys))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 4],
                        help="narrating channels at once, one run each (default: 1 4)")
    parser.add_argument("--scene", nargs="+", choices=sorted(SCENES), default=["plain", "dialogue"],
                        help="plain narration, and/or dialogue read with character voices (default: both)")
    args = parser.parse_args()
    asyncio.run(main(args.channels, args.scene))
