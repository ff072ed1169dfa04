"""Tolerant parsing of the choices a model writes after a scene.

Local models break formats in every way: JSON arrays (of strings or objects), numbered
lines (``1.``, ``1)``, ``(1)``, ``Choice 1:``), bullets, bold labels, prose before and
after, code fences, six choices instead of four, the same choice twice. This module
reads all of these into :class:`Choice` objects and leaves the decision "too few, make
the one extra call" to the engine (see :func:`needs_extra_call`,
:func:`build_choices_request`, :func:`parse_choices_reply`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import regex

from core.think import strip_think

log = logging.getLogger(__name__)

CHOICE_COUNT = 4
LABEL_LIMIT = 80  # Discord's limit for a button label
_ELLIPSIS = "…"

# A numbered item, optionally behind a bullet and/or bold: "1. x", "(2) x", "3) x",
# "[4] x", "**Choice 1:** x", "Option B - x", "A) x", "1 - x", "1️⃣ x".
_NUMBERED = regex.compile(
    r"""^[ \t]*(?:[-*•+‣◦▪][ \t]+)?(?:\*\*|__)?[ \t]*
    (?:
        (?:choice|option)[ \t]*\#?[ \t]*(?:\d{1,2}|[A-Da-d])[ \t]*(?:\*\*|__)?[ \t]*[:.)\-–—]
      | \(?\d{1,2}[.):\]](?![\d])
      | \[\d{1,2}\]
      | \(?[A-Fa-f][.)](?=[ \t])
      | \d{1,2}[ \t]*[-–—](?=[ \t])
      | [1-9]\ufe0f?\u20e3
    )
    (?:[ \t]*(?:\*\*|__)(?=[ \t]))?[ \t]*(?P<text>\S.*?)[ \t]*$""",
    regex.IGNORECASE | regex.VERBOSE,
)
_BULLET = regex.compile(r"^[ \t]*[-*•+‣◦▪][ \t]+(?P<text>\S.*?)[ \t]*$")
_RULE = regex.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$")
_FENCE = regex.compile(r"^[ \t]*(?:```|~~~)")
# "1. Go left 2. Go right 3. Wait" written on one line.
_INLINE_NUMBER = regex.compile(r"(?:^|(?<=\s))(\d{1,2})[.)][ \t]+")
# Headings and intros that are not choices: "### Choices", "Here are your options:".
_NOT_A_CHOICE = regex.compile(
    r"^[#*_ \t]*(?:(?:your|the|possible|available|next)[ \t]+)?(?:choices|options)\b[^\n]{0,30}$"
    r"|:[*_ \t]*$",
    regex.IGNORECASE,
)
_BOLD_LEAD = regex.compile(
    r"^(?:\*\*|__)(?P<label>[^*_\n]+?)(?:\*\*|__)[ \t]*(?P<sep>[:.\-–—]?)[ \t]*(?P<rest>.*)$"
)
_EMPHASIS = regex.compile(r"(?<![\w*])[*_]{1,3}(?=\S)(.+?)(?<=\S)[*_]{1,3}(?![\w*])")
_QUOTES = "\"'“”‘’`"
_JSON_TEXT_KEYS = ("text", "choice", "action", "description", "content", "option", "value")
_JSON_LABEL_KEYS = ("label", "title", "name", "short", "summary")


@dataclass(frozen=True, slots=True)
class Choice:
    """One choice: its full text (shown in the message) and a button label (≤ 80)."""

    text: str
    label: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", shorten_label(self.label or self.text))


@dataclass(frozen=True, slots=True)
class _Item:
    text: str
    label: str = ""


def shorten_label(text: str, limit: int = LABEL_LIMIT) -> str:
    """Shorten ``text`` to at most ``limit`` characters at a word boundary, with "…"."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    room = text[: limit - len(_ELLIPSIS) + 1]
    cut = room.rfind(" ")
    head = room[:cut] if cut > limit // 3 else room[: limit - len(_ELLIPSIS)]
    return head.rstrip(" ,;:.-–—") + _ELLIPSIS


