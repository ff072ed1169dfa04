"""Scene text → narration chunks for text-to-speech (DESIGN §5).

A scene is read aloud piece by piece: the first piece is flushed early (the first short
sentence, or about 80 characters) so that audio starts fast; later pieces are a few
sentences, at most about 300 characters, which is what Kokoro reads naturally in one go.

Markdown markup, URLs, Discord mentions and custom emoji are not read. The choice list is
not part of a scene's text (the engine keeps it apart); :func:`narration_text` also cuts
it off a complete reply that still has it.

**The chunks always join back to exactly the narrated text**: ``"".join(chunks) ==
narration_text(scene)``, however the scene was streamed in, and nothing is dropped,
however short (the original system's chunker dropped short pieces). A chunk may be
whitespace or punctuation only; :func:`is_speakable` tells the caller whether it is worth
sending to the TTS server.

The cleaning is streamable because every rule matches within a run of non-space
characters (URLs, ``**``, ``[``…), or at a line start (headings, quotes, bullets), and
text is only cleaned up to a point where a space ends and a word begins.
"""

from __future__ import annotations

import re

FIRST_CHUNK_CHARS = 80
CHUNK_CHARS = 300
# A later chunk is sent once it has at least this much, ending at a sentence.
CHUNK_TARGET_CHARS = 200

# Markers at the start of a line: headings, Discord's "-#" subtext, quotes, bullets.
# The indentation before them is kept (so a line's start may be cleaned separately).
_LINE_MARKER = re.compile(r"(?m)^([ \t]*)(?:#{1,6}|-#|>{1,3}|[-*+•])[ \t]+")
# Tokens without spaces that are not read: links and their markup, mentions, emoji.
_TOKEN = re.compile(
    r"\]\([^\s)]*\)"  # the "(url)" of a [text](url) link
    r"|<(?:https?://|[@#:]|a:|t:)[^\s>]*>"  # <url>, <@user>, <#channel>, <:emoji:id>, <t:…>
    r"|https?://\S+|www\.\S+"  # bare URLs
)
# Markup characters: emphasis, strike-through, spoilers, code, link brackets.
_MARKUP = re.compile(r"[*`~|\[\]]+|(?<![0-9A-Za-z])_+|_+(?![0-9A-Za-z])")
# A URL's closing punctuation is text (the full stop after it ends the sentence) …
_URL_TAIL = re.compile(r"[.,;:!?)\"'’”]+$")

# The engine's choices marker (core/streaming.py): streamed scene text never has it, a
# stored reply might.
_CHOICES_HEADING = re.compile(r"(?im)^[ \t]*#{2,6}[ \t]*choices\b")

_SENTENCE_END = re.compile(r"(?:[.!?…]+|[.!?…]+[\"'’”»)\]]+)$")
_CLAUSE_END = re.compile(r"[,;:—–)]$|\s[-–—]$")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "sr", "jr", "prof", "mt", "vs", "etc", "e.g", "i.e"})


def _drop_token(match: re.Match[str]) -> str:
    token = match.group(0)
    if token.startswith(("http", "www")):
        tail = _URL_TAIL.search(token)
        return tail.group(0) if tail else ""
    return ""


def clean(text: str, *, at_line_start: bool = True) -> str:
    """``text`` without markdown, URLs, mentions and emoji. ``at_line_start`` says
    whether ``text`` begins a line (False when it continues a line cleaned before)."""
    if not text:
        return text
    prefix = "" if at_line_start else "\x00"  # a character no rule matches: not a line start
    text = _LINE_MARKER.sub(r"\1", prefix + text)
    text = _TOKEN.sub(_drop_token, text)
    text = _MARKUP.sub("", text)
    return text[len(prefix):]


def without_choices(scene: str) -> str:
    """A reply's scene text without the choice list (from the "### Choices" heading)."""
    marker = _CHOICES_HEADING.search(scene)
    return scene[:marker.start()] if marker else scene


def narration_text(scene: str) -> str:
    """What is read aloud of a complete scene (the join of its chunks)."""
    return clean(without_choices(scene))


def is_speakable(chunk: str) -> bool:
    """Whether a chunk has anything to say (a letter or a digit)."""
    return any(ch.isalnum() for ch in chunk)


def _cut_points(text: str, size: int, final: bool) -> list[int]:
    """Cut positions in ``text[:size]``: where a word starts after a run of spaces (and
    the end, if final). ``text`` may run one character past ``size``: the start of what
    comes next, so that a chunk can end right before it."""
    points = [m.end() for m in re.finditer(r"\s+(?=\S)", text) if m.end() <= size]
    if final and size:
        points.append(size)
    return [p for p in points if text[:p].strip()]


