"""FakeLLM: an OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks.

It is a real aiohttp HTTP server, so the real ``openai`` client (and httpx) talk to it
exactly as they would to LM Studio. Streamed replies follow LM Studio's SSE shape:

    data: {... "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, ...}]}
    data: {... "delta": {"content": "Once"} ...}            (one per token)
    data: {... "delta": {}, "finish_reason": "stop"}
    data: {... "choices": [], "usage": {...}}               (only with stream_options.include_usage)
    data: [DONE]

Each test scripts its replies (``fake.script("text")``), with faults on demand
(:class:`Fault`) or held at chosen points until the test lets them go on (``gates``),
or answers them from a function (``responder``); unscripted requests
get a plausible scene, the ``### Choices`` marker and four choices. A summary request
(core/prompts.py's summary prompt) gets a summary that names the **scene tags** (``[#17]``)
it was given, as ranges (``Covers #1-#17.``), so a test can tell which scenes any prompt's
summaries cover (:func:`tags_in`). Every request is recorded (:attr:`FakeLLM.requests`). The server can
imitate the context-length endpoints of LM Studio, llama.cpp, vLLM, Ollama or plain
OpenAI (``flavour=``).

``parallel_slots=N`` serves at most N chat completions at once, like llama.cpp's
``--parallel N`` or LM Studio: further requests wait inside the server, first come first
served, before their response starts. Every chat completion is logged with when it
arrived, got a slot and ended (:attr:`FakeLLM.generations`), and
:attr:`FakeLLM.max_concurrent` is the most that were ever generated at once (counted
with or without slots).

Usage::

    async with FakeLLM() as fake:
        fake.script("The door opens.\\n\\n### Choices\\n1. a\\n2. b\\n3. c\\n4. d")
        client = LLMClient(fake.base_url)

or the ``fake_llm`` / ``fake_llm_factory`` fixtures (import them into a test module, or
list ``tests.fakes.llm`` in ``pytest_plugins``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.fakes.server import LocalServer

Flavour = str  # "lmstudio" | "llamacpp" | "vllm" | "ollama" | "openai"
FLAVOURS = ("lmstudio", "llamacpp", "vllm", "ollama", "openai")
_CREATED = 1_735_689_600  # a fixed timestamp keeps recorded output deterministic
_PIECE = re.compile(r"\s*\S{1,6}|\s+")  # word pieces with their leading space, like BPE


class Fault(StrEnum):
    """Faults a scripted reply can carry."""

    HTTP_500 = "http_500"  # 500 before streaming starts
    CONTEXT_OVERFLOW = "context_overflow"  # 400 with the flavour's overflow message
    DROP = "drop"  # connection closed after `fault_after` content deltas
    STALL = "stall"  # no bytes for `stall` s after `fault_after` deltas (0: before 1st token)
    STALL_HEADERS = "stall_headers"  # no response at all for `stall` s
    EMPTY = "empty"  # role chunk, finish chunk, no content
    MALFORMED = "malformed"  # broken choice entries between the good chunks
    NOT_JSON = "not_json"  # a data line that is not JSON, after `fault_after` deltas
    ERROR_EVENT = "error_event"  # a {"error": …} data line inside the 200 stream
    REJECT_JSON_SCHEMA = "reject_json_schema"  # 400 if response_format is json_schema
    NO_FINISH = "no_finish"  # stream ends cleanly after the content, no finish, no [DONE]


@dataclass
class Reply:
    """One scripted reply. Unset pacing fields fall back to the server's settings."""

    text: str = ""
    reasoning: str = ""
    reasoning_field: str = "reasoning_content"  # LM Studio ≥ 0.3.23 and vLLM: "reasoning"
    chunks: list[str] | None = None  # exact content deltas (else `text` in word pieces)
    finish_reason: str = "stop"
    fault: Fault | None = None
    fault_after: int = 0
    stall: float = 30.0
    ttft: float | None = None
    token_rate: float | None = None
    usage: bool = True  # False: ignore stream_options (no usage chunk), as some servers do
    prompt_tokens: int | None = None
    status: int | None = None  # with `body`: answer this error response instead
    body: Any = None
    # Before delta i (reasoning first, then content) is sent, wait until gates[i] is set:
    # a test holds the stream at a point of its choosing (or until the server closes).
    gates: dict[int, asyncio.Event] = field(default_factory=dict)

    def content_pieces(self) -> list[str]:
        return list(self.chunks) if self.chunks is not None else _PIECE.findall(self.text)


