"""Narration audio (bot/ui/audio.py): Kokoro's 24 kHz mono PCM → Discord's 48 kHz stereo
20 ms frames, the long-lived AudioSource the player thread reads, and a scene's
narration job against the fake Kokoro, with a player thread standing in for discord.py's."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest_asyncio

from bot.ui.audio import FRAME_BYTES, SILENCE, NarrationJob, NarrationSource, PcmConverter
from core.narration import chunk_text
from core.tts import KokoroClient, TTSError, TTSTimeouts
from tests.fakes.kokoro import FakeKokoro, Fault, level

SPEEDUP = 10  # the stand-in player reads frames 10× faster than real time
SCENE = (
    "The lighthouse door creaks open. Salt wind fills the stair, and somewhere above a "
    "shutter bangs against the stone. Mara climbs, counting the steps under her breath. "
    "At the top, the lamp room is dark; the great lens is cracked. Someone has been here. "
    "A logbook lies open on the desk, its last page torn out. She reads the line above "
    "the tear twice, then a third time, as if the words might change."
)


class Player(threading.Thread):
    """Reads a source every 20 ms / SPEEDUP, like discord.py's AudioPlayer."""

    def __init__(self, source: NarrationSource, speedup: float = SPEEDUP) -> None:
        super().__init__(daemon=True)
        self.source, self.interval = source, 0.02 / speedup
        self.frames: list[bytes] = []
        self.longest_read = 0.0
        self.finished = threading.Event()

    def run(self) -> None:
        next_at = time.perf_counter()
        while True:
            started = time.perf_counter()
            data = self.source.read()
            self.longest_read = max(self.longest_read, time.perf_counter() - started)
            if not data:
                break
            self.frames.append(data)
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
        self.finished.set()

    async def done(self, timeout: float = 10.0) -> None:
        deadline = time.perf_counter() + timeout
        while not self.finished.is_set():
            assert time.perf_counter() < deadline, "the source never ended"
            await asyncio.sleep(0.01)

    def levels(self) -> list[int | None]:
        """Per frame: the request level it plays (None: silence), from its median sample."""
        out: list[int | None] = []
        for frame in self.frames:
            median = int(np.median(np.frombuffer(frame, dtype="<i2")))
            out.append(None if frame == SILENCE else median)
        return out


def runs(levels: list[int | None]) -> list[int | None]:
    """The sequence of distinct values, consecutive repeats collapsed (order check)."""
    out: list[int | None] = []
    for value in levels:
        if not out or out[-1] != value:
            out.append(value)
    return out


@pytest_asyncio.fixture
async def kokoro() -> AsyncIterator[FakeKokoro]:
    async with FakeKokoro(realtime_factor=200, seconds_per_char=0.01) as fake:
        yield fake


@pytest_asyncio.fixture
async def tts(kokoro: FakeKokoro) -> AsyncIterator[KokoroClient]:
    client = KokoroClient(kokoro.base_url, timeouts=TTSTimeouts(connect=1, read=2, file=5))
    yield client
    await client.aclose()


# --- the converter ---------------------------------------------------------------------


def test_conversion_keeps_the_duration_exactly_across_odd_byte_boundaries() -> None:
    rng = random.Random(7)
    mono = np.full(24_000 * 3 + 11, 1234, dtype="<i2").tobytes()  # 3 s and a bit
    converter = PcmConverter()
    out = bytearray()
    i = 0
    while i < len(mono):
        n = rng.choice((1, 3, 7, 999, 4097))
        out += converter.convert(mono[i:i + n])
        i += n
    out += converter.flush()
    assert len(out) == len(mono) * 4  # twice the samples, two channels
    stereo = np.frombuffer(bytes(out), dtype="<i2").reshape(-1, 2)
    assert (stereo[:, 0] == stereo[:, 1]).all()
    assert abs(int(np.median(stereo[:, 0])) - 1234) <= 2


# --- the source --------------------------------------------------------------------------


