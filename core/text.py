"""Text from players and the model, made storable (DESIGN §9, "Untrusted input at the edges").

PostgreSQL text cannot hold NUL, and control characters have no place in a story or a
Discord message; SQLite would take both, so a test on SQLite alone would never notice.
Every player's or model's text passes :func:`storable` before the database or Discord
sees it.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL and C1 controls; carriage returns become newlines.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A lone surrogate (from JSON such as "\ud800") cannot be encoded as UTF-8 at all.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` without NUL and control characters (tab and newline stay; ``\\r\\n``
    and ``\\r`` become ``\\n``), lone surrogates replaced by U+FFFD."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _SURROGATE.sub("\ufffd", text)