@dataclass
class FakeModel:
    """A model as the fake server lists it."""

    id: str
    type: str = "llm"  # LM Studio: "llm", "vlm", "embeddings"
    state: str = "loaded"  # LM Studio: "loaded" or "not-loaded"
    max_context_length: int = 32768
    arch: str = "llama"


@dataclass
class StreamLog:
    """When each content delta of one streamed reply was written (perf_counter)."""

    started: float
    sent: list[tuple[float, str]] = field(default_factory=list)
    finished: float | None = None


@dataclass
class Generation:
    """One chat completion: when it arrived, got a slot and ended (perf_counter)."""

    n: int
    stream: bool
    arrived: float
    started: float | None = None  # got a slot (at once when the server has no slot limit)
    finished: float | None = None  # done, failed, or the client hung up

    @property
    def waited(self) -> float | None:
        """Seconds spent waiting for a slot."""
        return None if self.started is None else self.started - self.arrived


def _default_models(flavour: Flavour) -> list[FakeModel]:
    if flavour == "lmstudio":
        # Listed in an order that punishes "take the first model": an embedding model,
        # then a downloaded-but-not-loaded LLM, then the loaded one.
        return [
            FakeModel("text-embedding-nomic-embed-text-v1.5", "embeddings", "loaded", 2048, "nomic-bert"),
            FakeModel("meta-llama-3.1-8b-instruct", "llm", "not-loaded", 131072, "llama"),
            FakeModel("qwen2.5-7b-instruct", "llm", "loaded", 32768, "qwen2"),
        ]
    names = {
        "llamacpp": "qwen2.5-7b-instruct-q4_k_m.gguf",
        "vllm": "Qwen/Qwen2.5-7B-Instruct",
        "ollama": "llama3.1:8b",
        "openai": "gpt-4o-mini",
    }
    return [FakeModel(names[flavour], max_context_length=131072)]


_SCENE_SENTENCES = (
    "Rain drummed on the tin roof of the old observatory as Mara pushed the door open.",
    "Inside, the great brass telescope pointed at a sky no one had looked at in years.",
    "Dust lay thick on the desk, except for one clean rectangle where a book had rested.",
    "Somewhere below, a floorboard creaked, then another, slow and deliberate.",
    "She held her breath and listened; the footsteps stopped at the foot of the stairs.",
    "A voice, hoarse and familiar, called her name as if it had been waiting for her.",
    "The lantern in her hand flickered, throwing long shadows across the star charts.",
    "On the wall, someone had circled a single constellation in fresh red ink.",
)
_DEFAULT_CHOICES = (
    ("Call out to the voice and ask who is there", "Hide behind the telescope and wait"),
    ("Look for the missing book", "Study the circled constellation"),
    ("Blow out the lantern", "Climb out through the dome's hatch"),
    ("Go down the stairs to meet the stranger", "Lock the door to the stairwell"),
)


def default_scene(n: int) -> tuple[str, list[str]]:
    """A deterministic scene and four choices, varied by ``n``."""
    sentences = [_SCENE_SENTENCES[(n + i) % len(_SCENE_SENTENCES)] for i in range(6)]
    scene = " ".join(sentences[:3]) + "\n\n" + " ".join(sentences[3:])
    choices = [pair[n % 2] for pair in _DEFAULT_CHOICES]
    return scene, choices


def default_reply(body: dict[str, Any], n: int) -> Reply:
    """What an unscripted request gets: scene + marker + 4 choices, or for a
    non-streamed call the choices as JSON (json_schema) or a numbered list."""
    scene, choices = default_scene(n)
    numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(choices, 1))
    if body.get("stream"):
        return Reply(text=f"{scene}\n\n### Choices\n{numbered}")
    fmt = body.get("response_format") or {}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return Reply(text=json.dumps({"choices": choices}))
    return Reply(text=numbered)