def needs_extra_call(choices: list[Choice], count: int = CHOICE_COUNT) -> bool:
    """Whether fewer than ``count`` choices were read, so the engine should ask again."""
    return len(choices) < count


def parse_choices(block: str, *, limit: int = CHOICE_COUNT) -> list[Choice]:
    """Read the choices from the raw text after the marker.

    Returns at most ``limit`` distinct choices in the order written (the first ones
    when the model wrote more); fewer means the engine should make the extra call.
    """
    items = _items_from_json(block)
    if items is None:
        items = _items_from_lines(block, loose=True)
    return _finish(items, limit)


def merge_choices(first: list[Choice], extra: list[Choice], limit: int = CHOICE_COUNT) -> list[Choice]:
    """Top up ``first`` with distinct choices from ``extra`` (the extra call's reply)."""
    return _finish([_Item(c.text, c.label) for c in [*first, *extra]], limit)


# --- a choices block that ends a reply without the marker -------------------------------
#
# Models that ignore the marker end a scene with the choices in some other shape: a fenced
# block (JSON or a list), a bare JSON list or object, or a list of two to six short items,
# often behind a closing question ("What do you do?") or an intro ("Here are your
# options:"). Such a shape counts only where it ends the reply (blank lines, a closing
# question and a rule may follow); the same shape in the middle of prose is prose.
# :func:`tail_block_start` answers both questions the stream filter asks: while the reply
# streams, "from where could the text still turn into such a block?" (held back, never
# shown), and at its end, "where does the block start?".

TAIL_ITEM_MAX = 300  # an item longer than this is prose, not a choice
TAIL_BLOCK_MAX = 4000  # a fenced or JSON block longer than this is not a choices block
_TAIL_ITEMS = {True: (2, 8), False: (3, 8)}  # (fewest, most) items, with and without an intro

_LEAD = r"[ \t]*(?:[#>*_]+[ \t]*)*"
_TRAIL = r"[ \t]*[*_]*[ \t]*"
# "What do you do?", "**What will you do next?**", "So, which path do you take?"
_QUESTION = regex.compile(
    _LEAD + r"(?:(?:so|now|and|well)[ \t]*,?[ \t]+)?"
    r"(?:what|how|which|where|who|will|would|do|does|shall)\b[^\n.!?]{0,100}\?" + _TRAIL,
    regex.IGNORECASE,
)
# "Here are your options:", "Your choices:", "Possible actions:", "Available options:"
_INTRO = regex.compile(
    _LEAD + r"(?:here[ \t]+are|your[ \t]+(?:options|choices|possible|next)|possible|available)\b"
    r"[^\n.!?:]{0,80}:" + _TRAIL,
    regex.IGNORECASE,
)
# The start of a list item, for a line still being written ("1", "(a", "- ").
_ITEM_START = regex.compile(
    r"""[ \t]*(?:[-*•+‣◦▪][ \t]+)?(?:\*\*|__)?[ \t]*
    (?: \(?(?:\d{1,2}|[A-Fa-f])[.):\]][ \t]
      | \[\d{1,2}\][ \t]
      | \d{1,2}[ \t]*[-–—][ \t]
      | [1-9]\ufe0f?\u20e3
      | (?:choice|option)[ \t]*\#?[ \t]*(?:\d{1,2}|[A-Fa-f])[ \t]*(?:\*\*|__)?[ \t]*[:.)\-–—]
    )""",
    regex.IGNORECASE | regex.VERBOSE,
)
_BULLET_START = regex.compile(r"[ \t]*[-*•+‣◦▪][ \t]")
_FENCE_OPEN = regex.compile(r"[ \t]*(?:```|~~~)[\w+-]*[ \t]*")
_FENCE_CLOSE = regex.compile(r"[ \t]*(?:```|~~~)[ \t]*")
_JSON_OPENERS = {"[": "\"{[]", "{": "\"}"}  # what may follow an opening bracket of choices JSON


