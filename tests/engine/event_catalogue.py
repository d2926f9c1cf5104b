"""Engine events checked against the spec's events catalogue.

Every event a test captures (realtime stub rows, NOTIFY payloads) must be one of the
declared payload shapes: the event's keys exactly (or those of one of its variants), each
value of its declared type (or null), and the broadcast name and topic the event's
templates give for those values. A NOTIFY payload shrunk to fit (``truncated``) may lack
keys but has no others.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from pgweave_generator.build import load_ir
from pgweave_generator.ir import SchemaIR
from pgweave_generator.render.event_helpers import helper_stem

SPEC = Path(__file__).resolve().parents[2] / "spec" / "pgflow.yaml"


@dataclass(frozen=True)
class Declared:
    """One event of the catalogue: its templates and payload shapes (key → SQL type)."""

    event: str
    topic: str
    shapes: tuple[dict[str, str], ...]


@cache
def catalogue_ir() -> SchemaIR:
    """The model built from the repository's spec (once per session)."""
    return load_ir(SPEC)


@cache
def catalogue() -> dict[str, Declared]:
    """The spec's events by name, with the types of their generated helpers' arguments."""
    schema = catalogue_ir()
    functions = {f.name: f for f in schema.functions}
    found: dict[str, Declared] = {}
    for event in schema.events:
        shapes = []
        for variant in (None, *(v.name for v in event.variants)):
            helper = functions["_emit_" + helper_stem(event.name, variant)]
            shapes.append({"event_type": "text"} | {a.name: a.type.name for a in helper.args})
        found[event.name] = Declared(event.event, event.topic, tuple(shapes))
    return found


def _is_timestamp(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _of_type(value: Any, sql_type: str) -> bool:
    if value is None or sql_type == "jsonb":
        return True
    if sql_type == "uuid":
        return _is_uuid(value)
    if sql_type == "timestamptz":
        return _is_timestamp(value)
    if sql_type in ("integer", "bigint"):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def _filled(template: str, payload: dict[str, Any]) -> str:
    return re.sub(r"\{([a-z_]+)\}", lambda m: str(payload.get(m.group(1))), template)


def check_event(event: str, topic: str, payload: dict[str, Any]) -> None:
    """Assert that one broadcast event matches its declaration in the catalogue."""
    declared = catalogue().get(payload.get("event_type"))  # type: ignore[arg-type]
    assert declared is not None, f"undeclared event {event}: {payload}"
    keys = set(payload)
    if payload.get("truncated") is True:
        keys.discard("truncated")
        shape = next((s for s in declared.shapes if keys <= set(s)), None)
    else:
        shape = next((s for s in declared.shapes if keys == set(s)), None)
    assert shape is not None, f"{event}: keys {sorted(keys)} match no declared payload"
    for key in keys:
        assert _of_type(payload[key], shape[key]), (
            f"{event}: {key}={payload[key]!r} is no {shape[key]}"
        )
    assert event == _filled(declared.event, payload), f"{event}: not the declared name"
    assert topic == _filled(declared.topic, payload), f"{event}: topic {topic} not declared"
