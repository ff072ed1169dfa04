"""The language model client of the story engine (no Discord, no database).

:class:`LLMClient` talks to any OpenAI-compatible server (LM Studio by default, Ollama,
llama.cpp, vLLM, OpenAI) through the ``openai`` package, and to the servers' own
endpoints through ``httpx`` where they report the context length. Streaming is exposed
as an async iterator of small typed events; every failure is one :class:`LLMError`
carrying a short sentence a player can be shown (from :mod:`core.messages`) and a
``kind`` the engine can branch on.

Timeouts: ``connect`` bounds opening the connection; ``first_token`` bounds the time
from sending the request to the first text or reasoning token (prompt processing on a
local model can be long); ``idle`` bounds the silence between two tokens after that;
``total`` bounds a whole streamed reply (a model that trickles a token now and then).
First-token and idle timeouts are ``asyncio.timeout`` around each ``__anext__`` of the
openai stream, so they hold whatever the HTTP layer does.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import openai

from core import messages as msg
from core.streaming import strip_think
from core.urls import public_url

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://localhost:1234/v1"
DEFAULT_CONTEXT_LENGTH = 8192
# What a server runs a model with when it was not told otherwise: LM Studio loads a
# model on demand (JIT) with 4096 tokens, and Ollama's default num_ctx is 4096 on
# most machines. Used when only a model's maximum is known.
DEFAULT_SERVER_CONTEXT = 4096

Message = Mapping[str, Any]


class ErrorKind(StrEnum):
    """What went wrong, for the engine to branch on (``LLMError.kind``)."""

    UNREACHABLE = "unreachable"
    CONNECT_TIMEOUT = "connect_timeout"
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    TOTAL_TIMEOUT = "total_timeout"
    REQUEST_TIMEOUT = "request_timeout"
    STREAM_CUT = "stream_cut"
    EMPTY_REPLY = "empty_reply"
    BAD_STREAM = "bad_stream"
    CONTEXT_OVERFLOW = "context_overflow"
    AUTH = "auth"
    MODEL_NOT_FOUND = "model_not_found"
    NO_MODEL = "no_model"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    BAD_REQUEST = "bad_request"


class LLMError(Exception):
    """Any failure of a model call. ``reason`` is a sentence for the player."""

    def __init__(self, reason: str, kind: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.status = status
        self.detail = detail  # for the log, never for players

    def __repr__(self) -> str:
        return f"LLMError(kind={self.kind!r}, status={self.status!r}, reason={self.reason!r})"


@dataclass(frozen=True, slots=True)
class LLMTimeouts:
    """Seconds; see the module docstring for what each one bounds."""

    connect: float = 10.0
    first_token: float = 180.0
    idle: float = 60.0
    request: float = 120.0  # a whole non-streamed call (complete())
    total: float = 600.0  # a whole streamed reply, however it trickles in


# --- stream events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's content (may still contain <think> tags and the marker)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning (``delta.reasoning[_content]``): never story text."""

    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the server reported it."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class Finish:
    """The reply is complete; always the last event. ``reason``: "stop", "length"…"""

    reason: str


StreamEvent = TextDelta | ReasoningDelta | Usage | Finish


@dataclass(frozen=True, slots=True)
class Completion:
    """A non-streamed reply; ``text`` has any <think> block removed."""

    text: str
    reasoning: str
    finish_reason: str | None
    usage: Usage | None


# --- helpers ---------------------------------------------------------------------------

_KNOWN_PORTS = {1234: "LM Studio", 11434: "Ollama", 8080: "llama.cpp", 8000: "vLLM"}
_OVERFLOW_HINTS = re.compile(
    r"context[ _]?(?:length|size|window)|maximum context|context.{0,20}overflow"
    r"|exceed_context|too many tokens|prompt is too long|n_ctx",
    re.IGNORECASE,
)


def guess_server_name(base_url: str) -> str:
    """A readable name for the server behind ``base_url`` (from its host and port)."""
    parts = urlsplit(base_url)
    if (parts.hostname or "").endswith("openai.com"):
        return "OpenAI"
    try:
        port = parts.port
    except ValueError:
        port = None
    return _KNOWN_PORTS.get(port or 0, msg.LLM_GENERIC_SERVER)


