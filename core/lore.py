"""Lore (world info): notes about places, factions, items, rules and secrets that go
into the prompt when one of their keywords comes up, or always when pinned (DESIGN §9).

Pure, no database: the engine turns a story's active entries (core/repository/lore.py)
into :class:`Lore` values, asks :func:`select_lore` which of them this scene needs and
can afford, and puts :func:`lore_block` of the chosen ones into the prompt.

Matching is case-insensitive on whole words: a keyword matches where neither side
touches another letter, digit or underscore, so "Mara" matches "Mara's" and "MARA,"
but not "Maratha", and keywords that start or end with punctuation ("R2-D2", ".NET")
work too. The words of a multi-word keyword may be separated by any whitespace.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core import messages as msg
from core.errors import KahaniError
from core.text import storable

if TYPE_CHECKING:
    from core.models import LoreEntry

MAX_NAME_LENGTH = 100  # lore_entries.name is String(100)
MAX_TEXT_LENGTH = 4000
MAX_KEYWORDS = 20
MAX_KEYWORD_LENGTH = 60
# Prompt text, not a user-facing message: the heading of the lore block.
LORE_HEADING = "World notes:"

_SEPARATORS = re.compile(r"[,\n]")
_WORDS = re.compile(r"\w+")


class InvalidLore(KahaniError):
    """A lore entry's name, keywords or text break a limit; the message says which."""


@dataclass(frozen=True)
class Lore:
    """One lore entry as the engine uses it: a plain value, detached from the session."""

    id: int
    name: str
    keywords: tuple[str, ...]
    text: str
    pinned: bool = False

    @classmethod
    def of(cls, entry: LoreEntry) -> Lore:
        """The value of a stored entry (its keywords are stored normalised)."""
        return cls(
            id=entry.id,
            name=entry.name,
            keywords=_split_keywords(entry.keywords),
            text=entry.content,
            pinned=entry.pinned,
        )


@dataclass
class LoreSelection:
    """What :func:`select_lore` chose: ``included`` in prompt order, ``left_out`` the
    pinned or triggered entries that did not fit the budget, ``tokens`` the cost of the
    included ones (their lore block, counted line by line), and ``why`` each of them
    (included or left out) is wanted, by entry id."""

    included: list[Lore] = field(default_factory=list)
    left_out: list[Lore] = field(default_factory=list)
    tokens: int = 0
    why: dict[int, str] = field(default_factory=dict)

    @property
    def block(self) -> str:
        """The prompt text of the included entries (see :func:`lore_block`)."""
        return lore_block(self.included)


# --- names, keywords and text -----------------------------------------------------------


def _split_keywords(raw: str) -> tuple[str, ...]:
    """Keywords separated by commas or newlines, whitespace collapsed, empty ones and
    repeats (ignoring case; the first spelling is kept) dropped. No limits checked."""
    keywords: list[str] = []
    seen: set[str] = set()
    for part in _SEPARATORS.split(raw):
        keyword = " ".join(part.split())
        if keyword and keyword.casefold() not in seen:
            seen.add(keyword.casefold())
            keywords.append(keyword)
    return tuple(keywords)


def parse_keywords(raw: str) -> tuple[str, ...]:
    """A player's keyword list ("Mara, the Iron Gate") as a tuple, within the limits
    (at most MAX_KEYWORDS of at most MAX_KEYWORD_LENGTH characters), else InvalidLore."""
    keywords = _split_keywords(storable(raw))
    if len(keywords) > MAX_KEYWORDS:
        raise InvalidLore(msg.LORE_TOO_MANY_KEYWORDS.format(limit=MAX_KEYWORDS, count=len(keywords)))
    for keyword in keywords:
        if len(keyword) > MAX_KEYWORD_LENGTH:
            raise InvalidLore(
                msg.LORE_KEYWORD_TOO_LONG.format(
                    limit=MAX_KEYWORD_LENGTH, keyword=keyword[:20], length=len(keyword)
                )
            )
    return keywords


def format_keywords(keywords: Iterable[str]) -> str:
    """Keywords as they are stored and shown: "Mara, Iron Gate"."""
    return ", ".join(keywords)


def check_name(name: str) -> str:
    """A lore entry's name with its whitespace collapsed, 1..MAX_NAME_LENGTH characters."""
    name = " ".join(storable(name).split())
    if not name:
        raise InvalidLore(msg.TEXT_REQUIRED.format(field=msg.FIELD_LORE_NAME))
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidLore(
            msg.TEXT_TOO_LONG.format(field=msg.FIELD_LORE_NAME, limit=MAX_NAME_LENGTH, length=len(name))
        )
    return name


