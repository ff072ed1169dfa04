"""LLMClient: the real openai client against FakeLLM, for every fault."""

from __future__ import annotations

import ast
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core import messages as msg
from core.urls import public_url
from core.choices import build_choices_request, parse_choices_reply
from core.llm import (
    DEFAULT_CONTEXT_LENGTH,
    ErrorKind,
    Finish,
    LLMClient,
    LLMError,
    LLMTimeouts,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    Usage,
    guess_server_name,
)
from core.streaming import SceneTextFilter
from tests.fakes.llm import FakeLLM, FakeModel, Fault, Reply

MESSAGES = [
    {"role": "system", "content": "You are the narrator."},
    {"role": "user", "content": "Previously: the observatory."},
    {"role": "user", "content": "I open the door."},
]
SCENE_REPLY = "The door opens onto a storm.\n\n### Choices\n1. Run\n2. Hide\n3. Fight\n4. Talk"
FAST = LLMTimeouts(connect=2.0, first_token=0.5, idle=0.3, request=2.0)

MakeClient = Callable[..., LLMClient]


@pytest_asyncio.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[LLMClient] = []

    def make(fake_or_url: FakeLLM | str, **options: Any) -> LLMClient:
        url = fake_or_url.base_url if isinstance(fake_or_url, FakeLLM) else fake_or_url
        options.setdefault("server_name", "LM Studio")
        options.setdefault("timeouts", FAST)
        client = LLMClient(url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def collect(client: LLMClient, **options: Any) -> list[StreamEvent]:
    options.setdefault("max_tokens", 800)
    return [event async for event in client.stream_chat(MESSAGES, **options)]


async def fails(client: LLMClient, **options: Any) -> tuple[LLMError, list[StreamEvent]]:
    """Stream until the expected LLMError; return it and the events seen before it."""
    options.setdefault("max_tokens", 800)
    seen: list[StreamEvent] = []
    with pytest.raises(LLMError) as info:
        async for event in client.stream_chat(MESSAGES, **options):
            seen.append(event)
    return info.value, seen


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# --- the happy path ----------------------------------------------------------------


async def test_stream_yields_text_then_usage_then_finish_last(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, prompt_tokens=321)
    events = await collect(make_client(fake_llm))
    assert text_of(events) == SCENE_REPLY
    assert sum(isinstance(e, TextDelta) for e in events) > 10  # really streamed in pieces
    assert events[-1] == Finish("stop")
    usage = [e for e in events if isinstance(e, Usage)]
    assert len(usage) == 1 and usage[0].prompt_tokens == 321
    assert usage[0].completion_tokens > 0


async def test_request_carries_messages_in_order_max_tokens_and_stream_options(
    fake_llm: FakeLLM, make_client: MakeClient
) -> None:
    await collect(make_client(fake_llm, api_key="sekrit"), max_tokens=600, temperature=0.8)
    (body,) = fake_llm.chat_requests
    assert body["messages"] == MESSAGES
    assert body["max_tokens"] == 600
    assert body["temperature"] == 0.8
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == fake_llm.model
    chat = next(r for r in fake_llm.requests if r.path == "/v1/chat/completions")
    assert chat.headers["Authorization"] == "Bearer sekrit"


async def test_without_api_key_a_placeholder_is_sent(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    await collect(make_client(fake_llm))
    chat = next(r for r in fake_llm.requests if r.path == "/v1/chat/completions")
    assert chat.headers["Authorization"] == "Bearer not-needed"


async def test_stream_through_scene_filter_hides_think_and_marker(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script("<think>The player wants drama.</think>\n\n" + SCENE_REPLY)
    scene_filter = SceneTextFilter()
    shown = ""
    async for event in make_client(fake_llm).stream_chat(MESSAGES, max_tokens=500):
        if isinstance(event, TextDelta):
            shown += scene_filter.feed(event.text)
            assert "think" not in shown and "#" not in shown and "drama" not in shown
    result = scene_filter.finish()
    assert shown + result.tail == result.scene_text == "The door opens onto a storm."
    assert result.choice_block.startswith("1. Run")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_fields_are_reasoning_events_never_text(
    field: str, fake_llm: FakeLLM, make_client: MakeClient
) -> None:
    fake_llm.script("Scene text.", reasoning="Let me think about the plot.", reasoning_field=field)
    events = await collect(make_client(fake_llm))
    assert text_of(events) == "Scene text."
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning == "Let me think about the plot."
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert all(not isinstance(e, ReasoningDelta) for e in events[first_text:])


async def test_finish_reason_length_is_reported(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script("one two three four five six seven eight nine ten")
    events = await collect(make_client(fake_llm), max_tokens=4)
    assert text_of(events) == "one two three four"
    assert events[-1] == Finish("length")


async def test_server_ignoring_stream_options_still_finishes(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, usage=False)
    events = await collect(make_client(fake_llm))
    assert not any(isinstance(e, Usage) for e in events)
    assert events[-1] == Finish("stop") and text_of(events) == SCENE_REPLY


async def test_malformed_choice_entries_are_skipped(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, fault=Fault.MALFORMED)
    events = await collect(make_client(fake_llm))
    assert text_of(events) == SCENE_REPLY
    assert events[-1] == Finish("stop")


async def test_default_reply_is_a_scene_with_marker_and_four_choices(
    fake_llm: FakeLLM, make_client: MakeClient
) -> None:
    events = await collect(make_client(fake_llm))
    assert "\n### Choices\n1. " in text_of(events)
    assert "\n4. " in text_of(events)


# --- models and context length ------------------------------------------------------


async def test_resolve_model_picks_the_loaded_llm_not_embeddings_or_unloaded(
    fake_llm: FakeLLM, make_client: MakeClient
) -> None:
    assert await make_client(fake_llm).resolve_model() == "qwen2.5-7b-instruct"
    assert await make_client(fake_llm).list_models() == [m.id for m in fake_llm.models]


async def test_configured_model_is_used_without_asking_the_server(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    client = make_client(fake_llm, model="my-model", context_length=12000)
    assert await client.resolve_model() == "my-model"
    assert await client.context_length() == 12000
    assert fake_llm.requests == []


async def test_resolve_model_on_other_servers_skips_embedding_models(
    fake_llm_factory: Callable[..., Awaitable[FakeLLM]], make_client: MakeClient
) -> None:
    fake = await fake_llm_factory(
        flavour="openai", models=[FakeModel("text-embedding-3-small", "embeddings"), FakeModel("gpt-4o-mini")]
    )
    assert await make_client(fake).resolve_model() == "gpt-4o-mini"


async def test_no_model_at_all_is_a_clear_error(
    fake_llm_factory: Callable[..., Awaitable[FakeLLM]], make_client: MakeClient
) -> None:
    fake = await fake_llm_factory(flavour="openai", models=[])
    with pytest.raises(LLMError) as info:
        await make_client(fake).resolve_model()
    assert info.value.kind == ErrorKind.NO_MODEL
    assert fake.base_url in info.value.reason


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"flavour": "lmstudio", "context_length": 16384}, 16384),
        ({"flavour": "llamacpp", "context_length": 6144}, 6144),
        ({"flavour": "vllm", "context_length": 32768}, 32768),
        ({"flavour": "ollama", "context_length": 12288}, 12288),
        ({"flavour": "ollama", "ollama_running": False}, 4096),  # /api/show maximum, capped
        ({"flavour": "openai"}, DEFAULT_CONTEXT_LENGTH),
    ],
)
async def test_context_length_is_read_from_each_kind_of_server(
    options: dict[str, Any], expected: int,
    fake_llm_factory: Callable[..., Awaitable[FakeLLM]], make_client: MakeClient,
) -> None:
    fake = await fake_llm_factory(**options)
    client = make_client(fake, server_name=None)
    assert await client.context_length() == expected
    asked = len(fake.requests)
    if options.get("ollama_running", True):
        assert await client.context_length() == expected
        assert len(fake.requests) == asked  # cached


async def test_context_length_names_the_server_that_answered(
    fake_llm_factory: Callable[..., Awaitable[FakeLLM]], make_client: MakeClient
) -> None:
    fake = await fake_llm_factory(flavour="llamacpp")
    client = make_client(fake, server_name=None)
    assert client.server_name == msg.LLM_GENERIC_SERVER
    await client.context_length()
    assert client.server_name == "llama.cpp"


async def test_context_length_with_the_server_down_is_the_default(make_client: MakeClient,
                                                                  closed_port: int) -> None:
    client = make_client(f"http://127.0.0.1:{closed_port}/v1")
    assert await client.context_length() == DEFAULT_CONTEXT_LENGTH


def test_server_names_are_guessed_from_the_address() -> None:
    assert guess_server_name("http://localhost:1234/v1") == "LM Studio"
    assert guess_server_name("http://127.0.0.1:11434/v1") == "Ollama"
    assert guess_server_name("https://api.openai.com/v1") == "OpenAI"
    assert guess_server_name("http://gpu-box:9999/v1") == msg.LLM_GENERIC_SERVER


# --- failures ----------------------------------------------------------------------------


async def test_refused_connection_names_the_server_and_url(make_client: MakeClient, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    error, _ = await fails(make_client(url, model="m"))
    assert error.kind == ErrorKind.UNREACHABLE
    assert error.reason == f"The storyteller (LM Studio at {url}) is not reachable. Is it running?"


async def test_a_url_with_credentials_is_shown_to_players_without_them(make_client: MakeClient,
                                                                      closed_port: int) -> None:
    error, _ = await fails(make_client(f"http://kahani:hunter2@127.0.0.1:{closed_port}/v1?key=sk-secret", model="m"))
    assert error.kind == ErrorKind.UNREACHABLE
    assert f"at http://127.0.0.1:{closed_port}/v1)" in error.reason
    assert "hunter2" not in error.reason and "sk-secret" not in error.reason and "kahani@" not in error.reason


def test_public_urls_keep_scheme_host_port_and_path_only() -> None:
    assert public_url("https://u:p@api.example.com/v1?key=k#frag") == "https://api.example.com/v1"
    assert public_url("http://[::1]:1234/v1") == "http://[::1]:1234/v1"
    assert public_url("http://localhost:8880") == "http://localhost:8880"
    assert public_url("http://host:notaport/") == "http://host:notaport/"
    assert public_url("http://u:hunter2@host:notaport/x?key=k") == "http://host:notaport/x"  # still no secret
    assert public_url("::::postgres://u:hunter2@x?password=p") == "::::postgres://x"


def test_a_malformed_database_url_is_reported_without_its_password() -> None:
    from core.db import DatabaseError, parse_database_url

    for url in ("postgresql+asyncpg://kahani:hunter2@db:notaport/kahani", "::::postgres://u:hunter2@x"):
        with pytest.raises(DatabaseError) as refused:
            parse_database_url(url)
        assert "hunter2" not in refused.value.message and "not a valid database URL" in refused.value.message


async def test_http_500_is_a_server_error(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(fault=Fault.HTTP_500)
    error, seen = await fails(make_client(fake_llm))
    assert (error.kind, error.status, seen) == (ErrorKind.SERVER_ERROR, 500, [])


@pytest.mark.parametrize("flavour", ["lmstudio", "llamacpp", "openai"])
async def test_context_overflow_400_is_recognised_in_each_servers_wording(
    flavour: str, fake_llm_factory: Callable[..., Awaitable[FakeLLM]], make_client: MakeClient
) -> None:
    fake = await fake_llm_factory(flavour=flavour)
    fake.script(fault=Fault.CONTEXT_OVERFLOW)
    error, _ = await fails(make_client(fake, model="m"))
    assert (error.kind, error.status) == (ErrorKind.CONTEXT_OVERFLOW, 400)
    assert error.reason == msg.LLM_CONTEXT_OVERFLOW


async def test_prompt_longer_than_the_context_overflows(
    fake_llm_factory: Callable[..., Awaitable[FakeLLM]], make_client: MakeClient
) -> None:
    fake = await fake_llm_factory(context_length=100)
    with pytest.raises(LLMError) as info:
        await make_client(fake).stream_chat([{"role": "user", "content": "word " * 400}], max_tokens=10).__anext__()
    assert info.value.kind == ErrorKind.CONTEXT_OVERFLOW


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, ErrorKind.AUTH), (404, ErrorKind.MODEL_NOT_FOUND), (429, ErrorKind.RATE_LIMITED), (422, ErrorKind.BAD_REQUEST)],
)
async def test_other_http_errors_map_to_kinds(
    status: int, kind: ErrorKind, fake_llm: FakeLLM, make_client: MakeClient
) -> None:
    fake_llm.script(status=status, body={"error": {"message": "nope"}})
    error, _ = await fails(make_client(fake_llm, model="ghost"))
    assert (error.kind, error.status) == (kind, status)
    if kind == ErrorKind.MODEL_NOT_FOUND:
        assert "ghost" in error.reason


