"""Token counting works with no network and learns the server's ratio."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry

from core import tokens
from core.tokens import CHARS_PER_TOKEN, TokenCounter, load_encoding


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Empty tiktoken cache, no sockets, no HTTP: any download attempt fails loudly."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    try:
        import requests

        monkeypatch.setattr(requests, "get", refuse)
    except ImportError:
        pass
    # Forget encodings loaded earlier in this process, so this test really loads one.
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    load_encoding.cache_clear()
    yield
    load_encoding.cache_clear()


def test_counts_with_bundled_encoding_and_no_network(no_network: None) -> None:
    counter = TokenCounter()
    assert counter.exact
    assert counter.count("Hello, world!") == 4  # cl100k_base: "Hello" "," " world" "!"
    assert counter.count("") == 0


def test_special_token_text_in_a_story_is_counted_not_refused(no_network: None) -> None:
    assert TokenCounter().count("She wrote <|endoftext|> on the wall.") > 5


def test_falls_back_to_a_character_estimate_when_the_encoding_is_missing(
    no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str) -> None:
        raise ValueError(f"Unknown encoding {name}")

    monkeypatch.setattr(tiktoken, "get_encoding", broken)
    counter = TokenCounter()
    assert not counter.exact
    assert counter.count("x" * 41) == 11
    assert CHARS_PER_TOKEN == 4.0


def test_character_estimate_is_used_when_asked_explicitly() -> None:
    counter = TokenCounter(encoding=None)
    assert counter.count("abcd" * 10) == 10


def test_messages_count_adds_template_overhead() -> None:
    counter = TokenCounter(encoding=None)
    messages = [{"role": "system", "content": "abcd" * 10}, {"role": "user", "content": "abcd"}]
    assert counter.count_messages(messages) == 10 + 1 + 2 * tokens.TOKENS_PER_MESSAGE + tokens.TOKENS_PER_REPLY


def test_ratio_moves_towards_the_server_count_smoothly() -> None:
    counter = TokenCounter(encoding=None, smoothing=0.5)
    assert counter.adjust(1000) == 1000
    counter.observe(estimated=1000, reported=1200)
    assert counter.ratio == pytest.approx(1.1)
    for _ in range(20):
        counter.observe(estimated=1000, reported=1200)
    assert counter.ratio == pytest.approx(1.2, abs=0.001)
    assert counter.adjust(1000) == 1200


def test_ratio_is_clamped_and_ignores_tiny_or_bogus_samples() -> None:
    counter = TokenCounter(encoding=None, smoothing=1.0, min_ratio=0.5, max_ratio=2.0)
    counter.observe(estimated=10, reported=100)  # too small to say anything
    assert counter.ratio == 1.0
    counter.observe(estimated=1000, reported=0)  # server sent no usage
    assert counter.ratio == 1.0
    counter.observe(estimated=1000, reported=50_000)
    assert counter.ratio == 2.0
    counter.observe(estimated=1000, reported=1)
    assert counter.ratio == 0.5