_TAG = re.compile(r"\[#(\d+)\]")
_RANGE = re.compile(r"#(\d+)(?:-#(\d+))?")
SUMMARY_PROMPT_START = "You summarise an interactive story"


def tags_in(text: str) -> set[int]:
    """The scene tags a text holds: ``[#3]`` in scenes, ``#1-#17`` ranges in summaries."""
    tags = {int(t) for t in _TAG.findall(text)}
    for covers in re.findall(r"Covers ([#\d, -]+)\.", text):
        for first, last in _RANGE.findall(covers):
            tags.update(range(int(first), int(last or first) + 1))
    return tags


def _ranges(tags: set[int]) -> str:
    out: list[str] = []
    for tag in sorted(tags):
        if out and out[-1][1] == tag - 1:
            out[-1][1] = tag
        else:
            out.append([tag, tag])
    return ", ".join(f"#{a}" if a == b else f"#{a}-#{b}" for a, b in out)


def summary_reply(body: dict[str, Any]) -> Reply | None:
    """A summary of a summary request, naming the tags of what it summarises."""
    messages = body.get("messages") or []
    if not (messages and str(messages[0].get("content", "")).startswith(SUMMARY_PROMPT_START)):
        return None
    tags = tags_in(" ".join(str(m.get("content", "")) for m in messages[1:]))
    covers = f" Covers {_ranges(tags)}." if tags else ""
    return Reply(text=f"The keeper's story went on, as told.{covers}")


