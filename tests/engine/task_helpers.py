"""Helpers shared by the task completion, failure, map and retry suites.

Flow building with named arguments, row lookups, queue inspection and event capture
through the realtime stub (one recorded row per ``realtime.send`` call).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.engine.helpers import Row, fetch, install_realtime_stub, realtime_events

FLOW_OPTIONS = ("max_attempts", "base_delay", "timeout")
STEP_OPTIONS = (
    "max_attempts",
    "base_delay",
    "timeout",
    "start_delay",
    "step_type",
    "required_input_pattern",
    "forbidden_input_pattern",
    "when_unmet",
    "when_exhausted",
)

# Payload keys per event type (contract 3.2).
RUN_COMPLETED_KEYS = {"event_type", "run_id", "flow_slug", "status", "output", "completed_at"}
RUN_FAILED_KEYS = {"event_type", "run_id", "flow_slug", "status", "error_message", "failed_at"}
STEP_STARTED_KEYS = {
    "event_type",
    "run_id",
    "step_slug",
    "status",
    "started_at",
    "remaining_tasks",
    "remaining_deps",
}
STEP_COMPLETED_KEYS = {"event_type", "run_id", "step_slug", "status", "output", "completed_at"}
STEP_FAILED_KEYS = {"event_type", "run_id", "step_slug", "status", "error_message", "failed_at"}
STEP_SKIPPED_KEYS = {"event_type", "run_id", "step_slug", "status", "skip_reason", "skipped_at"}


def create_flow(conn: psycopg.Connection, flow: str, **options: int) -> None:
    """pgflow.create_flow with named options (max_attempts, base_delay, timeout)."""
    _call(conn, "create_flow", {"flow_slug": flow, **options}, FLOW_OPTIONS)


def add_step(
    conn: psycopg.Connection, flow: str, step: str, deps: Iterable[str] = (), **options: Any
) -> None:
    """pgflow.add_step with named options; jsonb patterns are passed as Python objects."""
    args: dict[str, Any] = {"flow_slug": flow, "step_slug": step, "deps_slugs": list(deps)}
    for key, value in options.items():
        args[key] = Jsonb(value) if key.endswith("_pattern") else value
    _call(conn, "add_step", args, STEP_OPTIONS)


def _call(
    conn: psycopg.Connection, function: str, args: dict[str, Any], allowed: tuple[str, ...]
) -> None:
    fixed = {"flow_slug", "step_slug", "deps_slugs"}
    unknown = set(args) - fixed - set(allowed)
    assert not unknown, f"unknown {function} options: {unknown}"
    named = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in args
    )
    conn.execute(sql.SQL("select pgflow.{}({})").format(sql.Identifier(function), named), args)


def run_row(conn: psycopg.Connection, run_id: uuid.UUID) -> Row:
    """The run row."""
    return fetch(conn, "select * from pgflow.runs where run_id = %s", run_id)[0]


def step_row(conn: psycopg.Connection, run_id: uuid.UUID, step: str) -> Row:
    """One step_states row."""
    return fetch(
        conn,
        "select * from pgflow.step_states where run_id = %s and step_slug = %s",
        run_id,
        step,
    )[0]


def task_row(conn: psycopg.Connection, run_id: uuid.UUID, step: str, index: int = 0) -> Row:
    """One step_tasks row."""
    return fetch(
        conn,
        "select * from pgflow.step_tasks where run_id = %s and step_slug = %s and task_index = %s",
        run_id,
        step,
        index,
    )[0]


def tasks(conn: psycopg.Connection, run_id: uuid.UUID) -> list[Row]:
    """Every task of a run, by step and task_index."""
    return fetch(
        conn,
        "select * from pgflow.step_tasks where run_id = %s order by step_slug, task_index",
        run_id,
    )


def queue_ids(conn: psycopg.Connection, flow: str) -> set[int]:
    """Message ids still in ``pgmq.q_<flow>``."""
    query = sql.SQL("select msg_id from pgmq.{}").format(sql.Identifier(f"q_{flow}"))
    return {row[0] for row in conn.execute(query).fetchall()}


def archive_ids(conn: psycopg.Connection, flow: str) -> set[int]:
    """Message ids in ``pgmq.a_<flow>``."""
    query = sql.SQL("select msg_id from pgmq.{}").format(sql.Identifier(f"a_{flow}"))
    return {row[0] for row in conn.execute(query).fetchall()}


def retry_delay_seconds(conn: psycopg.Connection, flow: str, msg_id: int) -> int:
    """A message's ``vt - enqueued_at`` in whole seconds (how pgflow's tests measure backoff)."""
    query = sql.SQL(
        "select floor(extract(epoch from vt - enqueued_at))::int from pgmq.{} where msg_id = %s"
    ).format(sql.Identifier(f"q_{flow}"))
    row = conn.execute(query, (msg_id,)).fetchone()
    assert row is not None, f"message {msg_id} is not in the queue"
    return int(row[0])


def make_visible(conn: psycopg.Connection, flow: str) -> None:
    """Make every queued message readable now, as if its backoff had elapsed.

    enqueued_at moves too, so the next ``vt - enqueued_at`` measures only the next delay.
    """
    conn.execute(
        sql.SQL(
            "update pgmq.{} set vt = clock_timestamp(), enqueued_at = clock_timestamp()"
        ).format(sql.Identifier(f"q_{flow}"))
    )


def calculate_retry_delay(conn: psycopg.Connection, base_delay: int, attempts: int) -> int:
    """pgflow.calculate_retry_delay as the database computes it."""
    row = conn.execute(
        "select pgflow.calculate_retry_delay(%s, %s)", (base_delay, attempts)
    ).fetchone()
    assert row is not None
    return int(row[0])


class Events:
    """Captures engine events through the realtime stub; ``take()`` drains them."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        install_realtime_stub(conn)

    def take(self) -> list[Row]:
        """Events recorded since the last take, in call order (each checked for topic/private)."""
        events = realtime_events(self.conn)
        self.conn.execute("delete from realtime.messages")
        for event in events:
            run_id = event["payload"]["run_id"]
            assert event["topic"] == f"pgflow:run:{run_id}"
            assert event["private"] is False
        return events

    def names(self) -> list[str]:
        """Drain and return just the event names."""
        return [event["event"] for event in self.take()]


def ts(value: Any) -> datetime:
    """A timestamp from an event payload (jsonb text form) as a datetime."""
    assert isinstance(value, str)
    return datetime.fromisoformat(value)


def complete_sql_null(conn: psycopg.Connection, run_id: uuid.UUID, step: str, index: int) -> Row:
    """complete_task with an SQL NULL output (not JSON null)."""
    rows = fetch(conn, "select * from pgflow.complete_task(%s, %s, %s, null)", run_id, step, index)
    assert len(rows) == 1
    return rows[0]


def wait_until_blocked(conn: psycopg.Connection, pid: int, timeout: float = 10) -> None:
    """Wait until backend ``pid`` waits for a lock (another transaction holds it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "select wait_event_type from pg_stat_activity where pid = %s", (pid,)
        ).fetchone()
        if row is not None and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock")
