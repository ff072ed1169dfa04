"""The text-to-speech client: Kokoro-FastAPI's OpenAI-compatible speech API (no Discord).

- ``GET /v1/audio/voices`` lists the voices: ``{"voices": [{"id": "af_bella", "name":
  "af_bella"}, …]}`` since Kokoro-FastAPI 0.3, ``{"voices": ["af_bella", …]}`` before
  (and still with ``?legacy=true``). Both are read.
- ``POST /v1/audio/speech`` with ``{"model": "kokoro", "input", "voice", "speed",
  "response_format", "stream"}``: ``"pcm"`` is raw 24 kHz signed 16-bit little-endian
  mono, streamed as it is synthesised (:meth:`KokoroClient.stream_pcm`); ``"mp3"`` is a
  file (:meth:`KokoroClient.synthesize`). Errors come back as FastAPI's
  ``{"detail": {"error", "message", "type"}}`` (400 for an unknown voice, 500 when
  synthesis failed).
- A voice is a name (``af_bella``) or a mix Kokoro blends itself: names joined by ``+``
  (or ``-`` to subtract), each with an optional weight: ``af_bella(2)+af_sky(1)``.

Every failure is a :class:`TTSError` whose message a player can be shown ("Narration
unavailable: Kokoro at … is not reachable"); the story goes on without narration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from core import messages as msg
from core.errors import KahaniError
from core.urls import public_url

log = logging.getLogger(__name__)

DEFAULT_VOICE = "af_heart"  # Kokoro-FastAPI's own default voice
SPEED_MIN, SPEED_MAX = 0.5, 2.0
PCM_RATE = 24_000  # Kokoro's output: 24 kHz, 16-bit, mono
PCM_SAMPLE_BYTES = 2
VOICES_TTL = 60.0  # seconds the voice list is cached (autocomplete asks on every keystroke)

# One voice with an optional weight; voices joined by "+" (blend) or "-" (subtract).
_VOICE = r"[A-Za-z0-9_]+(?:\(\s*\d+(?:\.\d+)?\s*\))?"
_VOICE_MIX = re.compile(rf"{_VOICE}(?:[+-]{_VOICE})*")
_VOICE_NAME = re.compile(r"[A-Za-z0-9_]+")
_WEIGHT = re.compile(r"\(\s*(\d+(?:\.\d+)?)\s*\)")
MAX_MIX = 5  # voices in one mix
MAX_WEIGHT = 10.0  # a voice's weight in a mix: more than 0, at most this


class TTSError(KahaniError):
    """Narration failed; ``message`` is a sentence for the player, ``kind`` for code."""

    def __init__(self, message: str, kind: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind  # "unreachable", "timeout", "server_error", "rejected", "bad_reply", "too_large"
        self.detail = detail  # for the log


@dataclass(frozen=True, slots=True)
class TTSTimeouts:
    """``connect``: opening the connection; ``read``: the silence allowed between two
    pieces of audio (and before the first: Kokoro may be loading); ``file``: a whole
    file (mp3) from request to last byte."""

    connect: float = 5.0
    read: float = 30.0
    file: float = 180.0


def normalize_voice(voice: str) -> str:
    """A voice or voice mix as Kokoro takes it (spaces removed); TTSError if it is not one."""
    compact = "".join(voice.split())
    if not _VOICE_MIX.fullmatch(compact):
        raise TTSError(msg.TTS_BAD_VOICE.format(voice=voice.strip()[:80]), "bad_voice")
    weights = [float(w) for w in _WEIGHT.findall(compact)]
    if len(voice_names(compact)) > MAX_MIX or any(not 0 < w <= MAX_WEIGHT for w in weights):
        raise TTSError(msg.TTS_BAD_VOICE_MIX.format(voice=voice.strip()[:80], most=MAX_MIX, weight=MAX_WEIGHT),
                       "bad_voice")
    return compact


def voice_names(voice: str) -> list[str]:
    """The base voices a voice mix is made of: ``af_bella(2)+af_sky`` → both names."""
    return _VOICE_NAME.findall(re.sub(r"\([^)]*\)", "", voice))


def check_speed(speed: float) -> float:
    if not SPEED_MIN <= speed <= SPEED_MAX:
        raise ValueError(f"speed must be between {SPEED_MIN} and {SPEED_MAX}")
    return speed


def pcm_seconds(n_bytes: int) -> float:
    """How long ``n_bytes`` of Kokoro PCM play."""
    return n_bytes / (PCM_RATE * PCM_SAMPLE_BYTES)


class KokoroClient:
    """One shared HTTP client for a Kokoro-FastAPI server."""

    def __init__(self, base_url: str, *, model: str = "kokoro", timeouts: TTSTimeouts | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.shown_url = public_url(self.base_url)  # in messages and logs: no credentials
        self.model = model
        self.timeouts = timeouts or TTSTimeouts()
        t = self.timeouts
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=transport,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect),
        )
        self._voices: list[str] | None = None
        self._voices_at = 0.0
        self._voices_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- voices ------------------------------------------------------------------------

    async def voices(self, *, fresh: bool = False) -> list[str]:
        """The voices the server has, sorted (cached for a minute)."""
        async with self._voices_lock:
            if not fresh and self._voices is not None and time.monotonic() - self._voices_at < VOICES_TTL:
                return self._voices
            async with self._errors("list voices"):
                response = await self._http.get("/v1/audio/voices")
                await self._raise_for_status(response)
            self._voices = sorted(parse_voices(response.json()))
            self._voices_at = time.monotonic()
            return self._voices

    async def check_voice(self, voice: str) -> str:
        """The normalised voice (mix), if the server has every voice in it."""
        voice = normalize_voice(voice)
        known = set(await self.voices())
        missing = [name for name in voice_names(voice) if name not in known]
        if missing:
            raise TTSError(msg.TTS_UNKNOWN_VOICE.format(voice=missing[0]), "unknown_voice")
        return voice

    async def health(self) -> bool:
        """Whether the server answers (``/health``; older servers: the voice list)."""
        try:
            async with self._errors("health"):
                response = await self._http.get("/health")
                if response.status_code == 404:
                    response = await self._http.get("/v1/audio/voices")
            return response.status_code == 200
        except TTSError:
            return False

    # --- speech ------------------------------------------------------------------------

    async def stream_pcm(self, text: str, *, voice: str | None = None,
                         speed: float = 1.0) -> AsyncGenerator[bytes, None]:
        """The speech for ``text`` as raw 24 kHz s16le mono PCM, piece by piece as Kokoro
        makes it (pieces have any length, also odd)."""
        body = self._speech_body(text, voice, speed, "pcm")
        async with self._errors("speech"), self._http.stream("POST", "/v1/audio/speech", json=body) as response:
            await self._raise_for_status(response)
            async for piece in response.aiter_bytes():
                if piece:
                    yield piece

    async def synthesize(self, text: str, *, voice: str | None = None, speed: float = 1.0,
                         response_format: str = "mp3", max_bytes: int | None = None) -> bytes:
        """The speech for ``text`` as one file (mp3 by default); TTSError ``too_large``
        once it grows past ``max_bytes``."""
        body = self._speech_body(text, voice, speed, response_format)
        data = bytearray()
        async with (self._errors("speech file"), asyncio.timeout(self.timeouts.file),
                    self._http.stream("POST", "/v1/audio/speech", json=body) as response):
            await self._raise_for_status(response)
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("audio/"):
                raise TTSError(msg.TTS_BAD_REPLY.format(url=self.shown_url), "bad_reply",
                               detail=f"content-type {content_type!r}")
            async for piece in response.aiter_bytes():
                data += piece
                if max_bytes is not None and len(data) > max_bytes:
                    raise TTSError(msg.TTS_TOO_LARGE.format(megabytes=round(max_bytes / 1_000_000, 1)),
                                   "too_large")
        if not data:
            raise TTSError(msg.TTS_BAD_REPLY.format(url=self.shown_url), "bad_reply", detail="empty body")
        return bytes(data)

    def _speech_body(self, text: str, voice: str | None, speed: float, response_format: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "input": text,
            "voice": normalize_voice(voice or DEFAULT_VOICE),
            "speed": check_speed(speed),
            "response_format": response_format,
            "stream": True,
        }

    # --- errors ------------------------------------------------------------------------

    async def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        await response.aread()
        detail = _error_detail(response)
        log.warning("Kokoro at %s answered %s: %s", self.shown_url, response.status_code, detail)
        if 400 <= response.status_code < 500 and response.status_code not in (404, 408, 429):
            raise TTSError(msg.TTS_REJECTED.format(detail=detail[:300]), "rejected", detail=detail)
        raise TTSError(msg.TTS_SERVER_ERROR.format(url=self.shown_url), "server_error", detail=detail)

    @contextlib.asynccontextmanager
    async def _errors(self, what: str) -> AsyncIterator[None]:
        """Turns httpx's exceptions (and a file timeout) into TTSError, logging the cause."""
        url, t = self.shown_url, self.timeouts
        try:
            yield
        except TTSError:
            raise
        except httpx.ConnectTimeout as exc:
            raise _failed(what, exc, msg.TTS_TIMEOUT.format(url=url, seconds=t.connect), "timeout") from exc
        except httpx.TimeoutException as exc:
            raise _failed(what, exc, msg.TTS_TIMEOUT.format(url=url, seconds=t.read), "timeout") from exc
        except TimeoutError as exc:
            raise _failed(what, exc, msg.TTS_TIMEOUT.format(url=url, seconds=t.file), "timeout") from exc
        except httpx.ConnectError as exc:
            raise _failed(what, exc, msg.TTS_UNREACHABLE.format(url=url), "unreachable") from exc
        except (httpx.HTTPError, ValueError) as exc:  # a cut connection, JSON that is not a voice list
            raise _failed(what, exc, msg.TTS_BAD_REPLY.format(url=url), "bad_reply") from exc


def _failed(what: str, exc: BaseException, message: str, kind: str) -> TTSError:
    error = TTSError(message, kind, detail=f"{type(exc).__name__}: {exc}")
    log.info("Kokoro %s failed: %s (%s)", what, kind, error.detail)
    return error


def _error_detail(response: httpx.Response) -> str:
    """Kokoro's error message (FastAPI's ``{"detail": …}``), else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or f"HTTP {response.status_code}"
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("error") or detail)
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
    return str(detail)


def parse_voices(body: Any) -> list[str]:
    """Voice names from either form of ``/v1/audio/voices``."""
    items = body.get("voices", []) if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise ValueError("no voice list")
    names = []
    for item in items:
        name = item.get("id") or item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            names.append(name)
    return names