def check_text(text: str) -> str:
    """A lore entry's text, stripped, at most MAX_TEXT_LENGTH characters."""
    text = storable(text).strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidLore(
            msg.TEXT_TOO_LONG.format(field=msg.FIELD_LORE_TEXT, limit=MAX_TEXT_LENGTH, length=len(text))
        )
    return text


# --- matching -----------------------------------------------------------------------------
# Texts and keywords are compared casefolded (so no IGNORECASE is needed), and each
# keyword has its own pattern that starts with its first word as a literal: the regex
# engine then skips through a scene with a fast substring search. The word-boundary
# check on the left is a lookbehind placed after that literal for the same reason.
# Casefolding may change a text's length ("ß" → "ss") but keeps the order of positions,
# which is all the recency order needs.


@dataclass(frozen=True)
class _Keyword:
    keyword: str  # as the player wrote it, for the memory view
    pattern: re.Pattern[str]  # the keyword as whole words, in casefolded text
    # A whole word (casefolded) that every match contains: each maximal run of word
    # characters in a keyword is a whole word wherever the keyword matches. None when
    # the keyword has no word characters at all ("!!").
    anchor: str | None

    def last_start(self, folded: str) -> int | None:
        """Where the keyword's last match in ``folded`` starts, or None."""
        start = None
        for match in self.pattern.finditer(folded):
            start = match.start()
        return start


@functools.lru_cache(maxsize=8192)
def _keyword(keyword: str) -> _Keyword:
    first, *rest = keyword.casefold().split()
    pattern = (
        re.escape(first)
        + rf"(?<!\w.{{{len(first)}}})"
        + "".join(r"\s+" + re.escape(word) for word in rest)
        + r"(?!\w)"
    )
    runs = _WORDS.findall(keyword.casefold())
    return _Keyword(keyword, re.compile(pattern, re.DOTALL), max(runs, key=len) if runs else None)


def _words(folded: str) -> set[str]:
    return set(_WORDS.findall(folded))


class _Index:
    """The keywords of the entries by anchor word, so a text is only searched for the
    keywords it can contain (a story has hundreds of entries, a scene names few)."""

    def __init__(self, entries: Iterable[Lore]) -> None:
        self.by_anchor: dict[str, list[tuple[Lore, _Keyword]]] = {}
        self.always: list[tuple[Lore, _Keyword]] = []
        for lore in entries:
            for keyword in map(_keyword, filter(str.strip, lore.keywords)):
                if keyword.anchor is None:
                    self.always.append((lore, keyword))
                else:
                    self.by_anchor.setdefault(keyword.anchor, []).append((lore, keyword))

    def candidates(self, folded: str) -> list[tuple[Lore, _Keyword]]:
        found = [pair for word in self.by_anchor.keys() & _words(folded) for pair in self.by_anchor[word]]
        return found + self.always


# A text that can trigger entries, and how to say that a keyword was found in it.
_Source = tuple[str, Callable[..., str]]


def _triggered(index: _Index, sources: Sequence[_Source], why: dict[int, str]) -> list[Lore]:
    """The entries not yet in ``why`` whose keywords appear in the sources (most recent
    source first), most recently mentioned first: by source, then by the position of
    the last match (later first). Records in ``why`` where each was found."""
    found: list[tuple[int, int, str, int, Lore]] = []
    for rank, (text, describe) in enumerate(sources):
        if not text:
            continue
        folded = text.casefold()
        # Per entry: the last match of any of its keywords (the longer keyword on a tie).
        last: dict[int, tuple[int, int, Lore, _Keyword]] = {}
        for lore, keyword in index.candidates(folded):
            if lore.id in why:
                continue
            start = keyword.last_start(folded)
            if start is not None:
                hit = (start, len(keyword.keyword), lore, keyword)
                if lore.id not in last or hit[:2] > last[lore.id][:2]:
                    last[lore.id] = hit
        for start, _, lore, keyword in last.values():
            why[lore.id] = describe(keyword=keyword.keyword)
            found.append((rank, -start, lore.name.casefold(), lore.id, lore))
    found.sort(key=lambda item: item[:4])
    return [item[4] for item in found]


def _line(lore: Lore) -> str:
    text = " ".join(lore.text.split())
    return f"- {lore.name}: {text}" if text else f"- {lore.name}"


def lore_block(entries: Sequence[Lore]) -> str:
    """The prompt text for these entries, one bullet line each; "" for none."""
    if not entries:
        return ""
    return "\n".join([LORE_HEADING, *(_line(lore) for lore in entries)])


