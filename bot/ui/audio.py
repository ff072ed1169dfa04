"""Narration audio: Kokoro's PCM → Discord's frames, and one scene's narration job.

Kokoro sends 24 kHz s16le mono in pieces of any size; Discord plays 48 kHz s16le stereo
in 20 ms frames of 3,840 bytes. :class:`PcmConverter` resamples with soxr (one stream
per narration, so there are no clicks or lost samples between chunks) and duplicates
the channel. :class:`NarrationSource` is the one long-lived ``discord.AudioSource`` of a
narration: discord.py's player thread calls ``read()`` every 20 ms, and it must never
block or touch the event loop (STYLE.md), so frames are handed over through a
``collections.deque`` (its ``append``/``popleft`` are atomic). While more audio is
expected it plays silence; it ends only when the narration is over.

:class:`NarrationJob` runs on the event loop: scene text (also while it is being
written) → :class:`core.narration.VoicedChunker` → Kokoro, one chunk after the other
(each with its voice: a character's quoted line with the character's, the rest with the
narrator's), the next one synthesised while the current one plays, at most
``ahead_seconds`` ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import discord
import numpy as np
import soxr

from core.narration import CharacterVoices, Chunk, VoicedChunker, is_speakable
from core.tts import DEFAULT_VOICE, PCM_RATE, KokoroClient, TTSError

log = logging.getLogger(__name__)

DISCORD_RATE = discord.opus.Encoder.SAMPLING_RATE  # 48 kHz
FRAME_BYTES = discord.opus.Encoder.FRAME_SIZE  # 20 ms of 48 kHz 16-bit stereo: 3,840 bytes
FRAME_SECONDS = discord.opus.Encoder.FRAME_LENGTH / 1000
SILENCE = bytes(FRAME_BYTES)
AHEAD_SECONDS = 10.0  # audio synthesised ahead of what plays (memory: ~190 KB a second)


class PcmConverter:
    """24 kHz s16le mono, in pieces cut anywhere (also mid-sample) → 48 kHz s16le stereo."""

    def __init__(self) -> None:
        self._resampler = soxr.ResampleStream(PCM_RATE, DISCORD_RATE, 1, dtype="int16", quality="HQ")
        self._odd = b""  # half a sample left over from the last piece

    def convert(self, data: bytes, *, last: bool = False) -> bytes:
        """Resampled stereo for ``data``; ``last=True`` flushes the resampler (once)."""
        data = self._odd + data
        cut = len(data) - len(data) % 2
        data, self._odd = data[:cut], data[cut:]
        mono = self._resampler.resample_chunk(np.frombuffer(data, dtype="<i2"), last=last)
        return np.repeat(mono, 2).astype("<i2", copy=False).tobytes()  # L, R, L, R …

    def flush(self) -> bytes:
        return self.convert(b"", last=True)

    def next_stream(self) -> None:
        """A new Kokoro response starts: a half sample left by one cut short (skip) would
        shift every following sample by a byte."""
        self._odd = b""


@dataclass
class PlaybackStats:
    """What the player thread saw (written by that thread only)."""

    audio_frames: int = 0
    silence_frames: int = 0  # while waiting: before the first audio, and in gaps
    underruns: int = 0  # gaps: audio had started and ran out before the narration's end
    first_audio_at: float | None = None  # perf_counter of the first audio frame


class NarrationSource(discord.AudioSource):
    """One narration's audio, fed from the event loop, played by discord.py's player thread.

    Frames carry the index of the chunk they belong to, so ``skip()`` can drop the rest
    of the chunk that is playing."""

    def __init__(self) -> None:
        self._frames: deque[tuple[int, bytes]] = deque()
        self._tail = bytearray()  # less than a frame, waiting for the next audio
        self._tail_chunk = 0
        self._done = False  # no more audio will be pushed
        self._stopped = False
        self._skip_below = 0  # frames of chunks below this are dropped
        self.playing_chunk = -1
        self.stats = PlaybackStats()
        self._in_gap = False
        self.closed = False  # cleanup() was called

    # --- the event loop's side ---------------------------------------------------------

    def push(self, chunk: int, pcm: bytes) -> None:
        """Append 48 kHz stereo audio of chunk number ``chunk``."""
        if self._done or not pcm:
            return
        if not self._tail:
            self._tail_chunk = chunk
        self._tail += pcm
        whole = len(self._tail) - len(self._tail) % FRAME_BYTES
        for start in range(0, whole, FRAME_BYTES):
            self._frames.append((self._tail_chunk, bytes(self._tail[start:start + FRAME_BYTES])))
            self._tail_chunk = chunk
        del self._tail[:whole]

    def end(self) -> None:
        """No more audio: play what is buffered (the last frame padded), then end."""
        if self._done:
            return
        if self._tail:
            self._frames.append((self._tail_chunk, bytes(self._tail) + bytes(FRAME_BYTES - len(self._tail))))
            self._tail.clear()
        self._done = True  # after the frames: read() checks it before looking at them

    def skip(self) -> int:
        """Drop the rest of the chunk that is playing; the number of that chunk."""
        current = self.playing_chunk
        self._skip_below = max(self._skip_below, current + 1)
        return current

    def is_skipped(self, chunk: int) -> bool:
        return chunk < self._skip_below or self._stopped

    def stop(self) -> None:
        """End now (the player thread sees it at its next read)."""
        self._stopped = True
        self._done = True

    @property
    def buffered_seconds(self) -> float:
        return len(self._frames) * FRAME_SECONDS

    @property
    def done(self) -> bool:
        """No more audio will be pushed (it may still be playing)."""
        return self._done

    @property
    def finished(self) -> bool:
        """Nothing more to play: stopped, or done and played out."""
        return self._stopped or (self._done and not self._frames)

    # --- the player thread's side: never blocks ----------------------------------------

    def read(self) -> bytes:
        if self._stopped:
            return b""
        done = self._done  # read before the frames: everything pushed before it is there
        while True:
            try:
                chunk, frame = self._frames.popleft()
            except IndexError:
                break
            if chunk < self._skip_below:
                continue
            self.playing_chunk = chunk
            stats = self.stats
            if stats.first_audio_at is None:
                stats.first_audio_at = time.perf_counter()
            stats.audio_frames += 1
            self._in_gap = False
            return frame
        if done:
            return b""
        self.stats.silence_frames += 1
        if self.stats.audio_frames and not self._in_gap:
            self.stats.underruns += 1
            self._in_gap = True
        return SILENCE

    def is_opus(self) -> bool:
        return False

    def cleanup(self) -> None:
        """discord.py's player is done with this source (played out, stopped, disconnected)."""
        self._frames.clear()
        self.closed = True