def estimate_prompt_tokens(body: Any) -> int:
    """The fake's own token count of a request's messages (~4 chars a token)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return 0
    chars = sum(len(str(m.get("content") or "")) for m in messages if isinstance(m, dict))
    return chars // 4 + 4 * len(messages)


class FakeLLM(LocalServer):
    """A fake OpenAI-compatible LLM server (see the module docstring)."""

    def __init__(
        self,
        *,
        flavour: Flavour = "lmstudio",
        context_length: int = 8192,
        token_rate: float | None = 1000.0,
        ttft: float = 0.0,
        models: list[FakeModel] | None = None,
        auto_overflow: bool = True,
        reject_json_schema: bool = False,
        ollama_running: bool = True,
        parallel_slots: int | None = None,
        responder: Callable[[dict[str, Any], int], Reply | None] | None = None,
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown flavour {flavour!r}")
        if parallel_slots is not None and parallel_slots < 1:
            raise ValueError("parallel_slots must be at least 1 (None: no limit)")
        self.flavour = flavour
        self.context_length = context_length
        self.token_rate = token_rate  # tokens per second; None: as fast as possible
        self.ttft = ttft
        self.models = models if models is not None else _default_models(flavour)
        self.auto_overflow = auto_overflow
        self.reject_json_schema = reject_json_schema
        self.ollama_running = ollama_running
        self.parallel_slots = parallel_slots  # None: every request is generated at once
        # Answers unscripted requests (body, request number); None: the default reply.
        self.responder = responder
        self.generations: list[Generation] = []
        self.active = 0  # chat completions being generated right now
        self.max_concurrent = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self.streams: list[StreamLog] = []
        self.disconnects = 0
        self.client_gone = asyncio.Event()  # set when a client hangs up mid-reply
        self._queue: deque[Reply] = deque()
        self._ids = itertools.count(1)
        super().__init__()

    # -- lifecycle ------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._v1_models)
        app.router.add_route("*", "/{tail:.*}", self._other)

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (ends in /v1)."""
        return f"{self.root_url}/v1"

    @property
    def model(self) -> str:
        """The model a client should pick: the first loaded LLM."""
        return next(m.id for m in self.models if m.type in ("llm", "vlm") and m.state == "loaded")

    # -- scripting ------------------------------------------------------------------------

    def script(self, text: str = "", **options: Any) -> Reply:
        """Queue a reply for the next chat request; options are :class:`Reply` fields."""
        reply = Reply(text=text, **options)
        self._queue.append(reply)
        return reply

    def enqueue(self, *replies: Reply) -> None:
        """Queue ready-made replies, served in order."""
        self._queue.extend(replies)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of the chat completion requests so far."""
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    # -- handlers ---------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        n = next(self._ids)
        if not isinstance(body, dict):
            return web.json_response({"error": "'messages' field is required"}, status=400)
        reply = self._queue.popleft() if self._queue else None
        if reply is None and self.responder is not None:
            reply = self.responder(body, n)
        if reply is None:
            reply = summary_reply(body) or default_reply(body, n)
        if reply.fault is Fault.STALL_HEADERS:
            await self._pause(reply.stall)
        if reply.status is not None:
            return web.json_response(reply.body, status=reply.status)
        if reply.fault is Fault.HTTP_500:
            return web.json_response({"error": "Internal server error: the model crashed"}, status=500)
        prompt_tokens = reply.prompt_tokens or estimate_prompt_tokens(body)
        if reply.fault is Fault.CONTEXT_OVERFLOW or (
            self.auto_overflow and prompt_tokens > self.context_length
        ):
            return web.json_response(self._overflow_body(prompt_tokens), status=400)
        fmt = body.get("response_format")
        if (
            (reply.fault is Fault.REJECT_JSON_SCHEMA or self.reject_json_schema)
            and isinstance(fmt, dict)
            and fmt.get("type") == "json_schema"
        ):
            return web.json_response(
                {"error": {"message": "'response_format.type' must be 'json_object' or 'text'",
                           "type": "invalid_request_error", "param": "response_format", "code": None}},
                status=400,
            )
        model = str(body.get("model") or self.model)
        reasoning = _PIECE.findall(reply.reasoning)
        content = [] if reply.fault is Fault.EMPTY else reply.content_pieces()
        finish = reply.finish_reason
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0 and len(reasoning) + len(content) > max_tokens:
            # Reasoning spends the budget first, as it does on a real server.
            reasoning = reasoning[:max_tokens]
            content = content[: max_tokens - len(reasoning)]
            finish = "length"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(reasoning) + len(content),
            "total_tokens": prompt_tokens + len(reasoning) + len(content),
        }
        generation = Generation(n, bool(body.get("stream")), time.perf_counter())
        self.generations.append(generation)
        async with self._slot(generation):
            if body.get("stream"):
                return await self._stream(request, body, reply, model, n, reasoning, content, finish, usage)
            return await self._complete(reply, model, n, reasoning, content, finish, usage)

    @contextlib.asynccontextmanager
    async def _slot(self, generation: Generation) -> AsyncIterator[None]:
        """Hold one of the server's slots while a completion is generated; without a free
        one, wait in line (FIFO) before anything is sent, as llama.cpp and LM Studio do."""
        limit = self.parallel_slots
        if limit is not None and (self._slot_waiters or self.active >= limit):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter  # a finishing request hands its slot over (self.active stays)
            except asyncio.CancelledError:  # the client hung up while waiting
                if waiter.done() and not waiter.cancelled():
                    self._free_slot()  # it was handed a slot just now: pass it on
                elif waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
                generation.finished = time.perf_counter()
                raise
        else:
            self.active += 1
        generation.started = time.perf_counter()
        self.max_concurrent = max(self.max_concurrent, self.active)
        try:
            yield
        finally:
            generation.finished = time.perf_counter()
            self._free_slot()

    def _free_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1

    async def _complete(
        self, reply: Reply, model: str, n: int, reasoning: list[str], content: list[str],
        finish: str, usage: dict[str, int],
    ) -> web.Response:
        # One pause for the whole generation, paced like the stream would be.
        rate = reply.token_rate or self.token_rate
        ttft = reply.ttft if reply.ttft is not None else self.ttft
        await self._pause(ttft + ((len(reasoning) + len(content)) / rate if rate else 0.0))
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
        if reasoning:
            message[reply.reasoning_field] = "".join(reasoning)
        return web.json_response({
            "id": f"chatcmpl-fake{n}",
            "object": "chat.completion",
            "created": _CREATED + n,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
            "system_fingerprint": model,
        })

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: Reply, model: str, n: int,
        reasoning: list[str], content: list[str], finish: str, usage: dict[str, int],
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                     "Connection": "keep-alive"}
        )
        await response.prepare(request)
        log = StreamLog(started=time.perf_counter())
        self.streams.append(log)

        def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": f"chatcmpl-fake{n}",
                "object": "chat.completion.chunk",
                "created": _CREATED + n,
                "model": model,
                "system_fingerprint": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            data.update(extra)
            return data

        async def send(data: Any) -> None:
            raw = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
            await response.write(f"data: {raw}\n\n".encode())

        rate = reply.token_rate or self.token_rate
        ttft = reply.ttft if reply.ttft is not None else self.ttft
        fault = reply.fault
        try:
            await send(chunk({"role": "assistant", "content": ""}))
            await self._pause(ttft)
            start = asyncio.get_running_loop().time()
            pieces = [(reply.reasoning_field, p) for p in reasoning] + [("content", p) for p in content]
            for i, (key, piece) in enumerate(pieces):
                if i == reply.fault_after and fault is not None:
                    if fault is Fault.DROP:
                        return self._drop(request, response)
                    if fault is Fault.STALL:
                        await self._pause(reply.stall)
                    elif fault is Fault.NOT_JSON:
                        await send("{this is not json")
                    elif fault is Fault.ERROR_EVENT:
                        await send({"error": {"message": "Model unloaded during generation",
                                              "type": "server_error"}})
                if i in reply.gates:
                    await self._gate(reply.gates[i])
                    start = asyncio.get_running_loop().time() - i / rate if rate else start
                if fault is Fault.MALFORMED and i % 3 == 1:
                    await send(chunk(None))
                    await send({**chunk({}), "choices": [{"index": 0}]})
                    await send({**chunk({}), "choices": None})
                if rate:
                    delay = start + i / rate - asyncio.get_running_loop().time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                log.sent.append((time.perf_counter(), piece))
                await send(chunk({key: piece}))
            if fault is Fault.DROP:  # fault_after beyond the reply: drop at the end
                return self._drop(request, response)
            if fault is Fault.STALL and reply.fault_after >= len(pieces):
                await self._pause(reply.stall)
            if fault is Fault.NO_FINISH:
                await response.write_eof()
                return response
            await send(chunk({}, finish))
            options = body.get("stream_options")
            if reply.usage and isinstance(options, dict) and options.get("include_usage"):
                await send({**chunk({}), "choices": [], "usage": usage})
            await send("[DONE]")
            log.finished = time.perf_counter()
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            if not self._closing.is_set():
                self.disconnects += 1
                self.client_gone.set()
            raise
        return response

    async def _gate(self, gate: asyncio.Event) -> None:
        """Wait for ``gate``, or until the server is closing (teardown never hangs on it)."""
        closing = asyncio.ensure_future(self._closing.wait())
        opened = asyncio.ensure_future(gate.wait())
        try:
            await asyncio.wait({closing, opened}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            opened.cancel()

    def _drop(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        # Close the socket mid-body: the client sees an incomplete chunked response.
        if request.transport is not None:
            request.transport.close()
        return response

    def _overflow_body(self, prompt_tokens: int) -> dict[str, Any]:
        n_ctx = self.context_length
        if self.flavour == "lmstudio":
            return {"error": (
                f"Trying to keep the first {prompt_tokens} tokens when context the overflows. "
                f"However, the model is loaded with context length of only {n_ctx} tokens, "
                "which is not enough. Try to load the model with a larger context length, "
                "or provide a shorter input"
            )}
        if self.flavour == "llamacpp":
            return {"error": {
                "code": 400, "type": "exceed_context_size_error",
                "message": f"request ({prompt_tokens} tokens) exceeds the available context size "
                           f"({n_ctx} tokens), try increasing it",
                "n_prompt_tokens": prompt_tokens, "n_ctx": n_ctx,
            }}
        return {"error": {
            "message": f"This model's maximum context length is {n_ctx} tokens. However, your "
                       f"messages resulted in {prompt_tokens} tokens. Please reduce the length "
                       "of the messages.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded",
        }}

    async def _v1_models(self, request: web.Request) -> web.Response:
        await self._record(request)
        entries = []
        for m in self.models:
            entry: dict[str, Any] = {"id": m.id, "object": "model", "created": _CREATED,
                                     "owned_by": {"lmstudio": "organization_owner", "ollama": "library",
                                                  "llamacpp": "llamacpp", "vllm": "vllm"}.get(self.flavour, "system")}
            if self.flavour == "vllm":
                entry.update(root=m.id, parent=None, max_model_len=self.context_length, permission=[])
            if self.flavour == "llamacpp":
                entry["meta"] = {"n_ctx_train": m.max_context_length, "n_vocab": 152064}
            entries.append(entry)
        return web.json_response({"object": "list", "data": entries})

    async def _other(self, request: web.Request) -> web.Response:
        await self._record(request)
        key = (self.flavour, request.method, request.path)
        if key == ("lmstudio", "GET", "/api/v0/models"):
            return web.json_response({"object": "list", "data": [self._lmstudio_entry(m) for m in self.models]})
        if key == ("llamacpp", "GET", "/props"):
            return web.json_response({
                "default_generation_settings": {"n_ctx": self.context_length, "temperature": 0.8,
                                                "n_predict": -1, "params": {}},
                "total_slots": 1,
                "model_path": f"/models/{self.models[0].id}",
                "chat_template": "{{ messages }}",
                "build_info": "b5000-fake",
            })
        if key == ("ollama", "GET", "/api/ps"):
            running = [self._ollama_running(m) for m in self.models] if self.ollama_running else []
            return web.json_response({"models": running})
        if key == ("ollama", "POST", "/api/show"):
            return web.json_response(self._ollama_show())
        if key == ("ollama", "GET", "/"):
            return web.Response(text="Ollama is running")
        if self.flavour == "lmstudio":
            # LM Studio really answers unknown endpoints with 200 and an error body.
            return web.json_response(
                {"error": f"Unexpected endpoint or method. ({request.method} {request.path}). Returning 200 anyway"}
            )
        return web.json_response({"error": {"message": "not found", "code": 404}}, status=404)

    def _lmstudio_entry(self, m: FakeModel) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": m.id, "object": "model", "type": m.type, "publisher": "lmstudio-community",
            "arch": m.arch, "compatibility_type": "gguf", "quantization": "Q4_K_M",
            "state": m.state, "max_context_length": m.max_context_length,
        }
        if m.state == "loaded":
            entry["loaded_context_length"] = min(self.context_length, m.max_context_length)
        return entry

    def _ollama_running(self, m: FakeModel) -> dict[str, Any]:
        return {"name": m.id, "model": m.id, "size": 6_654_289_920, "digest": "f" * 64,
                "details": {"parent_model": "", "format": "gguf", "family": m.arch, "families": [m.arch],
                            "parameter_size": "8.0B", "quantization_level": "Q4_K_M"},
                "expires_at": "2030-01-01T00:05:00Z", "size_vram": 6_654_289_920,
                "context_length": self.context_length}

    def _ollama_show(self) -> dict[str, Any]:
        m = self.models[0]
        return {
            "modelfile": f"FROM {m.id}",
            "parameters": 'stop "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "details": {"format": "gguf", "family": m.arch, "parameter_size": "8.0B",
                        "quantization_level": "Q4_K_M"},
            "model_info": {"general.architecture": m.arch, "general.parameter_count": 8_030_261_248,
                           f"{m.arch}.context_length": m.max_context_length,
                           f"{m.arch}.embedding_length": 4096},
            "capabilities": ["completion"],
        }


# --- pytest fixtures ------------------------------------------------------------------


@pytest_asyncio.fixture
async def fake_llm_factory() -> AsyncIterator[Callable[..., Awaitable[FakeLLM]]]:
    """``await fake_llm_factory(flavour="ollama", ...)`` starts a FakeLLM for this test."""
    started: list[FakeLLM] = []

    async def make(**options: Any) -> FakeLLM:
        fake = await FakeLLM(**options).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        await fake.close()


@pytest_asyncio.fixture
async def fake_llm(fake_llm_factory: Callable[..., Awaitable[FakeLLM]]) -> FakeLLM:
    """A FakeLLM imitating LM Studio, fast, for this test."""
    return await fake_llm_factory()
