"""Formatting for the templates: UTC clocks, durations, sizes, JSON previews."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from pgweave.dashboard import views
from pgweave.dashboard.queries import JSON_PREVIEW_CHARS


def test_clock_is_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    assert (
        views.clock(datetime(2026, 1, 2, 13, 4, 5, 678900, tzinfo=berlin))
        == "2026-01-02 12:04:05.678"
    )
    assert views.clock(None) == ""


def test_duration_and_size() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert views.duration(start, start + timedelta(milliseconds=12)) == "12 ms"
    assert views.duration(start, start + timedelta(seconds=3.5)) == "3.50 s"
    assert views.duration(start, start + timedelta(minutes=5)) == "5.0 min"
    assert views.duration(start, None) == ""
    assert views.size(100) == "100 bytes"
    assert views.size(2048) == "2.0 kB"
    assert views.size(5 * 1024 * 1024) == "5.0 MB"


def test_small_json_is_indented_large_json_cut() -> None:
    small = json.dumps({"a": [1, 2]})
    assert views.json_preview(small, len(small)) == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    big_value = json.dumps(["x" * 100] * 100)
    fetched = big_value[:JSON_PREVIEW_CHARS]  # what the query returns: the first characters
    preview = views.json_preview(fetched, len(big_value))
    assert preview.startswith(fetched)
    assert preview.endswith(f"… (truncated: {views.size(len(big_value))} in all)")
    assert views.json_preview(None, None) == "null"
