"""The Kokoro client (core/tts.py) against the fake Kokoro-FastAPI (tests/fakes/kokoro.py):
voices in both forms, streamed PCM, mp3 files, voice mixes, and clear errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from core.tts import (
    KokoroClient,
    TTSError,
    TTSTimeouts,
    normalize_voice,
    parse_voices,
    voice_names,
)
from tests.fakes.kokoro import MP3_HEADER, FakeKokoro, Fault, level


@pytest_asyncio.fixture
async def kokoro() -> AsyncIterator[FakeKokoro]:
    async with FakeKokoro(realtime_factor=None) as fake:
        yield fake


@pytest_asyncio.fixture
async def client(kokoro: FakeKokoro) -> AsyncIterator[KokoroClient]:
    tts = KokoroClient(kokoro.base_url, timeouts=TTSTimeouts(connect=1, read=0.5, file=2))
    yield tts
    await tts.aclose()


async def collect(client: KokoroClient, text: str, **options: object) -> list[bytes]:
    return [piece async for piece in client.stream_pcm(text, **options)]  # type: ignore[arg-type]


async def test_voices_are_read_in_the_new_and_the_legacy_form(kokoro: FakeKokoro, client: KokoroClient) -> None:
    assert "af_bella" in await client.voices()
    kokoro.legacy = True
    kokoro.voices = ["zz_new", "af_sky"]
    assert await client.voices() != ["af_sky", "zz_new"]  # cached for a minute
    assert await client.voices(fresh=True) == ["af_sky", "zz_new"]
    assert parse_voices(["a", "b"]) == ["a", "b"]
    assert parse_voices({"voices": [{"id": "x", "name": "X"}, {"name": "y"}]}) == ["x", "y"]


async def test_pcm_is_streamed_in_pieces_with_the_users_voice_and_speed(kokoro: FakeKokoro,
                                                                        client: KokoroClient) -> None:
    pieces = await collect(client, "The door creaks open.", voice="af_bella(2) + af_sky(1)", speed=1.5)
    audio = b"".join(pieces)
    assert len(pieces) > 1 and any(len(p) % 2 for p in pieces)  # odd-sized pieces, as Kokoro may send
    assert len(audio) == kokoro.expected_pcm_bytes("The door creaks open.", 1.5)
    assert audio[:2] == level(1).to_bytes(2, "little", signed=True)
    [body] = kokoro.speech_requests
    assert body == {"model": "kokoro", "input": "The door creaks open.", "voice": "af_bella(2)+af_sky(1)",
                    "speed": 1.5, "response_format": "pcm", "stream": True}


async def test_an_mp3_file_has_the_right_bytes_and_a_size_limit(kokoro: FakeKokoro, client: KokoroClient) -> None:
    data = await client.synthesize("Hello there. " * 20)
    assert data.startswith(MP3_HEADER)
    assert kokoro.speech_requests[-1]["response_format"] == "mp3"
    with pytest.raises(TTSError) as caught:
        await client.synthesize("Hello there. " * 200, max_bytes=10_000)
    assert caught.value.kind == "too_large" and "too large" in caught.value.message


def test_voice_mixes_are_accepted_and_garbage_is_not() -> None:
    assert normalize_voice(" af_bella(2) + af_sky(1) ") == "af_bella(2)+af_sky(1)"
    assert normalize_voice("af_bella-af_sky") == "af_bella-af_sky"
    assert voice_names("af_bella(2.5)+af_sky") == ["af_bella", "af_sky"]
    for bad in ("", "af_bella+", "+af", "af bella; rm", "af_bella((2))", "a/b"):
        with pytest.raises(TTSError):
            normalize_voice(bad)
    # Weights: more than 0, at most 10; at most five voices in a mix.
    assert normalize_voice("af_bella(10)+af_sky(0.5)") == "af_bella(10)+af_sky(0.5)"
    for bad in ("af_bella(0)+af_sky", "af_bella(99999999)", "af_bella(10.01)", "a+b+c+d+e+f"):
        with pytest.raises(TTSError, match="at most 5 voices"):
            normalize_voice(bad)


async def test_an_unknown_voice_is_refused_with_kokoros_reason(client: KokoroClient) -> None:
    with pytest.raises(TTSError) as caught:
        await client.check_voice("af_bella+xx_nobody")
    assert caught.value.kind == "unknown_voice" and "xx_nobody" in caught.value.message
    with pytest.raises(TTSError) as caught:
        await collect(client, "Hi.", voice="xx_nobody")
    assert caught.value.kind == "rejected" and "Voice 'xx_nobody' not found" in caught.value.message
    assert await client.check_voice("af_bella(2)+af_sky(1)") == "af_bella(2)+af_sky(1)"


async def test_kokoro_down_says_so_clearly(closed_port: int) -> None:
    nowhere = f"http://127.0.0.1:{closed_port}"
    tts = KokoroClient(nowhere)
    try:
        with pytest.raises(TTSError) as caught:
            await collect(tts, "Hi.")
        assert caught.value.kind == "unreachable"
        assert caught.value.message.startswith(f"Narration unavailable: Kokoro at {nowhere} is not reachable")
        with pytest.raises(TTSError):
            await tts.voices()
        assert not await tts.health()
    finally:
        await tts.aclose()


async def test_kokoro_credentials_are_not_shown_to_players(closed_port: int) -> None:
    tts = KokoroClient(f"http://kahani:hunter2@127.0.0.1:{closed_port}?token=secret")
    try:
        with pytest.raises(TTSError) as caught:
            await collect(tts, "Hi.")
        assert caught.value.message.startswith(f"Narration unavailable: Kokoro at http://127.0.0.1:{closed_port} is")
        assert "hunter2" not in caught.value.message and "secret" not in caught.value.message
    finally:
        await tts.aclose()


async def test_a_server_error_and_a_slow_server_become_clear_errors(kokoro: FakeKokoro,
                                                                    client: KokoroClient) -> None:
    kokoro.fail_next(Fault.HTTP_500)
    with pytest.raises(TTSError) as caught:
        await collect(client, "Hi.")
    assert caught.value.kind == "server_error" and "internal error" in caught.value.message

    kokoro.fail_next(Fault.STALL_HEADERS, seconds=5)
    started = time.perf_counter()
    with pytest.raises(TTSError) as caught:
        await collect(client, "Hi.")
    assert caught.value.kind == "timeout" and "did not answer within 0.5 s" in caught.value.message
    assert time.perf_counter() - started < 2

    kokoro.fail_next(Fault.STALL, seconds=5, after_bytes=5000)
    with pytest.raises(TTSError) as caught:
        await collect(client, "A longer line of text to read.")
    assert caught.value.kind == "timeout"

    kokoro.fail_next(Fault.DROP, after_bytes=5000)
    with pytest.raises(TTSError) as caught:
        await collect(client, "A longer line of text to read.")
    assert caught.value.kind == "bad_reply"
    assert await client.health()


async def test_narration_works_again_when_kokoro_comes_back(kokoro: FakeKokoro, client: KokoroClient) -> None:
    await kokoro.pause()
    with pytest.raises(TTSError) as caught:
        await collect(client, "Hi.")
    assert caught.value.kind == "unreachable"
    await kokoro.resume()
    assert b"".join(await collect(client, "Hi."))