async def test_connection_dropped_mid_stream_is_a_stream_cut(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, fault=Fault.DROP, fault_after=5)
    error, seen = await fails(make_client(fake_llm))
    assert error.kind == ErrorKind.STREAM_CUT
    assert error.reason == msg.LLM_STREAM_CUT
    assert len([e for e in seen if isinstance(e, TextDelta)]) == 5
    assert not any(isinstance(e, Finish) for e in seen)


async def test_stream_ending_without_finish_is_a_stream_cut(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, fault=Fault.NO_FINISH)
    error, seen = await fails(make_client(fake_llm))
    assert error.kind == ErrorKind.STREAM_CUT
    assert text_of(seen) == SCENE_REPLY


async def test_stall_before_first_token_times_out(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, fault=Fault.STALL, fault_after=0, stall=30)
    started = time.monotonic()
    error, seen = await fails(make_client(fake_llm, model="m"))
    assert error.kind == ErrorKind.FIRST_TOKEN_TIMEOUT
    assert "0.5 s" in error.reason
    assert seen == [] and time.monotonic() - started < 3


async def test_no_response_headers_times_out_as_first_token(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, fault=Fault.STALL_HEADERS, stall=30)
    error, _ = await fails(make_client(fake_llm, model="m"))
    assert error.kind == ErrorKind.FIRST_TOKEN_TIMEOUT


