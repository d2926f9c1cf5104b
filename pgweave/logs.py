"""Structured logging: every record carries its context (worker, flow, run, step...) as fields.

Code logs with ``logger.info("task.completed", extra=fields(run_id=..., step=...))``;
:func:`configure_logging` renders records as JSON lines or as readable ``key=value`` text.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

FIELDS_ATTR = "pgweave_fields"
PSYCOPG_LOGGER = "psycopg"
"""The logger of psycopg and psycopg_pool (``psycopg.pool``)."""


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the structured fields of the record."""
    return {FIELDS_ATTR: {k: v for k, v in values.items() if v is not None}}


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event (the message) and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in getattr(record, FIELDS_ATTR, {}).items():
            entry[key] = _plain(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level event key=value ...`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        parts = [stamp, f"{record.levelname.lower():<7}", record.getMessage()]
        for key, value in getattr(record, FIELDS_ATTR, {}).items():
            text = str(_plain(value))
            parts.append(f"{key}={json.dumps(text) if ' ' in text or not text else text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    level: str | int = "INFO",
    fmt: Literal["text", "json"] = "text",
    stream: TextIO | None = None,
) -> None:
    """Send pgweave's logs to ``stream`` (stderr) in the chosen format.

    psycopg's own warnings (a pool that cannot connect, a broken connection discarded) go
    the same way, so a worker's output stays in one format; its chattier info records do not.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    numeric = level if isinstance(level, int) else logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    for name, minimum in (("pgweave", logging.NOTSET), (PSYCOPG_LOGGER, logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(max(numeric, minimum))
        logger.propagate = False
