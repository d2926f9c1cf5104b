"""Helpers of the run-execution suites (start_flow, start_tasks, cascades, events, set_vt_batch).

Flow building with named arguments, per-run row lookups keyed by step, and the exact
payload keys of each engine event (contract 3.2).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.engine.helpers import Row, fetch

RUN_STARTED_KEYS = {
    "event_type",
    "run_id",
    "flow_slug",
    "input",
    "status",
    "remaining_steps",
    "started_at",
}
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
# cascade_complete_taskless_steps adds these to step:completed
TASKLESS_COMPLETED_KEYS = STEP_COMPLETED_KEYS | {"started_at", "remaining_tasks", "remaining_deps"}
STEP_FAILED_KEYS = {"event_type", "run_id", "step_slug", "status", "error_message", "failed_at"}
# step:skipped sent by the condition cascade and _cascade_force_skip_steps
STEP_SKIPPED_KEYS = {
    "event_type",
    "run_id",
    "flow_slug",
    "step_slug",
    "status",
    "skip_reason",
    "skipped_at",
}


def create_flow(conn: psycopg.Connection, flow: str, **options: Any) -> None:
    """pgflow.create_flow with named options (max_attempts, base_delay, timeout)."""
    _call(conn, "create_flow", {"flow_slug": flow, **options})


def add_step(
    conn: psycopg.Connection, flow: str, step: str, deps: Iterable[str] = (), **options: Any
) -> None:
    """pgflow.add_step with named options; jsonb patterns are given as Python objects."""
    args: dict[str, Any] = {"flow_slug": flow, "step_slug": step, "deps_slugs": list(deps)}
    for key, value in options.items():
        args[key] = Jsonb(value) if key.endswith("_pattern") else value
    _call(conn, "add_step", args)


def _call(conn: psycopg.Connection, function: str, args: dict[str, Any]) -> None:
    named = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in args
    )
    conn.execute(sql.SQL("select pgflow.{}({})").format(sql.Identifier(function), named), args)


def run_row(conn: psycopg.Connection, run_id: uuid.UUID) -> Row:
    """The run's row."""
    rows = fetch(conn, "select * from pgflow.runs where run_id = %s", run_id)
    assert len(rows) == 1
    return rows[0]


def states(conn: psycopg.Connection, run_id: uuid.UUID) -> dict[str, Row]:
    """The run's step_states rows keyed by step_slug."""
    rows = fetch(conn, "select * from pgflow.step_states where run_id = %s", run_id)
    return {row["step_slug"]: row for row in rows}


def statuses(conn: psycopg.Connection, run_id: uuid.UUID) -> dict[str, str]:
    """step_slug -> status of the run's steps."""
    return {slug: row["status"] for slug, row in states(conn, run_id).items()}


def tasks(conn: psycopg.Connection, run_id: uuid.UUID) -> list[Row]:
    """The run's step_tasks, by step_slug then task_index."""
    return fetch(
        conn,
        "select * from pgflow.step_tasks where run_id = %s order by step_slug, task_index",
        run_id,
    )


def run_count(conn: psycopg.Connection) -> int:
    """How many runs exist."""
    row = conn.execute("select count(*) from pgflow.runs").fetchone()
    assert row is not None
    return int(row[0])


def scalar(conn: psycopg.Connection, query: str, *params: Any) -> Any:
    """The single value of a one-row, one-column query."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def vt_seconds_from_now(conn: psycopg.Connection, flow: str, msg_id: int) -> float:
    """How far in the future a message's vt lies, in seconds (negative when visible)."""
    query = sql.SQL(
        "select extract(epoch from vt - clock_timestamp())::float8 from pgmq.{} where msg_id = %s"
    ).format(sql.Identifier(f"q_{flow}"))
    row = conn.execute(query, (msg_id,)).fetchone()
    assert row is not None, f"message {msg_id} is not in the queue"
    return float(row[0])
