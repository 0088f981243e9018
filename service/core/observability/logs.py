"""Log lines as JSON objects (for a log collector) or plain text (for a person at a terminal),
each carrying the context it was logged in: a request's id and key, a scan's job and chunk."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The fields of the work in hand. A request's dict is made once, at its start, and only
# updated after: the threads its routes and dependencies run in see copies of this context,
# which hold the same dict, so what one of them adds (the key's name) reaches the access line.
_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("clonefinder_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Every line logged inside carries `fields` (and those of the context around it)."""
    context = {**(_CONTEXT.get() or {}), **fields}
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def add_to_log_context(**fields: Any) -> None:
    """Add `fields` to the context in force, for the rest of it (nothing outside one)."""
    context = _CONTEXT.get()
    if context is not None:
        context.update(fields)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context's fields, then those the line itself gives with `extra={"fields": ...}`."""
    return {**(_CONTEXT.get() or {}), **getattr(record, "fields", {})}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, then the context's fields."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The usual line, with the context's fields after it in brackets."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if not fields:
            return line
        suffix = " ".join(f"{name}={value}" for name, value in fields.items())
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        return f"{head} [{suffix}]{newline}{rest}"


def formatter_for(log_format: LogFormat, stream: TextIO | None) -> logging.Formatter:
    """`auto`: text for a person at a terminal, JSON for whatever else reads the stream."""
    if log_format == "auto":
        is_terminal = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        log_format = "text" if is_terminal else "json"
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(log_format: LogFormat) -> None:
    """Format the process's stream log lines as `log_format` says.

    Only plain `StreamHandler`s are set (those `logging.basicConfig` makes): a test harness's
    handlers, subclasses of it, keep their own format. uvicorn's own access lines are turned
    off, since the service logs one line per request itself, with its id and key.
    """
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(formatter_for(log_format, handler.stream))
    logging.getLogger("uvicorn.access").disabled = True
