"""Log lines that say which story and which interaction they belong to.

``bind(story=12)`` (or ``interaction=…``, ``user=…``) adds fields to every log line
written afterwards in the same asyncio task — and in tasks it starts, which copy the
context: an interaction handler binds ``interaction``, the generation it spawns binds
``story``, and every line of that generation (engine, LLM client, Discord layer, lease
heartbeat) carries both. :class:`ContextFilter` puts them on the records;
``LOG_FORMAT=json`` writes one JSON object per line with the fields as keys.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_fields: ContextVar[dict[str, Any] | None] = ContextVar("kahani_log_fields", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s%(context)s"


def bind(**fields: Any) -> None:
    """Add ``fields`` to this task's log lines from now on (None removes a field)."""
    merged = dict(_fields.get() or {})
    for key, value in fields.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    _fields.set(merged)


def current() -> dict[str, Any]:
    return dict(_fields.get() or {})


class ContextFilter(logging.Filter):
    """Puts the bound fields on each record: ``record.fields`` (a dict) and
    ``record.context`` (`` [story=12 interaction=34]``, or empty)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _fields.get() or {}
        record.fields = fields
        record.context = " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]" if fields else ""
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the bound fields, and the
    traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def handler(stream: Any, *, json_lines: bool = False) -> logging.Handler:
    """A stream handler with the context filter and the text or JSON format."""
    out = logging.StreamHandler(stream)
    out.addFilter(ContextFilter())
    out.setFormatter(JSONFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    return out