ErrorCallback = Callable[[TTSError], Awaitable[None]]


class NarrationJob:
    """Reads one scene, given whole or as it is written, into a :class:`NarrationSource`.

    ``feed()`` text as it comes, ``finish()`` when the scene is complete; ``start()``
    runs the synthesis. ``voices`` are the story's characters and their voices (None:
    none of their own), looked up once for the job. A Kokoro failure ends the job
    (``error``; ``on_error`` is awaited) — the story goes on; a character voice Kokoro
    refuses only falls back to the narrator's."""

    def __init__(self, tts: KokoroClient, *, voice: str | None, speed: float,
                 ahead_seconds: float = AHEAD_SECONDS, on_error: ErrorCallback | None = None,
                 voices: Mapping[str, str | None] | None = None, chunker: VoicedChunker | None = None) -> None:
        self.tts, self.voice, self.speed = tts, voice, speed
        self.ahead_seconds = ahead_seconds
        self.on_error = on_error
        self.source = NarrationSource()
        self.error: TTSError | None = None
        self.chunks_read: list[str] = []  # what was sent to Kokoro, in order
        self.voices_read: list[str | None] = []  # and with which voice (None: Kokoro's default)
        characters = CharacterVoices(voices or {}, narrator=voice or DEFAULT_VOICE)
        self._chunker = chunker or VoicedChunker(characters)
        self._refused: set[str] = set()  # character voices Kokoro refused in this job
        self._queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.started_at = time.perf_counter()

    def feed(self, text: str) -> None:
        for chunk in self._chunker.feed(text):
            self._queue.put_nowait(chunk)

    def finish(self) -> None:
        for chunk in self._chunker.finish():
            self._queue.put_nowait(chunk)
        self._queue.put_nowait(None)

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="narration")
        return self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def skip(self) -> None:
        self.source.skip()

    async def stop(self) -> None:
        """Stop now: no more synthesis, the source ends at its next read."""
        self.source.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        converter = PcmConverter()
        index = 0
        try:
            while (chunk := await self._queue.get()) is not None:
                if not is_speakable(chunk.text):
                    continue  # whitespace, "…": nothing to say (it stays part of the text)
                await self._wait_for_room()
                await self._read(index, chunk, converter)
                index += 1
            self.source.push(max(index - 1, 0), converter.flush())
        except TTSError as exc:
            self.error = exc
            log.info("narration stopped: %s (%s)", exc.kind, exc.detail)
            if self.on_error is not None:
                try:
                    await self.on_error(exc)
                except Exception:
                    log.exception("reporting a narration failure failed")
        finally:
            self.source.end()

    async def _wait_for_room(self) -> None:
        # Synthesise ahead of playback, but not the whole scene at once.
        while self.source.buffered_seconds > self.ahead_seconds and not self.source.done:
            await asyncio.sleep(0.05)

    async def _read(self, index: int, chunk: Chunk, converter: PcmConverter) -> None:
        """Synthesise a chunk with its voice; a character voice Kokoro refuses (a voice
        it does not have, one that is not a voice) is replaced by the narrator's."""
        character = chunk.voice if chunk.voice not in self._refused else None
        try:
            await self._synthesize(index, chunk.text.strip(), character or self.voice, converter)
        except TTSError as exc:
            # Both come before any audio (an HTTP 4xx, or a voice that is not one).
            if character is None or exc.kind not in ("rejected", "bad_voice"):
                raise
            log.warning("character voice %r refused (%s): the narrator's voice reads its lines", character, exc.detail)
            self._refused.add(character)
            await self._synthesize(index, chunk.text.strip(), self.voice, converter)

    async def _synthesize(self, index: int, text: str, voice: str | None, converter: PcmConverter) -> None:
        self.chunks_read.append(text)
        self.voices_read.append(voice)
        converter.next_stream()
        stream = self.tts.stream_pcm(text, voice=voice, speed=self.speed)
        async with contextlib.aclosing(stream):  # closes the HTTP stream on skip/stop
            async for pcm in stream:
                if self.source.is_skipped(index):
                    return
                self.source.push(index, converter.convert(pcm))