@dataclass(slots=True)
class _Tail:
    """Reading a candidate block line by line."""

    state: str = "start"  # start, intro, list, fence, json, after, trailer
    intros: int = 0
    items: int = 0
    item_chars: int = 0
    open_item: bool = False  # the last item is only a label: the next line describes it
    body: list[str] = field(default_factory=list)  # a fenced or JSON block's lines
    json: tuple[int, bool, bool] = (0, False, False)  # bracket depth, in a string, after a backslash

    def counts(self) -> bool:
        fewest, most = _TAIL_ITEMS[self.intros > 0]
        return fewest <= self.items <= most


def tail_block_start(text: str, *, final: bool, line_start: bool = True, in_fence: bool = False) -> int | None:
    """Where a choices block without the marker starts in ``text``.

    ``final=False`` (the reply is still streaming): the first line start from which
    ``text`` could still become such a block; that part must stay hidden. ``final=True``
    (the reply ended): the first line start from which ``text`` is such a block, holding
    at least two choices. ``line_start`` says whether ``text[0]`` begins a line,
    ``in_fence`` whether it is inside a fenced block (whose closing fence opens nothing)."""
    pos = 0 if line_start else text.find("\n") + 1
    if pos == 0 and not line_start:
        return None
    inside = in_fence
    while True:
        if not inside:
            segment = text[pos:]
            if _is_tail_block(segment) if final else _may_become_tail_block(segment):
                return pos
        end = text.find("\n", pos)
        if end == -1:
            return None
        if is_fence_line(text[pos:end]):
            inside = not inside
        pos = end + 1


def is_fence_line(line: str) -> bool:
    """Whether ``line`` opens or closes a fenced block (```` ``` ````, ``~~~``)."""
    return _FENCE_OPEN.fullmatch(line) is not None


def _is_tail_block(segment: str) -> bool:
    tail = _Tail()
    if not segment.strip() or not all(_step(tail, line) for line in segment.split("\n")):
        return False
    if tail.state in ("json", "start", "intro") or (tail.state == "fence" and not _block_has_choices(tail.body)):
        return False  # (a fence the model never closed still holds its choices)
    if tail.body or tail.counts():
        return len(parse_choices(segment, limit=_TAIL_ITEMS[True][1])) >= 2
    return False


def _may_become_tail_block(segment: str) -> bool:
    *complete, partial = segment.split("\n")
    tail = _Tail()
    if not all(_step(tail, line) for line in complete):
        return False
    return _may_continue(tail, partial)


def _step(tail: _Tail, line: str) -> bool:
    """Read one complete line into ``tail``; False when the text cannot be a block."""
    state = tail.state
    if state == "fence":
        if _FENCE_CLOSE.fullmatch(line):
            tail.state = "after"
            return _block_has_choices(tail.body)
        tail.body.append(line)
        return sum(len(b) for b in tail.body) <= TAIL_BLOCK_MAX
    if state == "json":
        return _json_line(tail, line)
    if not line.strip() or _RULE.match(line):
        if state == "list" and not tail.open_item:
            tail.item_chars = TAIL_ITEM_MAX + 1  # a blank line ends the item
        return True
    if state == "trailer":
        return False
    if state in ("start", "intro"):
        if _FENCE_OPEN.fullmatch(line):
            tail.state = "fence"
            return True
        if line.lstrip()[:1] in _JSON_OPENERS:
            tail.state = "json"
            return _json_opens(line) and _json_line(tail, line)
    if state in ("start", "intro", "list"):
        kind, text = _classify(line)
        if kind in ("numbered", "bullet"):
            tail.state, tail.items = "list", tail.items + 1
            tail.item_chars, tail.open_item = len(text), _open_item([text])
            return tail.items <= _TAIL_ITEMS[True][1] and len(text) <= TAIL_ITEM_MAX
    if state == "list" and (line[:1] in " \t" or tail.open_item) and tail.item_chars <= TAIL_ITEM_MAX:
        tail.item_chars += len(line.strip()) + 1
        tail.open_item = False
        return tail.item_chars <= TAIL_ITEM_MAX
    if _QUESTION.fullmatch(line):
        if state in ("start", "intro") and tail.intros < 2:
            tail.state, tail.intros = "intro", tail.intros + 1
            return True
        if state == "after" or (state == "list" and tail.counts()):
            tail.state = "trailer"
            return True
        return False
    if state in ("start", "intro") and tail.intros < 2 and _INTRO.fullmatch(line):
        tail.state, tail.intros = "intro", tail.intros + 1
        return True
    return False


