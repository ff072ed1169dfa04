"""Turn a model's raw content deltas into the story text a player may see.

A scene reply looks like ``[<think>…</think>] scene text ### Choices <choice list>``.
:class:`SceneTextFilter` is fed the content deltas as they arrive and returns only the
newly visible scene text: reasoning inside ``<think>`` tags is dropped, and everything
from the choices marker on is kept apart for the choice parser. Anything at the end of
the buffer that could still turn into a tag or a marker is held back until the next
delta decides it, so a marker split across chunks is never shown, not even for one
Discord edit. Trailing blank lines and rules (``---``) are held back too, since they
vanish when the marker follows them. A model that ignores the marker may end the reply
with the choices in another shape (a fenced or bare JSON block, a list behind "What do you
do?"): whatever could still become such a block is held back the same way
(:func:`core.choices.tail_block_start`), and at the end it is split off like the block
after a marker. Windows line endings become newlines.

Uses the ``regex`` package (a tiktoken dependency) for its partial matching, which
answers "could this tail still become a marker?" directly.
"""

from __future__ import annotations

from typing import NamedTuple

import regex

from core.choices import is_fence_line, tail_block_start
from core.think import ThinkStripper, strip_think

__all__ = [
    "CHOICES_FORMAT_INSTRUCTION", "CHOICES_MARKER", "FilteredReply", "SceneTextFilter", "ThinkStripper",
    "split_reply", "strip_think", "trim_to_last_sentence",
]

# The marker the prompt asks for. A markdown heading is what instruction-tuned local
# models reproduce most faithfully (they write headings all the time); an invented token
# such as <<<CHOICES>>> gets mangled more often by small models.
CHOICES_MARKER = "### Choices"

# The sentence the system prompt should contain so that the model produces the marker.
CHOICES_FORMAT_INSTRUCTION = (
    "After the scene, write a line containing only \"### Choices\", then exactly 4 "
    "numbered choices for what the player could do next, one per line, like:\n"
    "### Choices\n1. ...\n2. ...\n3. ...\n4. ..."
)

# "### Choices" (any heading level ≥ 2) is accepted anywhere, even mid-line: models
# sometimes forget the line break before it.
_INLINE_MARKER = regex.compile(r"\#{2,6}[ \t]*choices\b[ \t]*[*_]{0,3}:?", regex.IGNORECASE)
# What may trail a marker that was matched before its line was complete ("## Choices" +
# ":" in the next delta); removed from the start of the choice block.
_MARKER_TRAIL = regex.compile(r"^[ \t]*[*_]{0,3}[ \t]*:")

# Close variants accepted only as a whole line: "**Choices:**", "Choices", "## Your
# choices", "CHOICES:", "**Options:**" … A story sentence is never a line of just these.
_LINE_MARKER = regex.compile(
    r"[ \t]*(?:\#{1,6}[ \t]*)?[*_]{0,3}[ \t]*"
    r"(?:(?:your|the|possible|available|next)[ \t]+)?(?:choices|options)"
    r"[ \t]*(?:\([^)\n]{0,40}\))?[ \t]*[*_:]{0,4}[ \t]*",
    regex.IGNORECASE,
)

# "Choices: 1. Go left 2. …": a line that starts with the word and a colon, the choices
# following on the same line.
_LINE_PREFIX_MARKER = regex.compile(
    r"[ \t]*[*_]{0,3}[ \t]*choices[ \t]*[*_]{0,3}[ \t]*:", regex.IGNORECASE
)

# A markdown horizontal rule on its own line; held back at the end of the visible text.
_RULE_LINE = regex.compile(r"(?:^|\n)[ \t]*(?:-{3,}|\*{3,}|_{3,})[ \t]*$")

# The start of a line that may still grow into such a rule ("-", "--", "*").
_PARTIAL_RULE = regex.compile(r"[ \t]*(?:-+|\*+|_+)[ \t]*")

_SENTENCE_END = regex.compile(r"[.!?…][\"'”’)\]*_]*(?=\s|$)")


class FilteredReply(NamedTuple):
    """What :meth:`SceneTextFilter.finish` returns.

    ``scene_text`` equals everything :meth:`~SceneTextFilter.feed` returned plus
    ``tail``; ``choice_block`` is the raw text after the marker, or the block in another
    shape that ended the reply (``block_found``), "" when there is none.
    """

    scene_text: str
    choice_block: str
    tail: str
    marker_found: bool
    block_found: bool = False


