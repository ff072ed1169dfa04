"""Reasoning blocks (``<think>…</think>``, ``<thinking>…</thinking>``: DeepSeek R1, Qwen3 …)
dropped from a model's text, streamed or whole."""

from __future__ import annotations

import regex

_THINK_TAG = regex.compile(r"<(/?)think(?:ing)?>", regex.IGNORECASE)


class ThinkStripper:
    """Drop ``<think>…</think>`` reasoning from a stream of text pieces.

    A possible partial tag at the end of a piece is held until the next piece decides
    it; a stray closing tag is dropped too.
    """

    def __init__(self) -> None:
        self._pending = ""  # a possible partial tag, not yet classified
        self.in_think = False

    def feed(self, piece: str) -> str:
        """Return the part of ``piece`` (plus held text) that is outside reasoning."""
        buf = self._pending + piece
        self._pending = ""
        out: list[str] = []
        pos = 0
        while True:
            m = _THINK_TAG.search(buf, pos, partial=True)
            if m is None:
                if not self.in_think:
                    out.append(buf[pos:])
                break
            if not self.in_think:
                out.append(buf[pos : m.start()])
            if m.partial:
                self._pending = buf[m.start() :]
                break
            # An opening tag enters reasoning; a closing one (even a stray one) leaves it.
            self.in_think = m.group(1) == ""
            pos = m.end()
        return "".join(out)

    def flush(self) -> str:
        """End of text: a tag that never completed was ordinary text after all."""
        pending, self._pending = self._pending, ""
        return "" if self.in_think else pending


def strip_think(text: str) -> str:
    """Remove ``<think>…</think>`` blocks from a complete reply (for non-streamed calls)."""
    stripper = ThinkStripper()
    return (stripper.feed(text) + stripper.flush()).strip()
