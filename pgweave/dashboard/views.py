"""Formatting helpers for the templates (Jinja filters): times, durations, JSON previews."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pgweave.dashboard.queries import JSON_PREVIEW_CHARS


def clock(value: datetime | None) -> str:
    """A timestamp in UTC to the millisecond, or an empty string."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long from ``start`` to ``end`` (empty when either is missing)."""
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def size(n: int | None) -> str:
    """A byte count for people."""
    if n is None:
        return ""
    for unit in ("bytes", "kB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def json_preview(text: str | None, total_bytes: int | None) -> str:
    """A JSON value for display: indented when it was fetched whole and is small, else its
    first characters followed by a note of its full size."""
    if text is None:
        return "null"
    if (
        total_bytes is not None
        and total_bytes <= JSON_PREVIEW_CHARS
        and len(text) < JSON_PREVIEW_CHARS
    ):
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return f"{text}… (truncated: {size(total_bytes)} in all)"