class SceneTextFilter:
    """Incremental filter from raw content deltas to visible scene text.

    ``feed(delta)`` returns the text that became visible with this delta (often "");
    ``finish()`` releases what was held back and splits off the choice block.
    """

    def __init__(self) -> None:
        self._think = ThinkStripper()
        self._buf = ""  # think-free text not yet shown
        self._line_start = True  # whether _buf[0] sits at the start of a line
        self._shown: list[str] = []
        self._choices: list[str] = []
        self._marker_found = False
        self._block_found = False  # a choices block without the marker ended the reply
        self._cr = False  # a "\r" ended the last delta: "\r\n" may be split across two
        self._in_fence = False  # the shown text ends inside a fenced block
        self._shown_line = ""  # the shown text's last, unfinished line
        self._finished = False

    @property
    def marker_found(self) -> bool:
        """Whether the choices marker has been seen so far."""
        return self._marker_found

    @property
    def visible_text(self) -> str:
        """All the scene text shown so far."""
        return "".join(self._shown)

    def feed(self, delta: str) -> str:
        """Add one content delta; return the newly visible scene text."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        text = self._think.feed(self._newlines(delta))
        if self._marker_found:
            self._choices.append(text)
            return ""
        if not text:
            return ""
        self._buf += text
        return self._release(final=False)

    def finish(self) -> FilteredReply:
        """End of the reply: release held-back text and split off the choice block."""
        tail = ""
        if not self._finished:
            self._finished = True
            leftover = self._think.feed("\n" if self._cr else "") + self._think.flush()
            if self._marker_found:
                self._choices.append(leftover)
            else:
                self._buf += leftover
                tail = self._release(final=True)
        return FilteredReply(
            scene_text="".join(self._shown),
            choice_block=_MARKER_TRAIL.sub("", "".join(self._choices)).strip(),
            tail=tail,
            marker_found=self._marker_found,
            block_found=self._marker_found or self._block_found,
        )

    def _newlines(self, delta: str) -> str:
        """Windows line endings become newlines, even split across deltas."""
        if self._cr:
            delta = "\r" + delta
        self._cr = delta.endswith("\r") and not self._finished
        if self._cr:
            delta = delta[:-1]
        return delta.replace("\r\n", "\n").replace("\r", "\n")

    # -- marker and hold-back -----------------------------------------------------------

    def _release(self, *, final: bool) -> str:
        buf = self._buf
        if not self._shown:
            # Nothing shown yet: leading blank lines (typical after </think>) never count.
            buf = buf.lstrip()
        found = self._find_marker(buf, final=final)
        if found is not None:
            start, end = found
            self._marker_found = True
            self._choices.append(buf[end:])
            self._buf = ""
            return self._show(_trim_end(buf[:start]))
        block = tail_block_start(buf, final=final, line_start=self._line_start, in_fence=self._in_fence)
        if final and block is not None:
            self._block_found = True
            self._choices.append(buf[block:])
            cut = block
        elif final:
            cut = len(buf)
        else:
            cut = min(self._hold_from(buf), len(buf) if block is None else block)
        shown = _trim_end(buf[:cut])
        self._buf = buf[len(shown) :]
        return self._show(shown)

    def _show(self, text: str) -> str:
        if text:
            self._shown.append(text)
            self._line_start = False  # shown text never ends with a newline
            *lines, self._shown_line = (self._shown_line + text).split("\n")
            for line in lines:
                if is_fence_line(line):
                    self._in_fence = not self._in_fence
        return text

    def _line_starts(self, buf: str) -> list[int]:
        starts = [0] if self._line_start else []
        pos = buf.find("\n")
        while pos != -1:
            starts.append(pos + 1)
            pos = buf.find("\n", pos + 1)
        return starts

    def _find_marker(self, buf: str, *, final: bool) -> tuple[int, int] | None:
        """Earliest complete marker in ``buf``: (start, where the choice block begins)."""
        best: tuple[int, int] | None = None
        m = _INLINE_MARKER.search(buf)
        if m is not None:
            best = (m.start(), m.end())
        for start in self._line_starts(buf):
            if best is not None and start >= best[0]:
                break
            newline = buf.find("\n", start)
            if newline == -1 and not final:
                break  # the last line is still being written
            end = len(buf) if newline == -1 else newline
            line = buf[start:end]
            if _LINE_MARKER.fullmatch(line):
                return (start, end)
            p = _LINE_PREFIX_MARKER.match(line)
            if p is not None:
                return (start, start + p.end())
        return best

    def _hold_from(self, buf: str) -> int:
        """Index from which ``buf`` might still become a marker, so must stay hidden."""
        hold = len(buf)
        last_nl = buf.rfind("\n")
        if last_nl != -1 or self._line_start:
            start = last_nl + 1
            line = buf[start:]
            if (
                _LINE_MARKER.fullmatch(line, partial=True)
                or _LINE_PREFIX_MARKER.match(line, partial=True)
                or _PARTIAL_RULE.fullmatch(line)
            ):
                hold = start
        # A partial "### Choices" can also start mid-line; look from the last '#'-run.
        hash_pos = buf.rfind("#", 0, hold)
        while hash_pos > 0 and buf[hash_pos - 1] == "#":
            hash_pos -= 1
        if hash_pos != -1:
            m = _INLINE_MARKER.fullmatch(buf, hash_pos, partial=True)
            if m is not None and m.partial:
                hold = min(hold, hash_pos)
        return hold


def _trim_end(text: str) -> str:
    """Drop trailing whitespace and trailing markdown rules (``---``)."""
    while True:
        trimmed = text.rstrip()
        m = _RULE_LINE.search(trimmed)
        if m is None:
            return trimmed
        text = trimmed[: m.start()]


def split_reply(text: str) -> FilteredReply:
    """Run a complete reply through the filter at once."""
    f = SceneTextFilter()
    f.feed(text)
    return f.finish()


def trim_to_last_sentence(text: str) -> str:
    """Cut a scene that stopped mid-sentence (``finish_reason: length``) after its last
    full sentence; text without any sentence end is kept whole."""
    text = text.rstrip()
    last = max(_SENTENCE_END.finditer(text), key=lambda m: m.end(), default=None)
    if last is None:
        return text
    return text[: last.end()]