def _is_sentence_end(text: str, point: int) -> bool:
    """Whether the words before ``point`` end a sentence (or a paragraph)."""
    before = text[:point]
    stripped = before.rstrip()
    if point == len(text) or "\n\n" in before[len(stripped):]:
        return True
    if not _SENTENCE_END.search(stripped):
        return False
    last_word = stripped.rsplit(None, 1)[-1].lower().rstrip(".")
    if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha() and stripped.endswith(".")):
        return False  # "Mr. Hale", "J. R. R. Tolkien"
    return not text[point:point + 1].islower()  # "and then… he left" goes on


def _best_cut(text: str, size: int, limit: int, final: bool) -> int:
    """Where to cut a piece of at most ``limit`` characters: the last sentence end, else
    the last clause end, else the last word end, else (one endless word) at ``limit``."""
    points = [p for p in _cut_points(text, size, final) if p <= limit]
    for good in (lambda p: _is_sentence_end(text, p), lambda p: bool(_CLAUSE_END.search(text[:p].rstrip()))):
        chosen = [p for p in points if good(p)]
        if chosen:
            return chosen[-1]
    return points[-1] if points else min(limit, size)


class Chunker:
    """Turns scene text, fed as it is written, into narration chunks.

    ``feed()`` returns the chunks that are ready; ``finish()`` the rest. Their join is
    :func:`narration_text` of everything fed (the choice list aside, which the engine
    never streams)."""

    def __init__(self, *, first_chars: int = FIRST_CHUNK_CHARS, max_chars: int = CHUNK_CHARS,
                 target_chars: int = CHUNK_TARGET_CHARS) -> None:
        self.first_chars, self.max_chars, self.target_chars = first_chars, max_chars, target_chars
        self._raw = ""  # fed, not cleaned yet (may end inside a word or a URL)
        self._at_line_start = True
        self._pending = ""  # cleaned, not yet in a chunk
        self._chunks = 0
        self._finished = False

    @property
    def chunks_made(self) -> int:
        return self._chunks

    def feed(self, text: str) -> list[str]:
        """Add scene text; the chunks that are now ready (often none)."""
        if self._finished:
            raise RuntimeError("the chunker is finished")
        self._raw += text
        # Clean up to where the last run of spaces ends and a word begins.
        last = None
        for last in re.finditer(r"\s+(?=\S)", self._raw):
            pass
        if last is not None:
            self._take_raw(last.end())
        return self._chunks_ready(final=False)

    def finish(self) -> list[str]:
        """The scene is complete: every remaining chunk."""
        if self._finished:
            return []
        self._take_raw(len(self._raw))
        self._finished = True
        return self._chunks_ready(final=True)

    def _take_raw(self, end: int) -> None:
        piece, self._raw = self._raw[:end], self._raw[end:]
        if piece:
            self._pending += clean(piece, at_line_start=self._at_line_start)
            _, newline, line = piece.rpartition("\n")
            self._at_line_start = bool(newline or self._at_line_start) and not line.strip(" \t")

    def _chunks_ready(self, *, final: bool) -> list[str]:
        ready: list[str] = []
        while self._pending:
            cut = self._next_cut(final)
            if cut is None:
                break
            ready.append(self._pending[:cut])
            self._pending = self._pending[cut:]
            self._chunks += 1
        return ready

    def _next_cut(self, final: bool) -> int | None:
        size = len(self._pending)
        # The next raw character (a word's start) tells whether the pending text's last
        # sentence is over ("Mr. Hale" is not; "He left. She" is).
        text = self._pending + self._raw[:1]
        if self._chunks == 0:
            # The first chunk: its first sentence, as soon as it is complete, if short.
            limit = self.first_chars
            points = _cut_points(text, size, final)
            first = next((p for p in points if p <= limit and _is_sentence_end(text, p)), None)
            if first is not None:
                return first
        else:
            limit = self.max_chars
            if size <= limit and not final:
                ends = [p for p in _cut_points(text, size, False)
                        if p >= self.target_chars and _is_sentence_end(text, p)]
                return ends[-1] if ends else None
        if size > limit:
            return _best_cut(text, size, limit, final)
        return size if final else None


def chunk_text(scene: str, **options: int) -> list[str]:
    """All narration chunks of a complete scene (joined: :func:`narration_text`)."""
    chunker = Chunker(**options)
    return chunker.feed(without_choices(scene)) + chunker.finish()
