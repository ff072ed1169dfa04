"""FakeKokoro: a Kokoro-FastAPI server on 127.0.0.1 for tests and benchmarks.

A real aiohttp HTTP server speaking the parts of Kokoro-FastAPI's API that Kahani uses:

- ``GET /health`` → ``{"status": "healthy"}``;
- ``GET /v1/audio/voices`` → ``{"voices": [{"id", "name"}, …]}`` (``legacy=True``, or
  ``?legacy=true``: ``{"voices": ["af_bella", …]}``, the pre-0.3 form);
- ``POST /v1/audio/speech`` (``model``, ``input``, ``voice`` incl. mixes such as
  ``af_bella(2)+af_sky(1)``, ``speed`` 0.25–4.0, ``response_format``): ``"pcm"`` streams
  24 kHz s16le mono in odd-sized pieces, paced at ``realtime_factor`` × real time after
  ``latency`` s; ``"mp3"`` answers bytes that start like an MP3 (``audio/mpeg``). Errors
  use FastAPI's ``{"detail": {"error", "message", "type"}}``.

The audio is deterministic: request *n* (1-based, counting speech requests) is a constant
sample value ``level(n)`` for ``seconds_per_char × len(input) / speed`` seconds, so tests
can tell from the audio which chunk is playing and check that nothing is lost or
reordered. Faults on demand (:class:`Fault`): 500 or 400, no answer for a while, a stall or
a cut connection mid-stream; ``pause()``/``resume()`` take the server down and back up
on the same port.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.fakes.server import LocalServer


RATE = 24_000
DEFAULT_VOICES = ("af_bella", "af_heart", "af_nicole", "af_sky", "am_adam", "am_michael", "bf_emma", "bm_george")
PIECE_SIZES = (1001, 4097, 777, 2049, 3)  # odd sizes: samples split across pieces
MP3_HEADER = b"ID3\x04\x00\x00\x00\x00\x00\x00"
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)  # one 128 kbit/s 44.1 kHz frame: 26 ms


def level(n: int) -> int:
    """The sample value of speech request ``n``: distinct per request, never silence."""
    return 1000 + (n * 997) % 28000


class Fault(StrEnum):
    HTTP_500 = "http_500"  # 500 (Kokoro's processing_error) before any audio
    HTTP_400 = "http_400"  # 400 validation_error
    STALL_HEADERS = "stall_headers"  # no answer at all for `seconds`
    STALL = "stall"  # no bytes for `seconds` after `after_bytes`
    DROP = "drop"  # connection closed after `after_bytes`


@dataclass
class Planned:
    fault: Fault
    seconds: float = 30.0
    after_bytes: int = 0


class FakeKokoro(LocalServer):
    """A fake Kokoro-FastAPI (see the module docstring)."""

    def __init__(self, *, realtime_factor: float | None = 50.0, latency: float = 0.0,
                 seconds_per_char: float = 0.06, voices: tuple[str, ...] = DEFAULT_VOICES,
                 legacy: bool = False) -> None:
        self.realtime_factor = realtime_factor  # None: as fast as possible
        self.latency = latency
        self.seconds_per_char = seconds_per_char
        self.voices = list(voices)
        self.legacy = legacy
        self.disconnects = 0
        self._faults: deque[Planned] = deque()
        super().__init__()

    # -- lifecycle ----------------------------------------------------------------------

    shutdown_timeout = 0.5

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/audio/voices", self._voices)
        app.router.add_post("/v1/audio/speech", self._speech)

    async def pause(self) -> None:
        """Kokoro goes down (connections refused) …"""
        await self.close()

    async def resume(self) -> None:
        """… and comes back on the same address."""
        await self.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting ----------------------------------------------------------------------

    def fail_next(self, fault: Fault, *, times: int = 1, seconds: float = 30.0, after_bytes: int = 0) -> None:
        """The next ``times`` speech requests fail this way."""
        self._faults.extend(Planned(fault, seconds, after_bytes) for _ in range(times))

    @property
    def speech_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path == "/v1/audio/speech"]

    def expected_pcm_bytes(self, text: str, speed: float = 1.0) -> int:
        """How many PCM bytes the fake answers for ``text``."""
        return int(RATE * self.seconds_per_char * len(text) / speed) * 2

    # -- handlers -----------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"status": "healthy"})

    async def _voices(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.legacy or request.query.get("legacy") == "true":
            return web.json_response({"voices": self.voices})
        return web.json_response({"voices": [{"id": v, "name": v} for v in self.voices]})

    @staticmethod
    def _error(status: int, error: str, message: str, kind: str) -> web.Response:
        return web.json_response({"detail": {"error": error, "message": message, "type": kind}}, status=status)

    def _check(self, body: Any) -> web.Response | None:
        """Kokoro-FastAPI's own validation of a speech request."""
        if not isinstance(body, dict) or not isinstance(body.get("input"), str):
            return web.json_response({"detail": [{"loc": ["body", "input"], "msg": "Field required"}]}, status=422)
        if body.get("model", "kokoro") not in ("kokoro", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"):
            return self._error(400, "invalid_model", f"Unsupported model: {body['model']}", "invalid_request_error")
        speed = body.get("speed", 1.0)
        if not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
            return web.json_response({"detail": [{"loc": ["body", "speed"],
                                                  "msg": "Input should be between 0.25 and 4"}]}, status=422)
        if body.get("response_format", "mp3") not in ("mp3", "opus", "aac", "flac", "wav", "pcm"):
            return web.json_response({"detail": [{"loc": ["body", "response_format"], "msg": "bad format"}]},
                                     status=422)
        voice = str(body.get("voice", "af_heart")).replace(" ", "")
        for name in re.split(r"[+-]", voice):
            base = name.split("(")[0]
            if base not in self.voices:
                return self._error(400, "validation_error",
                                   f"Voice '{base}' not found. Available voices: {', '.join(sorted(self.voices))}",
                                   "invalid_request_error")
        return None

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        n = len(self.speech_requests)
        planned = self._faults.popleft() if self._faults else None
        if planned and planned.fault is Fault.STALL_HEADERS:
            await self._pause(planned.seconds)
        if planned and planned.fault is Fault.HTTP_500:
            return self._error(500, "processing_error", "Failed to generate audio", "server_error")
        if planned and planned.fault is Fault.HTTP_400:
            return self._error(400, "validation_error", "Text is empty after normalization", "invalid_request_error")
        rejected = self._check(body)
        if rejected is not None:
            return rejected
        fmt = body.get("response_format", "mp3")
        audio_seconds = self.seconds_per_char * len(body["input"]) / body.get("speed", 1.0)
        if fmt == "pcm":
            sample = int(audio_seconds * RATE)
            data = level(n).to_bytes(2, "little", signed=True) * sample
            content_type = "audio/pcm"
        else:
            data = MP3_HEADER + MP3_FRAME * max(1, int(audio_seconds / 0.026))
            content_type = {"mp3": "audio/mpeg", "wav": "audio/wav"}.get(fmt, f"audio/{fmt}")
        response = web.StreamResponse(headers={
            "Content-Type": content_type, "Content-Disposition": f"attachment; filename=speech.{fmt}",
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        })
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            await self._pause(self.latency)
            await self._send(request, response, data, planned)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            if not self._closing.is_set():
                self.disconnects += 1
            raise
        return response

    async def _send(self, request: web.Request, response: web.StreamResponse, data: bytes,
                    planned: Planned | None) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent, i = 0, 0
        while sent < len(data):
            if planned and planned.fault in (Fault.STALL, Fault.DROP) and sent >= planned.after_bytes:
                if planned.fault is Fault.DROP:
                    if request.transport is not None:
                        request.transport.close()
                    return
                await self._pause(planned.seconds)
                planned = None
            piece = data[sent:sent + PIECE_SIZES[i % len(PIECE_SIZES)]]
            i += 1
            await response.write(piece)
            sent += len(piece)
            if self.realtime_factor:
                # Audio is made realtime_factor times faster than it plays.
                due = started + sent / (2 * RATE * self.realtime_factor)
                await asyncio.sleep(max(0.0, due - loop.time()))

@pytest_asyncio.fixture
async def fake_kokoro() -> AsyncIterator[FakeKokoro]:
    """A fast FakeKokoro for this test."""
    async with FakeKokoro() as fake:
        yield fake