def _field(obj: Any, name: str) -> Any:
    """Read a field of a chunk part that may be a model, a dict or garbage."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _text_field(obj: Any, *names: str) -> str:
    for name in names:
        value = _field(obj, name)
        if isinstance(value, str) and value:
            return value
    return ""


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None

    def number(name: str) -> int:
        value = _field(raw, name)
        return value if isinstance(value, int) else 0

    prompt, completion = number("prompt_tokens"), number("completion_tokens")
    return Usage(prompt, completion, number("total_tokens") or prompt + completion)


def _error_text(err: openai.APIError) -> str:
    return f"{err.message} {err.body!r}"


# --- the client ------------------------------------------------------------------------


class LLMClient:
    """Client for one OpenAI-compatible server; create once, share, ``aclose()`` at exit."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        model: str | None = None,
        context_length: int | None = None,
        timeouts: LLMTimeouts | None = None,
        server_name: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.shown_url = public_url(self.base_url)  # in messages and logs: no credentials
        self.timeouts = timeouts or LLMTimeouts()
        self.server_name = server_name or guess_server_name(self.base_url)
        self._named = server_name is not None
        self._model = model or None
        self._configured_context = context_length or None
        self._resolved_model: str | None = None
        self._context_cache: dict[str | None, int] = {}
        self._model_entries: list[Any] | None = None  # /v1/models data, kept for vLLM
        self._json_schema_ok: bool | None = None
        t = self.timeouts
        # The read timeout is only a backstop: first-token and idle limits are enforced
        # with asyncio.timeout, which also covers servers that trickle keep-alives.
        backstop = max(t.first_token, t.idle, t.request) + 5.0
        self._openai = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "not-needed",
            max_retries=0,  # the engine has its own failure path; no silent re-sends
            timeout=openai.Timeout(backstop, connect=t.connect),
        )
        root = re.sub(r"/v1$", "", self.base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=root, headers=headers, timeout=httpx.Timeout(t.connect)
        )

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._openai.close()
        await self._http.aclose()

    # -- models and context length ----------------------------------------------------

    async def list_models(self) -> list[str]:
        """Model ids the server lists at ``/v1/models`` (may include unloaded ones)."""
        try:
            async with asyncio.timeout(self.timeouts.request):
                page = await self._openai.models.list()
        except TimeoutError as exc:
            raise self._timeout_error(ErrorKind.REQUEST_TIMEOUT, self.timeouts.request) from exc
        except openai.APIError as exc:
            raise self._api_error(exc, None) from exc
        self._model_entries = list(page.data)
        return [m.id for m in self._model_entries if isinstance(_field(m, "id"), str)]

    async def resolve_model(self) -> str:
        """The configured model, else the first *loaded LLM* the server lists.

        LM Studio lists downloaded and embedding models too, so its own
        ``/api/v0/models`` (type and state) is asked first.
        """
        if self._model:
            return self._model
        if self._resolved_model:
            return self._resolved_model
        model = None
        lmstudio = await self._lmstudio_models()
        if lmstudio:
            llms = [m for m in lmstudio if m.get("type") in ("llm", "vlm")]
            loaded = [m for m in llms if m.get("state") == "loaded"]
            # With nothing loaded, LM Studio loads a listed model on demand (JIT).
            picks = loaded or llms
            model = picks[0].get("id") if picks else None
        if model is None:
            ids = await self.list_models()
            model = next((i for i in ids if "embed" not in i.lower()), None)
        if not model:
            raise LLMError(
                msg.LLM_NO_MODEL.format(server=self.server_name, url=self.shown_url),
                ErrorKind.NO_MODEL,
            )
        log.info("llm: using model %s from %s", model, self.shown_url)
        self._resolved_model = model
        return model

    async def context_length(self) -> int:
        """The model's context window in tokens.

        Configured value → LM Studio ``/api/v0/models`` → llama.cpp ``/props`` → vLLM
        ``max_model_len`` → Ollama ``/api/ps`` / ``/api/show`` → 8192. Cached per model;
        never raises (an unreachable server gives the default, not cached).
        """
        if self._configured_context:
            return self._configured_context
        try:
            model: str | None = await self.resolve_model()
        except LLMError as exc:
            log.warning("llm: context length unknown (%s); assuming %d", exc.kind, DEFAULT_CONTEXT_LENGTH)
            return DEFAULT_CONTEXT_LENGTH
        if model in self._context_cache:
            return self._context_cache[model]
        probes = (
            ("LM Studio", self._context_lmstudio),
            ("llama.cpp", self._context_llamacpp),
            ("vLLM", self._context_vllm),
            ("Ollama", self._context_ollama),
        )
        for name, probe in probes:
            try:
                found = await probe(model)
            except (httpx.HTTPError, LLMError, ValueError, TypeError, KeyError) as exc:
                log.debug("llm: %s context probe failed: %r", name, exc)
                continue
            if found is not None:
                value, authoritative = found
                log.info("llm: context length %d for %s (from %s)", value, model, name)
                if not self._named:
                    self.server_name = name
                if authoritative:
                    self._context_cache[model] = value
                return value
        log.info("llm: server reports no context length; assuming %d", DEFAULT_CONTEXT_LENGTH)
        self._context_cache[model] = DEFAULT_CONTEXT_LENGTH
        return DEFAULT_CONTEXT_LENGTH

    async def _get_json(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """GET (or POST ``body``) one of the server's own endpoints; None unless 2xx JSON."""
        if body is None:
            response = await self._http.get(path)
        else:
            response = await self._http.post(path, json=dict(body))
        if not response.is_success:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    async def _lmstudio_models(self) -> list[dict[str, Any]] | None:
        try:
            data = await self._get_json("/api/v0/models")
        except httpx.HTTPError:
            return None
        # LM Studio answers unknown paths with 200 {"error": …}; other servers 404.
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            return None
        return [e for e in entries if isinstance(e, dict) and "state" in e]

    async def _context_lmstudio(self, model: str | None) -> tuple[int, bool] | None:
        entries = await self._lmstudio_models()
        entry = next((e for e in entries or [] if e.get("id") == model), None)
        if entry is None:
            return None
        loaded = entry.get("loaded_context_length")
        if entry.get("state") == "loaded" and isinstance(loaded, int) and loaded > 0:
            return loaded, True
        maximum = entry.get("max_context_length")
        if isinstance(maximum, int) and maximum > 0:
            # Not loaded yet: a JIT load uses LM Studio's default, not the maximum.
            return min(maximum, DEFAULT_SERVER_CONTEXT), False
        return None

    async def _context_llamacpp(self, model: str | None) -> tuple[int, bool] | None:
        data = await self._get_json("/props")
        if not isinstance(data, dict):
            return None
        settings = data.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else data.get("n_ctx")
        return (n_ctx, True) if isinstance(n_ctx, int) and n_ctx > 0 else None

    async def _context_vllm(self, model: str | None) -> tuple[int, bool] | None:
        if self._model_entries is None:
            await self.list_models()
        for entry in self._model_entries or []:
            length = _field(entry, "max_model_len")
            if _field(entry, "id") == model and isinstance(length, int) and length > 0:
                return length, True
        return None

    async def _context_ollama(self, model: str | None) -> tuple[int, bool] | None:
        running = await self._get_json("/api/ps")
        if isinstance(running, dict):
            for entry in running.get("models") or []:
                length = entry.get("context_length") if isinstance(entry, dict) else None
                if model in (entry.get("name"), entry.get("model")) and isinstance(length, int):
                    return length, True
        shown = await self._get_json("/api/show", {"model": model, "name": model})
        if not isinstance(shown, dict) or not isinstance(shown.get("model_info"), dict):
            return None
        num_ctx = re.search(r"^\s*num_ctx\s+(\d+)", str(shown.get("parameters") or ""), re.M)
        if num_ctx:
            return int(num_ctx.group(1)), True
        info = shown["model_info"]
        maximum = info.get(f"{info.get('general.architecture')}.context_length")
        if isinstance(maximum, int) and maximum > 0:
            # /api/show gives the model's maximum, but Ollama runs it with its default
            # num_ctx and silently drops what does not fit: stay under the default.
            return min(maximum, DEFAULT_SERVER_CONTEXT), False
        return None

    # -- streaming ---------------------------------------------------------------------

    async def stream_chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float | None = None,
        model: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream one chat completion as events; :class:`Finish` is always the last one.

        Raises :class:`LLMError` on any failure (also a reply with no text at all).
        Cancelling the consumer, or closing the iterator (``contextlib.aclosing``),
        closes the HTTP stream.
        """
        model = model or await self.resolve_model()
        loop = asyncio.get_running_loop()
        first_deadline = loop.time() + self.timeouts.first_token
        last_deadline = loop.time() + self.timeouts.total
        try:
            async with asyncio.timeout_at(first_deadline):
                stream = await self._openai.chat.completions.create(
                    model=model,
                    messages=cast(Any, list(messages)),
                    max_tokens=max_tokens,
                    stream=True,
                    stream_options={"include_usage": True},
                    temperature=openai.omit if temperature is None else temperature,
                    extra_body=dict(extra_body) if extra_body else None,
                )
        except TimeoutError as exc:
            raise self._timeout_error(ErrorKind.FIRST_TOKEN_TIMEOUT, self.timeouts.first_token) from exc
        except openai.APIError as exc:
            raise self._api_error(exc, model) from exc

        got_token = got_text = got_reasoning = False
        finish: str | None = None
        try:
            while True:
                try:
                    if got_token:
                        async with asyncio.timeout_at(min(loop.time() + self.timeouts.idle, last_deadline)):
                            chunk = await stream.__anext__()
                    else:
                        async with asyncio.timeout_at(min(first_deadline, last_deadline)):
                            chunk = await stream.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    if loop.time() >= last_deadline:
                        raise self._timeout_error(ErrorKind.TOTAL_TIMEOUT, self.timeouts.total) from exc
                    if got_token:
                        raise self._timeout_error(ErrorKind.IDLE_TIMEOUT, self.timeouts.idle) from exc
                    raise self._timeout_error(
                        ErrorKind.FIRST_TOKEN_TIMEOUT, self.timeouts.first_token
                    ) from exc
                except openai.APIError as exc:
                    raise self._api_error(exc, model, streaming=True) from exc
                except ValueError as exc:  # a data line that is not JSON
                    raise LLMError(msg.LLM_BAD_STREAM, ErrorKind.BAD_STREAM, detail=repr(exc)) from exc

                usage = _usage(_field(chunk, "usage"))
                if usage is not None:
                    yield usage
                choices = _field(chunk, "choices")
                if not isinstance(choices, list) or not choices:
                    continue
                choice = choices[0]
                delta = _field(choice, "delta")
                reasoning = _text_field(delta, "reasoning_content", "reasoning")
                if reasoning:
                    got_token = got_reasoning = True
                    yield ReasoningDelta(reasoning)
                content = _text_field(delta, "content")
                if content:
                    got_token = got_text = True
                    yield TextDelta(content)
                reason = _field(choice, "finish_reason")
                if isinstance(reason, str) and reason:
                    finish = reason
        finally:
            await self._close_stream(stream)

        if finish is None:
            raise LLMError(msg.LLM_STREAM_CUT, ErrorKind.STREAM_CUT, detail="stream ended without finish_reason")
        if not got_text:
            reason_text = msg.LLM_ONLY_REASONING if got_reasoning else msg.LLM_EMPTY_REPLY
            raise LLMError(reason_text, ErrorKind.EMPTY_REPLY, detail=f"finish_reason={finish}")
        yield Finish(finish)

    @staticmethod
    async def _close_stream(stream: openai.AsyncStream[Any]) -> None:
        try:
            # Shielded: on cancellation the socket must still be closed, or a local
            # server keeps generating a scene nobody reads.
            await asyncio.shield(stream.close())
        except Exception as exc:  # closing a broken connection may fail; nothing to do
            log.debug("llm: closing the stream failed: %r", exc)

    # -- short non-streamed calls ------------------------------------------------------

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        response_format: Mapping[str, Any] | None = None,
        fallback_messages: Sequence[Message] | None = None,
        temperature: float | None = None,
        model: str | None = None,
    ) -> Completion:
        """One short non-streamed completion (choices, summaries).

        With ``response_format`` (json_schema), a server that rejects it (400/422 as
        older servers do) is asked again once without it, with ``fallback_messages``
        when given; the rejection is remembered for later calls.
        """
        model = model or await self.resolve_model()
        if response_format is not None and self._json_schema_ok is False:
            return await self._complete_once(model, fallback_messages or messages, max_tokens, None, temperature)
        try:
            result = await self._complete_once(model, messages, max_tokens, response_format, temperature)
        except LLMError as exc:
            if response_format is None or exc.kind != ErrorKind.BAD_REQUEST:
                raise
            log.info("llm: server rejected response_format (%s); asking in plain text", exc.detail)
            self._json_schema_ok = False
            return await self._complete_once(model, fallback_messages or messages, max_tokens, None, temperature)
        if response_format is not None:
            self._json_schema_ok = True
        return result

    async def _complete_once(
        self,
        model: str,
        messages: Sequence[Message],
        max_tokens: int,
        response_format: Mapping[str, Any] | None,
        temperature: float | None,
    ) -> Completion:
        try:
            async with asyncio.timeout(self.timeouts.request):
                reply = await self._openai.chat.completions.create(
                    model=model,
                    messages=cast(Any, list(messages)),
                    max_tokens=max_tokens,
                    stream=False,
                    response_format=openai.omit if response_format is None else cast(Any, dict(response_format)),
                    temperature=openai.omit if temperature is None else temperature,
                )
        except TimeoutError as exc:
            raise self._timeout_error(ErrorKind.REQUEST_TIMEOUT, self.timeouts.request) from exc
        except openai.APIError as exc:
            raise self._api_error(exc, model) from exc
        choices = _field(reply, "choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = _field(choice, "message")
        raw = _text_field(message, "content")
        text = strip_think(raw)
        reasoning = _text_field(message, "reasoning_content", "reasoning")
        if not text:
            reason_text = msg.LLM_ONLY_REASONING if reasoning or raw else msg.LLM_EMPTY_REPLY
            raise LLMError(reason_text, ErrorKind.EMPTY_REPLY)
        finish = _field(choice, "finish_reason")
        return Completion(
            text=text,
            reasoning=reasoning,
            finish_reason=finish if isinstance(finish, str) else None,
            usage=_usage(_field(reply, "usage")),
        )

    # -- error mapping -----------------------------------------------------------------

    def _timeout_error(self, kind: ErrorKind, seconds: float) -> LLMError:
        template = {
            ErrorKind.FIRST_TOKEN_TIMEOUT: msg.LLM_FIRST_TOKEN_TIMEOUT,
            ErrorKind.IDLE_TIMEOUT: msg.LLM_IDLE_TIMEOUT,
            ErrorKind.TOTAL_TIMEOUT: msg.LLM_TOTAL_TIMEOUT,
            ErrorKind.REQUEST_TIMEOUT: msg.LLM_REQUEST_TIMEOUT,
            ErrorKind.CONNECT_TIMEOUT: msg.LLM_CONNECT_TIMEOUT,
        }[kind]
        log.warning("llm: %s after %.1f s (%s)", kind, seconds, self.shown_url)
        return LLMError(
            template.format(seconds=seconds, server=self.server_name, url=self.shown_url), kind
        )

    def _api_error(self, exc: openai.APIError, model: str | None, *, streaming: bool = False) -> LLMError:
        """Map any openai error to an LLMError with a player-facing reason."""
        names = {"server": self.server_name, "url": self.shown_url, "model": model or "?"}
        detail = _error_text(exc)
        if isinstance(exc, openai.APITimeoutError):
            if streaming:  # the HTTP read backstop fired before our idle limit
                return self._timeout_error(ErrorKind.IDLE_TIMEOUT, self.timeouts.idle)
            return self._timeout_error(ErrorKind.CONNECT_TIMEOUT, self.timeouts.connect)
        if isinstance(exc, openai.APIConnectionError):
            if streaming:
                log.warning("llm: stream cut: %r", exc.__cause__ or exc)
                return LLMError(msg.LLM_STREAM_CUT, ErrorKind.STREAM_CUT, detail=repr(exc.__cause__))
            log.warning("llm: %s unreachable: %r", self.shown_url, exc.__cause__ or exc)
            return LLMError(msg.LLM_UNREACHABLE.format(**names), ErrorKind.UNREACHABLE, detail=repr(exc.__cause__))
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
        log.warning("llm: request failed (status %s): %s", status, detail[:500])
        if _OVERFLOW_HINTS.search(detail):
            return LLMError(msg.LLM_CONTEXT_OVERFLOW, ErrorKind.CONTEXT_OVERFLOW, status=status, detail=detail)
        if status is None:  # an error event inside a 200 stream
            return LLMError(msg.LLM_SERVER_ERROR.format(**names), ErrorKind.SERVER_ERROR, detail=detail)
        kind, template = {
            401: (ErrorKind.AUTH, msg.LLM_AUTH),
            403: (ErrorKind.AUTH, msg.LLM_AUTH),
            404: (ErrorKind.MODEL_NOT_FOUND, msg.LLM_MODEL_NOT_FOUND),
            429: (ErrorKind.RATE_LIMITED, msg.LLM_RATE_LIMITED),
        }.get(status, (ErrorKind.SERVER_ERROR, msg.LLM_SERVER_ERROR) if status >= 500
              else (ErrorKind.BAD_REQUEST, msg.LLM_BAD_REQUEST))
        return LLMError(template.format(**names), kind, status=status, detail=detail)