def _may_continue(tail: _Tail, partial: str) -> bool:
    """Whether the line still being written (``partial``) may continue the block."""
    state = tail.state
    if state == "fence":
        return sum(len(b) for b in tail.body) + len(partial) <= TAIL_BLOCK_MAX
    if state == "json":
        return _json_may_continue(tail, partial)
    if not partial.strip():
        return True
    if state == "trailer":
        return False
    if state in ("start", "intro"):
        if _FENCE_OPEN.fullmatch(partial, partial=True):
            return True
        if partial.lstrip()[:1] in _JSON_OPENERS:
            return _json_opens(partial) and _json_may_continue(_Tail(state="json"), partial)
    if state in ("start", "intro", "list"):
        m = _ITEM_START.match(partial, partial=True)
        if (m is not None or _BULLET_START.match(partial)) and len(partial) <= TAIL_ITEM_MAX + 8:
            return tail.items < _TAIL_ITEMS[True][1]
    if state == "list" and (partial[:1] in " \t" or tail.open_item):
        return tail.item_chars + len(partial.strip()) < TAIL_ITEM_MAX
    if _QUESTION.fullmatch(partial, partial=True):
        if state in ("start", "intro"):
            return tail.intros < 2
        return state == "after" or (state == "list" and tail.counts())
    return state in ("start", "intro") and tail.intros < 2 and _INTRO.fullmatch(partial, partial=True) is not None


def _json_scan(state: tuple[int, bool, bool], text: str) -> tuple[int, bool, bool]:
    """Bracket depth after ``text`` (strings skipped), from ``state``; depth < 0 stays."""
    depth, in_string, escaped = state
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                break
    return depth, in_string, escaped


def _json_opens(line: str) -> bool:
    """Whether ``line`` may open choices JSON: "[The door opens]" is prose."""
    text = line.strip()
    after = text[1:].lstrip()[:1]
    return not after or after in _JSON_OPENERS[text[0]]


def _json_line(tail: _Tail, line: str) -> bool:
    """Read one line of a JSON block (each character once)."""
    tail.body.append(line)
    tail.json = _json_scan(tail.json, line + "\n")
    depth = tail.json[0]
    if depth < 0 or sum(len(b) for b in tail.body) > TAIL_BLOCK_MAX:
        return False
    if depth == 0:
        tail.state = "after"
        return _block_has_choices(tail.body)
    return True


def _json_may_continue(tail: _Tail, partial: str) -> bool:
    depth = _json_scan(tail.json, partial)[0]
    if depth < 0 or sum(len(b) for b in tail.body) + len(partial) > TAIL_BLOCK_MAX:
        return False
    return depth > 0 or _items_from_json("\n".join([*tail.body, partial])) is not None


def _block_has_choices(lines: list[str]) -> bool:
    text = "\n".join(lines)
    items = _items_from_json(text)
    if items is None:
        items = _items_from_lines(text, loose=False)
    return len(_finish(items, _TAIL_ITEMS[True][1])) >= 2


# --- the one extra call ------------------------------------------------------------------

@dataclass(frozen=True)
class ChoicesRequest:
    """What the engine sends when a reply had too few choices.

    Send ``messages`` with ``response_format``; when the server rejects json_schema
    (older LM Studio, llama.cpp, Ollama builds), send ``plain_messages`` without it.
    Parse either reply with :func:`parse_choices_reply`.
    """

    messages: list[dict[str, str]]
    response_format: dict[str, Any]
    plain_messages: list[dict[str, str]]
    max_tokens: int


