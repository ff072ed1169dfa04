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

from core.streaming import strip_think

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
      | [A-Da-d][.)](?=[ \t])
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


def extract_choices(reply: str, *, limit: int = CHOICE_COUNT) -> tuple[str, list[Choice]]:
    """For a reply without the marker: find a list of 3 or more items at its end.

    Returns the scene text without that list (and without an intro line such as "Your
    options:") and the choices read; ``(reply, [])`` when there is no such list.
    """
    lines = reply.rstrip().split("\n")
    end = len(lines)
    # Skip a closing question such as "What do you do?" below the list.
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    if end > 0 and _classify(lines[end - 1])[0] == "other" and lines[end - 1].strip().endswith("?"):
        end -= 1
    start, found = end, 0
    for i in range(end - 1, -1, -1):
        kind, _ = _classify(lines[i])
        if kind in ("numbered", "bullet"):
            found += 1
            start = i
        elif kind == "other" and lines[i][:1] not in " \t":
            break  # prose above the list (indented lines continue an item)
    if found < 3:
        return reply, []
    items = _items_from_lines("\n".join(lines[start:end]), loose=False)
    head = lines[:start]
    while head and not head[-1].strip():
        head.pop()
    if head and len(head[-1]) < 100 and _NOT_A_CHOICE.search(head[-1].strip()):
        head.pop()
    return "\n".join(head).rstrip(), _finish(items, limit)


def merge_choices(first: list[Choice], extra: list[Choice], limit: int = CHOICE_COUNT) -> list[Choice]:
    """Top up ``first`` with distinct choices from ``extra`` (the extra call's reply)."""
    return _finish([_Item(c.text, c.label) for c in [*first, *extra]], limit)


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