async def test_silence_mid_stream_times_out_as_idle(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, fault=Fault.STALL, fault_after=4, stall=30)
    error, seen = await fails(make_client(fake_llm))
    assert error.kind == ErrorKind.IDLE_TIMEOUT
    assert "0.3 s" in error.reason
    assert len([e for e in seen if isinstance(e, TextDelta)]) == 4


async def test_slow_but_steady_stream_is_not_a_timeout(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    # Time to first token 0.15 s (< 0.5 s allowed), then a token every 50 ms (< 0.3 s
    # idle): the whole reply takes longer than either limit, and that is fine.
    fake_llm.script("one two three four five six seven eight", ttft=0.15, token_rate=20)
    events = await collect(make_client(fake_llm, model="m"))
    assert text_of(events) == "one two three four five six seven eight"


async def test_reasoning_counts_as_first_token(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    # Reasoning for 1 s in total (> first-token limit), but steadily: no timeout.
    fake_llm.script("Done.", reasoning="step " * 20, token_rate=20)
    events = await collect(make_client(fake_llm, model="m"))
    assert text_of(events) == "Done."


async def test_empty_reply_is_an_error(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, fault=Fault.EMPTY)
    error, _ = await fails(make_client(fake_llm))
    assert (error.kind, error.reason) == (ErrorKind.EMPTY_REPLY, msg.LLM_EMPTY_REPLY)


async def test_reply_of_only_reasoning_says_so(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script("Scene.", reasoning="thinking " * 50)
    error, seen = await fails(make_client(fake_llm), max_tokens=20)
    assert (error.kind, error.reason) == (ErrorKind.EMPTY_REPLY, msg.LLM_ONLY_REASONING)
    assert any(isinstance(e, ReasoningDelta) for e in seen)


async def test_data_line_that_is_not_json_is_a_bad_stream(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, fault=Fault.NOT_JSON, fault_after=3)
    error, _ = await fails(make_client(fake_llm))
    assert error.kind == ErrorKind.BAD_STREAM


async def test_error_event_inside_a_200_stream_is_a_server_error(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(SCENE_REPLY, fault=Fault.ERROR_EVENT, fault_after=3)
    error, _ = await fails(make_client(fake_llm))
    assert error.kind == ErrorKind.SERVER_ERROR


# --- cancellation ------------------------------------------------------------------------


async def test_cancelling_the_consumer_closes_the_http_stream(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script("word " * 200, token_rate=50)
    first_text = asyncio.Event()

    async def consume() -> None:
        async for event in make_client(fake_llm).stream_chat(MESSAGES, max_tokens=500):
            if isinstance(event, TextDelta):
                first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake_llm.client_gone.wait(), 5)
    assert fake_llm.disconnects == 1


async def test_closing_the_iterator_early_closes_the_http_stream(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script("word " * 200, token_rate=50)
    async with aclosing(make_client(fake_llm).stream_chat(MESSAGES, max_tokens=500)) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                break
    await asyncio.wait_for(fake_llm.client_gone.wait(), 5)


# --- non-streamed calls ------------------------------------------------------------------


async def test_complete_returns_text_without_think_and_with_reasoning(
    fake_llm: FakeLLM, make_client: MakeClient
) -> None:
    fake_llm.script("<think>hmm</think>\nA summary.", reasoning="more thoughts")
    result = await make_client(fake_llm).complete(MESSAGES, max_tokens=100)
    assert (result.text, result.reasoning, result.finish_reason) == ("A summary.", "more thoughts", "stop")
    assert result.usage is not None and result.usage.total_tokens > 0
    assert fake_llm.chat_requests[0]["stream"] is False


async def test_extra_choices_call_uses_json_schema_when_supported(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    request = build_choices_request("The dragon lands on the tower.")
    result = await make_client(fake_llm).complete(
        request.messages, max_tokens=request.max_tokens,
        response_format=request.response_format, fallback_messages=request.plain_messages,
    )
    assert len(parse_choices_reply(result.text)) == 4
    (body,) = fake_llm.chat_requests
    assert body["response_format"] == request.response_format
    assert body["messages"] == request.messages


async def test_server_rejecting_json_schema_gets_the_plain_prompt(
    fake_llm_factory: Callable[..., Awaitable[FakeLLM]], make_client: MakeClient
) -> None:
    fake = await fake_llm_factory(reject_json_schema=True)
    client = make_client(fake)
    request = build_choices_request("The dragon lands on the tower.")
    for _ in range(2):
        result = await client.complete(
            request.messages, max_tokens=request.max_tokens,
            response_format=request.response_format, fallback_messages=request.plain_messages,
        )
        assert len(parse_choices_reply(result.text)) == 4
    first, retry, second = fake.chat_requests
    assert "response_format" in first
    assert "response_format" not in retry and retry["messages"] == request.plain_messages
    assert "response_format" not in second  # the rejection is remembered


async def test_complete_failures_are_llm_errors(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.script(fault=Fault.HTTP_500)
    fake_llm.script(fault=Fault.STALL_HEADERS, stall=30)
    fake_llm.script(fault=Fault.EMPTY)
    client = make_client(fake_llm, model="m", timeouts=LLMTimeouts(request=0.3))
    kinds = []
    for _ in range(3):
        with pytest.raises(LLMError) as info:
            await client.complete(MESSAGES, max_tokens=50)
        kinds.append(info.value.kind)
    assert kinds == [ErrorKind.SERVER_ERROR, ErrorKind.REQUEST_TIMEOUT, ErrorKind.EMPTY_REPLY]


# --- the fake itself speaks LM Studio's wire format --------------------------------------


async def test_fake_stream_matches_lm_studio_chunk_shapes(fake_llm: FakeLLM) -> None:
    import json

    import httpx

    fake_llm.script("Hi there.")
    body = {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{fake_llm.base_url}/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert {"id", "created", "model", "system_fingerprint", "choices"} <= chunk.keys()
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-2]) == "Hi there."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and set(chunks[-1]["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


async def test_fake_lmstudio_answers_unknown_endpoints_with_200_error(fake_llm: FakeLLM) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        response = await http.get(f"{fake_llm.root_url}/props")
    assert response.status_code == 200 and "Unexpected endpoint" in response.json()["error"]


async def test_fake_scripts_are_served_in_order(fake_llm: FakeLLM, make_client: MakeClient) -> None:
    fake_llm.enqueue(Reply("first"), Reply("second"))
    client = make_client(fake_llm)
    assert text_of(await collect(client)) == "first"
    assert text_of(await collect(client)) == "second"


def test_core_llm_layer_does_not_import_discord() -> None:
    core = Path(__file__).resolve().parents[1] / "core"
    for name in ("llm.py", "streaming.py", "choices.py", "tokens.py", "messages.py"):
        tree = ast.parse((core / name).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        assert "discord" not in imported, name
