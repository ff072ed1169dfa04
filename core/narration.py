"""Scene text → narration chunks for text-to-speech (docs/architecture.md, "Narration").

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

Characters with a voice of their own read their quoted lines (:class:`VoicedChunker`):
such a quote becomes a :class:`Chunk` of its own with the character's voice, found by a
simple rule (:func:`dialogue_spans`: a name right before or after the quote); the rest
keeps the narrator's. The chunks still join back to exactly the narrated text.

The cleaning is streamable because every rule matches within a run of non-space
characters (URLs, ``**``, ``[``…), or at a line start (headings, quotes, bullets), and
text is only cleaned up to a point where a space ends and a word begins.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

    @property
    def pending(self) -> str:
        """Cleaned text not in a chunk yet (what comes next, for a look ahead)."""
        return self._pending

    def take(self, size: int) -> str:
        """Cut the next chunk now: the first ``size`` characters of :attr:`pending` (for
        a caller that knows where a piece ends, such as a character's quote)."""
        chunk, self._pending = self._pending[:size], self._pending[size:]
        if chunk:
            self._chunks += 1
        return chunk

    def feed(self, text: str) -> list[str]:
        """Add scene text; the chunks that are now ready (often none)."""
        if self._finished:
            raise RuntimeError("the chunker is finished")
        self._raw += text
        # Clean up to where the last run of spaces ends and a word begins.
        last = max(re.finditer(r"\s+(?=\S)", self._raw), key=lambda m: m.end(), default=None)
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


# --- character voices for quoted dialogue ------------------------------------------------------

# A quote: "…", “…” or «…», within one line; one not closed (yet) runs to the line's end.
_QUOTE = re.compile(r'"[^"\n]*"?|“[^”\n]*”?|«[^»\n]*»?')
_CLOSING = {'"': '"', "“": "”", "«": "»"}
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_STOP = re.compile(r"[.!?…]+")  # ends a sentence (unless after an abbreviation)
# Words near a quote that may name its speaker: "Mara whispered, …" / "…," said Mara.
SPEAKER_WORDS = 3
# A first word that names nobody in particular ("The Stranger", "Mr. Hale").
_NOT_A_NAME = frozenset({"the", "a", "an"}) | _ABBREVIATIONS


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of narration and who reads it: a character's voice, or None for the
    narrator's."""

    text: str
    voice: str | None = None


def _compact(voice: str | None) -> str:
    return "".join((voice or "").split())


def _name_key(word: str) -> str:
    """A word as names are compared: case-folded, without a possessive "'s"."""
    word = word.casefold()
    return word[:-2] if word.endswith(("'s", "’s")) else word


class CharacterVoices:
    """A story's characters and their voices, for finding who speaks a quote.

    A character is named in the text by its full name or its first word (capitalised, as
    a name is: "Mara" for "Mara Voss"); a first word two characters share names neither.
    Characters without a voice are known too (their lines are the narrator's), so that
    "Mara" is not taken for another Mara. A voice equal to the narrator's is no change."""

    def __init__(self, voices: Mapping[str, str | None], *, narrator: str | None = None) -> None:
        narrator = _compact(narrator)
        self._voices: dict[tuple[str, ...], str | None] = {}
        firsts: dict[str, list[tuple[str, ...]]] = {}
        for name, voice in voices.items():
            key = tuple(_name_key(w) for w in _WORD.findall(name))
            if not key:
                continue
            self._voices[key] = _compact(voice) if _compact(voice) not in ("", narrator) else None
            if key[0] not in _NOT_A_NAME:
                firsts.setdefault(key[0], []).append(key)
        self._firsts = {word: keys[0] for word, keys in firsts.items() if len(keys) == 1}
        self._names = sorted(self._voices, key=len, reverse=True)  # "Mara Voss" before "Mara"

    def __bool__(self) -> bool:
        """Whether any character has a voice of its own (else nothing changes)."""
        return any(self._voices.values())

    def voice(self, speaker: tuple[str, ...] | None) -> str | None:
        return self._voices.get(speaker) if speaker is not None else None

    def named(self, words: list[str], *, nearest_last: bool) -> tuple[str, ...] | None:
        """The character named in ``words`` (all of them within the window), the one
        nearest to the quote first; None if nobody is."""
        keys = [_name_key(w) for w in words]
        order = range(len(words) - 1, -1, -1) if nearest_last else range(len(words))
        for i in order:
            if not words[i][:1].isupper():
                continue
            for key in self._names:  # full names first, the longest first
                if tuple(keys[i:i + len(key)]) == key:
                    return key
            if keys[i] in self._firsts:
                return self._firsts[keys[i]]
        return None


def _sentence_stops(text: str) -> list[int]:
    """Where sentences end in ``text`` (after their final punctuation)."""
    stops = []
    for match in _STOP.finditer(text):
        if match.group().startswith("."):
            start = match.start()
            word = text[max(text.rfind(c, 0, start) for c in " \t\n") + 1:start].lower()
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue  # "Mr. Hale"
        stops.append(match.end())
    return stops


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


_UNSETTLED = ("unsettled",)  # the words that would name a speaker are not all written yet


def _named_after(text: str, quotes: list[re.Match[str]], j: int, line_end: int, line_done: bool,
                 voices: CharacterVoices) -> tuple[str, ...] | None:
    """The character named within :data:`SPEAKER_WORDS` words right after quote ``j``,
    in the same sentence: a full stop inside the quote and a capital after it start a
    new one."""
    quote = quotes[j]
    after = text[quote.end():quotes[j + 1].start() if j + 1 < len(quotes) else line_end]
    stops = _sentence_stops(after)
    bounded = bool(stops) or j + 1 < len(quotes) or line_done
    words = list(_WORD.finditer(after[:stops[0]] if stops else after))[:SPEAKER_WORDS]
    if not bounded:  # the last word may not be complete
        words = [w for w in words if quote.end() + w.end() < len(text)]
    inner = quote.group()[1:].rstrip("\"”»").rstrip()
    if inner.endswith(".") and not inner.endswith("..") and words and words[0].group()[0].isupper():
        return None  # "Run." Tom turned away.
    speaker = voices.named([w.group() for w in words], nearest_last=False)
    if speaker is None and not bounded and len(words) < SPEAKER_WORDS:
        return _UNSETTLED  # "Run," said — the name may come next
    return speaker


def dialogue_spans(text: str, voices: CharacterVoices, *,
                   final: bool = True) -> tuple[list[tuple[int, int, str]], int]:
    """The quotes of ``text`` spoken by a character with a voice of its own, as
    ``(start, end, voice)`` (the quote marks included), and how much of ``text`` is
    settled: a quote's speaker may depend on words not written yet (``"Run," said``…).
    With ``final`` (the text is complete) all of it is.

    The speaker of a quote is the character named in the same sentence within
    :data:`SPEAKER_WORDS` words right before the quote (``Mara whispered, "Run."``), else
    right after it (``"Run," said Mara.``, ``"Run!" Mara cried.``; not when a full stop
    inside the quote and a capital after it start a new sentence: ``"Run." Tom turned
    away.``); the name nearest to the quote counts. A quote without a name of its own
    that follows one named after it, with only that sentence between them, is the same
    speaker's (``"Run," said Mara. "Now."``). Anything else is the narrator's."""
    spans: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        newline = text.find("\n", pos)
        end = len(text) if newline < 0 else newline
        line_done = newline >= 0 or final
        quotes = list(_QUOTE.finditer(text, pos, end))
        previous: tuple[str, ...] | None = None  # who the words after the last quote named
        for j, quote in enumerate(quotes):
            between = text[quotes[j - 1].end() if j else pos:quote.start()]
            stops = _sentence_stops(between)
            clause = between[stops[-1]:] if stops else between  # this sentence's words before
            before = _words(clause)[-SPEAKER_WORDS:]
            speaker = voices.named(before, nearest_last=True)
            named_after = None
            if speaker is None:
                closed = len(quote.group()) > 1 and quote.group()[-1] == _CLOSING[quote.group()[0]]
                if not (closed or line_done):
                    return spans, quote.start()  # the words after it are still to come
                named_after = _named_after(text, quotes, j, end, line_done, voices)
                if named_after is _UNSETTLED:
                    return spans, quote.start()
                speaker = named_after
                if speaker is None and len(stops) == 1 and not clause.strip():
                    speaker = previous
            previous = named_after
            voice = voices.voice(speaker)
            if voice is not None:
                spans.append((quote.start(), quote.end(), voice))
        if newline < 0:
            return spans, len(text)
        pos = newline + 1


def _split(chunk: str, offset: int, spans: list[tuple[int, int, str]]) -> list[Chunk]:
    """``chunk`` (at ``offset`` of the analysed text) cut where a character's quote
    starts or ends, each piece with its voice."""
    end = offset + len(chunk)
    pieces: list[Chunk] = []
    at = offset
    for start, stop, voice in spans:
        if stop <= at or start >= end:
            continue
        if start > at:
            pieces.append(Chunk(chunk[at - offset:start - offset]))
        at_end = min(stop, end)
        pieces.append(Chunk(chunk[max(start, at) - offset:at_end - offset], voice))
        at = at_end
    if at < end:
        pieces.append(Chunk(chunk[at - offset:]))
    return pieces


class VoicedChunker:
    """A :class:`Chunker` whose chunks carry their voice: a character's quoted line
    (see :func:`dialogue_spans`) becomes a chunk of its own, read with the character's
    voice; the rest is the narrator's (voice None).

    The chunker's chunks are only cut further, at such a quote's edges (and one ends as
    soon as such a quote is complete, rather than after a few sentences), so the chunks
    still join back to exactly the narrated text, and without character voices (or
    without their quotes) they are the plain chunker's. A chunk waits while the words
    that may name its quote's speaker are still being written."""

    def __init__(self, voices: CharacterVoices | None = None, **options: int) -> None:
        self._chunker = Chunker(**options)
        self.voices = voices if voices else None
        self._text = ""  # the chunker's chunks so far
        self._held: deque[tuple[int, str]] = deque()  # (offset in _text, chunk) not given out

    def feed(self, text: str) -> list[Chunk]:
        """Add scene text; the chunks that are now ready (often none)."""
        return self._voiced(self._chunker.feed(text), final=False)

    def finish(self) -> list[Chunk]:
        """The scene is complete: every remaining chunk."""
        return self._voiced(self._chunker.finish(), final=True)

    def _voiced(self, chunks: list[str], *, final: bool) -> list[Chunk]:
        if self.voices is None:
            return [Chunk(c) for c in chunks]
        for chunk in chunks:
            self._held.append((len(self._text), chunk))
            self._text += chunk
        # Quotes do not cross lines: the line of what is not given out yet is all the
        # context needed.
        base = self._text.rfind("\n", 0, self._held[0][0] if self._held else len(self._text)) + 1
        window = self._text[base:] + self._chunker.pending
        spans, settled = dialogue_spans(window, self.voices, final=final)
        ready: list[Chunk] = []
        while self._held and self._held[0][0] + len(self._held[0][1]) - base <= settled:
            offset, chunk = self._held.popleft()
            ready += _split(chunk, offset - base, spans)
        if not self._held:
            # A character's quote that is complete and settled ends a chunk now, rather
            # than waiting for the chunker's few sentences: its voice changes anyway.
            written = len(self._text) - base
            ends = [end for start, end, _ in spans
                    if written < end <= settled and end - start > 1 and window[end - 1] in _CLOSING.values()]
            if ends:
                chunk = self._chunker.take(ends[-1] - written)
                self._text += chunk
                ready += _split(chunk, written, spans)
        return ready


def voiced_chunks(scene: str, voices: CharacterVoices | None = None, **options: int) -> list[Chunk]:
    """All chunks of a complete scene with their voices (joined: :func:`narration_text`)."""
    chunker = VoicedChunker(voices, **options)
    return chunker.feed(without_choices(scene)) + chunker.finish()


# --- which voice reads a story ---------------------------------------------------------------

# A group story's own narration voice and speed, in ``Story.settings`` (``/narrate voice``
# and ``/narrate speed`` with ``scope:story``). Either may be missing.
STORY_VOICE_KEY = "tts_voice"
STORY_SPEED_KEY = "tts_speed"
GROUP_MODE = "group"  # core.models.StoryMode.GROUP (this module stays free of the ORM)


def narration_voice(mode: str, story_settings: Mapping[str, Any] | None, user_voice: str | None,
                    user_speed: float) -> tuple[str | None, float]:
    """The voice and speed a story's scene is read with. A group story's own voice and
    speed come first (each on its own); then, and for solo stories, those of whoever
    started the narration; a voice of None is Kokoro's default."""
    own = (story_settings or {}) if mode == GROUP_MODE else {}
    voice = own.get(STORY_VOICE_KEY) or user_voice
    speed = own.get(STORY_SPEED_KEY) or user_speed
    return voice, float(speed)


def with_story_voice(story_settings: Mapping[str, Any] | None, **changes: Any) -> dict[str, Any]:
    """A copy of ``Story.settings`` with the narration ``tts_voice``/``tts_speed``
    changed; a value of None removes the key (the narrator's own is used again)."""
    settings = dict(story_settings or {})
    for key, value in changes.items():
        if key not in (STORY_VOICE_KEY, STORY_SPEED_KEY):
            raise ValueError(f"not a story narration setting: {key}")
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    return settings