class _Budget:
    """Greedy filling: an entry that does not fit is left out, later smaller ones may
    still fit. Each entry costs its own bullet line; the heading is paid by the first."""

    def __init__(self, budget: int, count: Callable[[str], int]) -> None:
        self.budget = budget
        self.count = count
        self.heading = count(LORE_HEADING)
        self.selection = LoreSelection()

    def offer(self, entries: Iterable[Lore]) -> None:
        selection = self.selection
        for lore in entries:
            cost = self.count(_line(lore)) + (0 if selection.included else self.heading)
            if selection.tokens + cost <= self.budget:
                selection.included.append(lore)
                selection.tokens += cost
            else:
                selection.left_out.append(lore)


def select_lore(
    entries: Iterable[Lore],
    *,
    recent: Sequence[str],
    action: str = "",
    budget: int,
    count: Callable[[str], int],
) -> LoreSelection:
    """The lore entries for the next scene, within ``budget`` tokens (as ``count``
    counts them).

    ``recent`` holds the last few scenes' texts, oldest first; ``action`` is the
    player's action or choice. Pinned entries come first (by name); then the entries
    whose keywords appear in the action or the recent scenes, most recently mentioned
    first (the action, then the scenes newest first, then a later match before an
    earlier one); then, one level deep, entries whose keywords appear in the text of
    the pinned and triggered entries that made it in. The budget is filled greedily
    in that order.
    """
    entries = list(entries)
    why: dict[int, str] = {}
    pinned = sorted((lore for lore in entries if lore.pinned), key=lambda lore: (lore.name.casefold(), lore.id))
    for lore in pinned:
        why[lore.id] = msg.LORE_WHY_PINNED

    sources: list[_Source] = [(action, msg.LORE_WHY_ACTION.format)]
    for back, text in enumerate(reversed(recent)):
        if back == 0:
            sources.append((text, msg.LORE_WHY_LAST_SCENE.format))
        else:
            sources.append((text, functools.partial(msg.LORE_WHY_EARLIER_SCENE.format, nth=msg.ordinal(back + 1))))
    index = _Index(entries)
    direct = _triggered(index, sources, why)

    filler = _Budget(budget, count)
    filler.offer([*pinned, *direct])
    # One level of recursion: only what the first pass triggered and included may
    # trigger more (a note about something the model won't see explains nothing).
    referring: list[_Source] = [
        (lore.text, functools.partial(msg.LORE_WHY_LORE.format, name=lore.name))
        for lore in filler.selection.included
    ]
    filler.offer(_triggered(index, referring, why))

    selection = filler.selection
    selection.why = why
    return selection


# --- proposals ------------------------------------------------------------------------------
# When a chapter closes, the storyteller proposes entries (core/engine.py); nothing is added
# without a person's yes. A proposed change to an entry the story has is stored under the
# entry's name with UPDATE_SUFFIX, and accepting it updates that entry.

UPDATE_SUFFIX = " (update)"
MAX_PROPOSALS = 5
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


@dataclass(frozen=True)
class Proposal:
    name: str
    keywords: tuple[str, ...]
    text: str


def parse_proposals(reply: str) -> list[Proposal]:
    """The entries in the model's reply (JSON, fenced or not; ``{"entries": [...]}`` or a
    bare list), each within the limits; anything malformed is skipped, never raised."""
    fenced = _FENCE.search(reply)
    raw = fenced.group(1) if fenced else reply
    start = min((i for i in (raw.find("{"), raw.find("[")) if i >= 0), default=-1)
    if start < 0:
        return []
    try:
        data, _ = json.JSONDecoder().raw_decode(raw[start:])
    except ValueError:
        return []
    items = data.get("entries") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return []
    proposals: list[Proposal] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        name, text, keywords = item.get("name"), item.get("text") or item.get("description"), item.get("keywords")
        if not isinstance(name, str) or not isinstance(text, str):
            continue
        if isinstance(keywords, list):
            keywords = ", ".join(k for k in keywords if isinstance(k, str))
        try:
            name = check_name(name[:MAX_NAME_LENGTH - len(UPDATE_SUFFIX)])
            parsed = parse_keywords(keywords if isinstance(keywords, str) else name)
            text = check_text(text[:MAX_TEXT_LENGTH])
        except InvalidLore:
            continue
        if name.casefold() in seen or not text:
            continue
        seen.add(name.casefold())
        proposals.append(Proposal(name, parsed[:MAX_KEYWORDS] or (name,), text))
    return proposals[:MAX_PROPOSALS]
