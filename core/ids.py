"""Ids and numbers from outside, parsed into typed values (DESIGN §9, "Untrusted input at
the edges").

A custom id, a select's value, a command option or a form field is whatever the client
sent: a forged one may carry ``0``, ``10**15``, ``007`` or Arabic-Indic digits. Story,
scene, variant and chapter ids are INTEGER columns, so anything outside 1..2^31-1 names
nothing — and PostgreSQL refuses it as a query argument where SQLite answers "no row".
Everything such a value meets is parsed here first; what does not parse is answered as
a stale button or a story that does not exist, before any query runs.
"""

from __future__ import annotations

import re

MAX_ID = 2**31 - 1  # the largest value of an INTEGER column (PostgreSQL's int4)


def _any_digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def decimal_range_pattern(limit: int) -> str:
    """A regex (a non-capturing group) that matches exactly the decimal numbers 1..``limit``
    in ASCII digits, without sign or leading zeros."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    top = str(limit)
    width = len(top)
    parts = []
    if width > 1:  # every shorter number
        parts.append("[1-9]" if width == 2 else f"[1-9][0-9]{{0,{width - 2}}}")
    for i, digit in enumerate(top):  # as long as limit: equal up to position i, smaller there
        low, high = (1 if i == 0 else 0), int(digit) - 1
        if high < low:
            continue
        span = str(low) if low == high else f"[{low}-{high}]"
        rest = width - i - 1
        parts.append(top[:i] + span + _any_digits(rest))
    parts.append(top)
    return f"(?:{'|'.join(parts)})"


# For DynamicItem templates (bot/ui/scene.py): a custom id whose id is out of range
# matches no template, so it is answered as a stale component.
ID_PATTERN = decimal_range_pattern(MAX_ID)
_ID = re.compile(ID_PATTERN)
_DECIMAL = re.compile(r"0|-?[1-9][0-9]{0,18}")  # no leading zeros, 19 digits at most


def is_id(value: int) -> bool:
    """Whether ``value`` can be a row's id (1..MAX_ID)."""
    return 1 <= value <= MAX_ID


def parse_id(text: str) -> int | None:
    """``text`` as a row id (decimal, 1..MAX_ID, no sign, spaces or leading zeros), else None."""
    return int(text) if _ID.fullmatch(text) else None


def parse_int(text: str, low: int, high: int) -> int | None:
    """``text`` as a decimal integer in ``low..high`` (ASCII digits, an optional minus, no
    spaces or leading zeros), else None: a select's value, a form's number."""
    if not _DECIMAL.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None