def test_the_source_plays_whole_frames_silence_while_waiting_and_ends_when_done() -> None:
    source = NarrationSource()
    assert source.read() == SILENCE  # nothing yet, more expected
    source.push(0, b"\x01\x00" * 3000)  # 1.5 frames
    assert source.read() == b"\x01\x00" * (FRAME_BYTES // 2)
    assert source.read() == SILENCE  # half a frame waits for more audio: a gap
    assert source.stats.underruns == 1
    source.end()
    last = source.read()
    assert len(last) == FRAME_BYTES and last.startswith(b"\x01\x00" * 1080) and last.endswith(bytes(10))
    assert source.read() == b""
    assert source.stats.audio_frames == 2 and source.stats.silence_frames == 2


def test_skip_drops_the_rest_of_the_playing_chunk_and_stop_ends_at_once() -> None:
    source = NarrationSource()
    source.push(0, b"\x00\x01" * (FRAME_BYTES * 5 // 2))
    source.push(1, b"\x00\x02" * (FRAME_BYTES * 5 // 2))
    assert source.read()[:2] == b"\x00\x01"
    assert source.skip() == 0 and source.is_skipped(0) and not source.is_skipped(1)
    assert source.read()[:2] == b"\x00\x02"
    source.stop()
    assert source.read() == b""


def test_read_never_blocks_while_audio_is_pushed() -> None:
    source = NarrationSource()
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            source.push(0, bytes(FRAME_BYTES * 50 + 3))
            time.sleep(0)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    longest = 0.0
    for _ in range(5000):
        started = time.perf_counter()
        assert len(source.read()) == FRAME_BYTES
        longest = max(longest, time.perf_counter() - started)
    stop.set()
    producer.join()
    assert longest < 0.005


# --- a scene's narration job against the fake Kokoro -------------------------------------


async def narrate(tts: KokoroClient, text: str, **options: object) -> tuple[NarrationJob, Player]:
    job = NarrationJob(tts, voice="af_bella", speed=1.0, **options)  # type: ignore[arg-type]
    player = Player(job.source)
    player.start()
    job.start()
    job.feed(text)
    job.finish()
    return job, player


async def test_faster_than_real_time_tts_plays_every_chunk_in_order_without_gaps(
        kokoro: FakeKokoro, tts: KokoroClient) -> None:
    job, player = await narrate(tts, SCENE)
    await player.done()
    chunks = [c.strip() for c in chunk_text(SCENE)]
    assert job.chunks_read == chunks and len(chunks) >= 2
    assert [r["input"] for r in kokoro.speech_requests] == chunks
    levels = player.levels()
    first_audio = next(i for i, v in enumerate(levels) if v is not None)
    assert None not in levels[first_audio:]  # no silence once playback started
    assert job.source.stats.underruns == 0
    expected = sum(kokoro.expected_pcm_bytes(c) * 4 for c in chunks)
    assert abs(len(levels[first_audio:]) * FRAME_BYTES - expected) < FRAME_BYTES
    played = [v for v in runs(levels[first_audio:]) if v is not None]
    assert [v for v in played if v in {level(n) for n in range(1, len(chunks) + 1)}] == \
        [level(n) for n in range(1, len(chunks) + 1)]
    assert max(player.longest_read, 0) < 0.005


async def test_slower_than_real_time_tts_inserts_silence_and_loses_nothing(
        kokoro: FakeKokoro, tts: KokoroClient) -> None:
    kokoro.realtime_factor = SPEEDUP / 2  # Kokoro makes audio at half the speed it plays
    job, player = await narrate(tts, SCENE)
    await player.done(timeout=20)
    chunks = [c.strip() for c in chunk_text(SCENE)]
    expected = sum(kokoro.expected_pcm_bytes(c) * 4 for c in chunks)
    audio = [f for f in player.frames if f != SILENCE]
    assert abs(len(audio) * FRAME_BYTES - expected) < FRAME_BYTES
    assert job.source.stats.underruns > 0 and job.source.stats.silence_frames > 0


async def test_skip_mid_chunk_moves_on_to_the_next_chunk(kokoro: FakeKokoro, tts: KokoroClient) -> None:
    kokoro.realtime_factor = SPEEDUP * 2
    text = "Short first. " + "The second chunk is long, long enough to skip in the middle of it. " * 3 + \
           "\n\nThe third chunk follows."
    job, player = await narrate(tts, text)
    chunks = [c.strip() for c in chunk_text(text)]
    assert len(chunks) == 3
    while job.source.playing_chunk < 1 or job.source.stats.audio_frames < 20:
        await asyncio.sleep(0.005)
    job.skip()
    await player.done()
    played = runs([v for v in player.levels() if v in {level(1), level(2), level(3)}])
    assert played == [level(1), level(2), level(3)]
    second = [f for f, v in zip(player.frames, player.levels(), strict=True) if v == level(2)]
    assert len(second) * FRAME_BYTES < kokoro.expected_pcm_bytes(chunks[1]) * 4 / 2


async def test_stop_ends_the_source_and_closes_the_kokoro_stream(kokoro: FakeKokoro, tts: KokoroClient) -> None:
    kokoro.realtime_factor = 2
    job, player = await narrate(tts, SCENE)
    while job.source.stats.audio_frames < 5:
        await asyncio.sleep(0.005)
    await job.stop()
    await player.done(timeout=1)
    assert not job.running
    await asyncio.sleep(0.1)
    assert kokoro.disconnects == 1


async def test_kokoro_down_reports_a_clear_error_and_the_source_ends(closed_port: int) -> None:
    reported: list[TTSError] = []

    async def on_error(error: TTSError) -> None:
        reported.append(error)

    tts = KokoroClient(f"http://127.0.0.1:{closed_port}")
    try:
        job, player = await narrate(tts, SCENE, on_error=on_error)
        await player.done()
        assert [e.kind for e in reported] == ["unreachable"] and job.error is reported[0]
        assert all(f == SILENCE for f in player.frames)
    finally:
        await tts.aclose()


async def test_kokoro_failing_mid_scene_keeps_what_was_read_and_ends(kokoro: FakeKokoro, tts: KokoroClient) -> None:
    kokoro.fail_next(Fault.HTTP_500)  # the first chunk fails
    job, player = await narrate(tts, SCENE, on_error=None)
    await player.done()
    assert job.error is not None and job.error.kind == "server_error"
    assert len(kokoro.speech_requests) == 1  # no hammering a broken server


async def test_narration_starts_while_the_scene_is_still_being_written(kokoro: FakeKokoro,
                                                                       tts: KokoroClient) -> None:
    job = NarrationJob(tts, voice=None, speed=1.25)
    player = Player(job.source)
    player.start()
    job.start()
    words = SCENE.split(" ")
    pieces = [w + " " for w in words[:-1]] + [words[-1]]
    fed = 0
    while fed < len(pieces) and job.source.stats.first_audio_at is None:
        job.feed(pieces[fed])
        fed += 1
        await asyncio.sleep(0.002)
    assert job.source.stats.first_audio_at is not None, "no audio before the scene was complete"
    assert fed < len(pieces) // 2
    for piece in pieces[fed:]:
        job.feed(piece)
    job.finish()
    await player.done()
    assert kokoro.speech_requests[0]["voice"] == "af_heart" and kokoro.speech_requests[0]["speed"] == 1.25


# --- character voices ------------------------------------------------------------------------

DIALOGUE_SCENE = ('The lamp flickers. Mara whispered, "Someone is on the stair." Tom shook his head. '
                  '"Only the wind," said Tom. "Listen," said Mara.')


async def narrate_streamed(tts: KokoroClient, text: str, **options: object) -> tuple[NarrationJob, Player]:
    """A narration fed word by word, as auto-narration feeds a scene being written."""
    job = NarrationJob(tts, voice="af_bella", speed=1.0, **options)  # type: ignore[arg-type]
    player = Player(job.source)
    player.start()
    job.start()
    for word in text.split(" "):
        job.feed(word + " ")
        await asyncio.sleep(0)
    job.finish()
    return job, player


async def test_a_characters_quoted_line_is_read_with_its_voice_and_the_rest_with_the_narrators(
        kokoro: FakeKokoro, tts: KokoroClient) -> None:
    job, player = await narrate_streamed(tts, DIALOGUE_SCENE, voices={"Mara": "bf_emma", "Tom": None})
    await player.done()
    assert [(r["input"], r["voice"]) for r in kokoro.speech_requests] == [
        ("The lamp flickers.", "af_bella"),
        ("Mara whispered,", "af_bella"),
        ('"Someone is on the stair."', "bf_emma"),
        ('Tom shook his head. "Only the wind," said Tom.', "af_bella"),  # Tom has no voice of his own
        ('"Listen,"', "bf_emma"),
        ("said Mara.", "af_bella"),
    ]
    assert job.voices_read == [r["voice"] for r in kokoro.speech_requests]
    # One after the other, the next synthesised while the current one plays: no gaps.
    levels = player.levels()
    first_audio = next(i for i, v in enumerate(levels) if v is not None)
    assert None not in levels[first_audio:] and job.source.stats.underruns == 0
    expected = [level(n) for n in range(1, 7)]
    assert runs([v for v in levels[first_audio:] if v in expected]) == expected  # in order


async def test_a_character_voice_kokoro_refuses_falls_back_to_the_narrators(
        kokoro: FakeKokoro, tts: KokoroClient) -> None:
    job, player = await narrate_streamed(tts, DIALOGUE_SCENE, voices={"Mara": "xx_nobody"})
    await player.done()
    assert job.error is None
    voices = [r["voice"] for r in kokoro.speech_requests]
    assert voices.count("xx_nobody") == 1  # refused once, then the narrator reads her lines
    assert set(voices) == {"af_bella", "xx_nobody"}
    spoken = [r["input"] for r in kokoro.speech_requests if r["voice"] == "af_bella"]
    assert '"Someone is on the stair."' in spoken and '"Listen,"' in spoken