_CHOICES_SYSTEM = (
    "You help write an interactive story. Given the latest scene, you write what the "
    "player could do next: {count} short, distinct choices, each one sentence in the "
    "second person imperative (\"Open the door\"), each leading somewhere different."
)
_CHOICES_ASK_JSON = (
    "Write exactly {count} choices for what the player could do next. Reply with JSON "
    "only, in this form: {{\"choices\": [\"...\", \"...\", \"...\", \"...\"]}}"
)
_CHOICES_ASK_PLAIN = (
    "Write exactly {count} choices for what the player could do next, one per line, "
    "numbered 1. to {count}., and nothing else."
)
_SCENE_TAIL_CHARS = 6000  # the end of a scene is what the choices follow from


def choices_response_format(count: int = CHOICE_COUNT) -> dict[str, Any]:
    """OpenAI ``response_format`` (json_schema) asking for exactly ``count`` choices."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "story_choices",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "choices": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": 200},
                        "minItems": count,
                        "maxItems": count,
                    }
                },
                "required": ["choices"],
                "additionalProperties": False,
            },
        },
    }


def build_choices_request(
    scene_text: str, *, story_context: str = "", count: int = CHOICE_COUNT, max_tokens: int = 400
) -> ChoicesRequest:
    """Build the short extra call that asks for ``count`` choices after ``scene_text``.

    ``story_context`` (genre, tone, the player's character…) helps the choices fit.
    """
    scene = scene_text.strip()[-_SCENE_TAIL_CHARS:]
    system = {"role": "system", "content": _CHOICES_SYSTEM.format(count=count)}
    intro = f"{story_context.strip()}\n\n" if story_context.strip() else ""
    body = f"{intro}The latest scene:\n\"\"\"\n{scene}\n\"\"\"\n\n"

    def ask(template: str) -> list[dict[str, str]]:
        return [system, {"role": "user", "content": body + template.format(count=count)}]

    return ChoicesRequest(
        messages=ask(_CHOICES_ASK_JSON),
        response_format=choices_response_format(count),
        plain_messages=ask(_CHOICES_ASK_PLAIN),
        max_tokens=max_tokens,
    )


def parse_choices_reply(text: str, *, limit: int = CHOICE_COUNT) -> list[Choice]:
    """Parse the extra call's reply: JSON (json_schema) or a plain list."""
    return parse_choices(strip_think(text), limit=limit)


# --- internals -----------------------------------------------------------------------

def _finish(items: list[_Item], limit: int) -> list[Choice]:
    seen: set[str] = set()
    out: list[Choice] = []
    for item in items:
        text, label = _clean(item.text)
        label = _clean(item.label)[0] if item.label else label
        key = " ".join(regex.sub(r"[\W_]+", " ", text.casefold()).split())
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(Choice(text=text, label=label))
        if len(out) == limit:
            break
    return out


def _strip_fences(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not _FENCE.match(line))


def _items_from_json(block: str) -> list[_Item] | None:
    text = _strip_fences(block)
    starts = [i for i in (text.find("["), text.find("{")) if i != -1]
    if not starts:
        return None
    start = min(starts)
    end = text.rfind("]" if text[start] == "[" else "}")
    if end <= start:
        return None
    raw = text[start : end + 1]
    try:
        data = json.loads(raw)
    except ValueError:
        try:  # trailing commas are the commonest JSON slip of small models
            data = json.loads(regex.sub(r",\s*([\]}])", r"\1", raw))
        except ValueError:
            return None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        return None
    items: list[_Item] = []
    for entry in data:
        if isinstance(entry, str):
            items.append(_Item(entry))
        elif isinstance(entry, dict):
            text = _first_str(entry, _JSON_TEXT_KEYS)
            label = _first_str(entry, _JSON_LABEL_KEYS)
            if text or label:
                items.append(_Item(text or label, label if text else ""))
    return items or None


def _first_str(entry: dict[str, Any], keys: tuple[str, ...]) -> str:
    lowered = {str(k).casefold(): v for k, v in entry.items()}
    for key in keys:
        value = lowered.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def _classify(line: str) -> tuple[str, str]:
    if not line.strip():
        return "blank", ""
    if _RULE.match(line) or _FENCE.match(line):
        return "blank", ""
    m = _NUMBERED.match(line)
    if m is not None:
        return "numbered", m.group("text")
    m = _BULLET.match(line)
    if m is not None:
        return "bullet", m.group("text")
    return "other", line.strip()


def _split_inline(line: str) -> list[str]:
    """Split "1. a 2. b 3. c" written on one line; [] when the line is not like that."""
    marks = list(_INLINE_NUMBER.finditer(line))
    numbers = [int(m.group(1)) for m in marks]
    if len(marks) < 3 or numbers != list(range(numbers[0], numbers[0] + len(marks))):
        return []
    bounds = [m.start() for m in marks[1:]] + [len(line)]
    return [line[m.end() : b].strip() for m, b in zip(marks, bounds, strict=True)]


def _items_from_lines(block: str, *, loose: bool) -> list[_Item]:
    groups: dict[str, list[list[str]]] = {"numbered": [], "bullet": []}
    others: list[str] = []
    current: list[str] | None = None  # the item that continuation lines extend
    for line in _strip_fences(block).split("\n"):
        inline = _split_inline(line)
        if inline:
            groups["numbered"].extend([part] for part in inline)
            current = None
            continue
        kind, text = _classify(line)
        if kind in groups:
            current = [text]
            groups[kind].append(current)
            continue
        if kind == "blank":
            current = None if current is None or not _open_item(current) else current
            continue
        if current is not None and (
            line[:1] in " \t" or (_open_item(current) and not text.endswith("?"))
        ):
            current.append(text)
        else:
            current = None
            others.append(text)
    numbered, bullets = groups["numbered"], groups["bullet"]
    chosen = numbered if len(numbered) >= len(bullets) else bullets
    if chosen:
        return [_join_item(parts) for parts in chosen]
    if not loose:
        return []
    # No list markers at all: one choice per line, minus headings and intros.
    return [_Item(t) for t in others if not _NOT_A_CHOICE.search(t) and len(t) > 1]


_OPEN_LABEL = regex.compile(r"^(?:\*\*|__)?(?P<label>[^*_\n]+?)(?:\*\*|__)?[ \t]*:?[ \t]*(?:\*\*|__)?$")


def _open_item(parts: list[str]) -> bool:
    """An item that is only a label ("**Sneak in**", "Option 1: Run**" or "Run:")
    takes the following line as its description."""
    if len(parts) != 1:
        return False
    first = parts[0].strip()
    return first.endswith((":", "**", "__")) and _OPEN_LABEL.match(first) is not None


def _join_item(parts: list[str]) -> _Item:
    head, *rest = parts
    if not rest:
        return _Item(head)
    m = _OPEN_LABEL.match(head.strip())
    if m is None:
        return _Item(" ".join(parts))
    label = m.group("label").strip()
    return _Item(f"{label}: {' '.join(rest)}", label)


def _clean(text: str) -> tuple[str, str]:
    """Normalise one choice; return (full text, a natural label or "")."""
    text = " ".join(text.split())
    label = ""
    m = _BOLD_LEAD.match(text)
    if m is not None:
        label = m.group("label").strip().rstrip(":").strip()
        rest = m.group("rest").strip()
        sep = m.group("sep")
        if not rest:
            text = label
        elif sep in (":", "."):
            text = f"{label}{sep} {rest}"
        elif m.group("label").rstrip().endswith(":"):
            text = f"{label}: {rest}"
        else:
            text = f"{label} — {rest}"
    text = _EMPHASIS.sub(r"\1", text)
    text = text.replace("**", "").replace("__", "").strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    label = label.strip(_QUOTES + " ") if label and label != text else ""
    return text, label
