"""Shared helpers for engine tests: flow building, worker-like polling, row and queue lookups,
event capture.

The polling helpers mirror what pgflow's own test helpers do (ensure_worker, read_and_start,
poll_and_complete, poll_and_fail), in Python over psycopg.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.engine.event_catalogue import check_event

DEFAULT_WORKER = uuid.UUID("11111111-1111-1111-1111-111111111111")

Row = dict[str, Any]

# -- payload keys of each engine event (contract 3.2) --------------------------------------

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
# step:skipped: fail_task (when_exhausted) adds error_message to these keys ...
STEP_SKIPPED_KEYS = {"event_type", "run_id", "step_slug", "status", "skip_reason", "skipped_at"}
# ... and the condition cascade and _cascade_force_skip_steps add flow_slug
CASCADE_SKIPPED_KEYS = STEP_SKIPPED_KEYS | {"flow_slug"}

# -- queries -------------------------------------------------------------------------------


def fetch(conn: psycopg.Connection, query: str, *params: Any) -> list[Row]:
    """Rows of a query as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def scalar(conn: psycopg.Connection, query: str, *params: Any) -> Any:
    """The single value of a one-row, one-column query."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# -- defining flows ------------------------------------------------------------------------

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


def create_flow(conn: psycopg.Connection, flow: str, **options: int) -> None:
    """pgflow.create_flow with named options (max_attempts, base_delay, timeout)."""
    _call(conn, "create_flow", {"flow_slug": flow, **options}, FLOW_OPTIONS)


def add_step(
    conn: psycopg.Connection, flow: str, step: str, deps: Iterable[str] = (), **options: Any
) -> None:
    """pgflow.add_step with named options; jsonb patterns are given as Python objects."""
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


def shape_step(
    slug: str,
    deps: list[str] | None = None,
    step_type: str = "single",
    when_unmet: str = "skip",
    when_exhausted: str = "fail",
    required: dict[str, Any] | None = None,
    forbidden: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One step of a flow shape, as _get_flow_shape writes it."""

    def pattern(value: dict[str, Any] | None) -> dict[str, Any]:
        return {"defined": False} if value is None else {"defined": True, "value": value}

    return {
        "slug": slug,
        "stepType": step_type,
        "dependencies": deps or [],
        "whenUnmet": when_unmet,
        "whenExhausted": when_exhausted,
        "requiredInputPattern": pattern(required),
        "forbiddenInputPattern": pattern(forbidden),
    }


# -- running flows like a worker -----------------------------------------------------------


def start_flow(conn: psycopg.Connection, flow: str, flow_input: Any) -> Row:
    """start_flow; returns the run row."""
    [row] = fetch(conn, "select * from pgflow.start_flow(%s, %s)", flow, Jsonb(flow_input))
    return row


def ensure_worker(
    conn: psycopg.Connection, queue: str, worker: uuid.UUID = DEFAULT_WORKER
) -> uuid.UUID:
    """Register a worker row (as pgflow's tests insert it directly)."""
    conn.execute(
        "insert into pgflow.workers (worker_id, queue_name, function_name, last_heartbeat_at)"
        " values (%s, %s, 'test_worker', now())"
        " on conflict (worker_id) do update set last_heartbeat_at = now()",
        (worker, queue),
    )
    return worker


def start_tasks(
    conn: psycopg.Connection, flow: str, msg_ids: list[int] | None, worker: uuid.UUID
) -> list[Row]:
    """The task records pgflow.start_tasks returns for these message ids."""
    return fetch(conn, "select * from pgflow.start_tasks(%s, %s, %s)", flow, msg_ids, worker)


def read_and_start(
    conn: psycopg.Connection,
    flow: str,
    vt: int = 1,
    qty: int = 1,
    worker: uuid.UUID = DEFAULT_WORKER,
) -> list[Row]:
    """Read up to ``qty`` messages (pgmq.read_with_poll) and start their tasks."""
    ensure_worker(conn, flow, worker)
    ids = [
        row[0]
        for row in conn.execute(
            "select msg_id from pgmq.read_with_poll(%s, %s, %s, 1, 50)", (flow, vt, qty)
        ).fetchall()
    ]
    if not ids:
        return []
    return start_tasks(conn, flow, ids, worker)


def single_step_run(
    conn: psycopg.Connection, flow_input: Any, **flow_options: int
) -> tuple[Row, Row]:
    """Flow ``f`` with the one step ``a``, a run of it, and a's task read and started:
    returns (run row, task record)."""
    create_flow(conn, "f", **flow_options)
    add_step(conn, "f", "a")
    run = start_flow(conn, "f", flow_input)
    [task] = read_and_start(conn, "f")
    return run, task


def map_step_run(
    conn: psycopg.Connection, flow_input: list[Any], qty: int, **flow_options: int
) -> tuple[Row, list[Row]]:
    """Flow ``f`` with the one map step ``m``, a run of it over ``flow_input``, and up to
    ``qty`` of m's tasks read and started: returns (run row, task records)."""
    create_flow(conn, "f", **flow_options)
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", flow_input)
    return run, read_and_start(conn, "f", qty=qty)


def complete_at(
    conn: psycopg.Connection, run_id: uuid.UUID, step: str, index: int, output: Any
) -> list[Row]:
    """complete_task by coordinates; returns the rows it returned."""
    return fetch(
        conn,
        "select * from pgflow.complete_task(%s, %s, %s, %s)",
        run_id,
        step,
        index,
        Jsonb(output),
    )


def fail_at(
    conn: psycopg.Connection, run_id: uuid.UUID, step: str, index: int, message: str
) -> list[Row]:
    """fail_task by coordinates; returns the rows it returned."""
    return fetch(
        conn, "select * from pgflow.fail_task(%s, %s, %s, %s)", run_id, step, index, message
    )


def complete(conn: psycopg.Connection, task: Row, output: Any) -> Row:
    """complete_task for a started task record; returns the task row."""
    [row] = complete_at(conn, task["run_id"], task["step_slug"], task["task_index"], output)
    return row


def fail(conn: psycopg.Connection, task: Row, message: str) -> Row:
    """fail_task for a started task record; returns the task row."""
    [row] = fail_at(conn, task["run_id"], task["step_slug"], task["task_index"], message)
    return row


def complete_sql_null(conn: psycopg.Connection, run_id: uuid.UUID, step: str, index: int) -> Row:
    """complete_task with an SQL NULL output (not JSON null)."""
    [row] = fetch(conn, "select * from pgflow.complete_task(%s, %s, %s, null)", run_id, step, index)
    return row


def fail_run_by_hand(conn: psycopg.Connection, run_id: uuid.UUID) -> None:
    """Mark a run failed directly in its row, as pgflow's tests do (nothing else changes)."""
    conn.execute(
        "update pgflow.runs set status = 'failed', failed_at = now() where run_id = %s",
        (run_id,),
    )


def fail_step_by_hand(conn: psycopg.Connection, run_id: uuid.UUID, step: str) -> None:
    """Mark a step failed directly in its row (as if it had finished by other means)."""
    conn.execute(
        "update pgflow.step_states set status = 'failed', failed_at = now()"
        " where run_id = %s and step_slug = %s",
        (run_id, step),
    )


# -- the rows of a run ---------------------------------------------------------------------


def run_row(conn: psycopg.Connection, run_id: uuid.UUID) -> Row:
    """The run's row."""
    [row] = fetch(conn, "select * from pgflow.runs where run_id = %s", run_id)
    return row


def run_count(conn: psycopg.Connection) -> int:
    """How many runs exist."""
    return int(scalar(conn, "select count(*) from pgflow.runs"))


def states(conn: psycopg.Connection, run_id: uuid.UUID) -> dict[str, Row]:
    """The run's step_states rows keyed by step_slug."""
    rows = fetch(conn, "select * from pgflow.step_states where run_id = %s", run_id)
    return {row["step_slug"]: row for row in rows}


def statuses(conn: psycopg.Connection, run_id: uuid.UUID) -> dict[str, str]:
    """step_slug -> status of the run's steps."""
    return {slug: row["status"] for slug, row in states(conn, run_id).items()}


def step_row(conn: psycopg.Connection, run_id: uuid.UUID, step: str) -> Row:
    """One step_states row."""
    [row] = fetch(
        conn,
        "select * from pgflow.step_states where run_id = %s and step_slug = %s",
        run_id,
        step,
    )
    return row


def tasks(conn: psycopg.Connection, run_id: uuid.UUID) -> list[Row]:
    """The run's step_tasks, by step_slug then task_index."""
    return fetch(
        conn,
        "select * from pgflow.step_tasks where run_id = %s order by step_slug, task_index",
        run_id,
    )


def task_rows(conn: psycopg.Connection, run_id: uuid.UUID) -> dict[tuple[str, int], Row]:
    """The run's step_tasks by (step slug, task index)."""
    return {(row["step_slug"], row["task_index"]): row for row in tasks(conn, run_id)}


def task_statuses(conn: psycopg.Connection, run_id: uuid.UUID) -> dict[tuple[str, int], str]:
    """(step slug, task index) -> status of the run's tasks."""
    return {key: row["status"] for key, row in task_rows(conn, run_id).items()}


def task_row(conn: psycopg.Connection, run_id: uuid.UUID, step: str, index: int = 0) -> Row:
    """One step_tasks row."""
    [row] = fetch(
        conn,
        "select * from pgflow.step_tasks where run_id = %s and step_slug = %s and task_index = %s",
        run_id,
        step,
        index,
    )
    return row


# -- queues --------------------------------------------------------------------------------


def queues(conn: psycopg.Connection) -> list[str]:
    """Queue names pgmq knows, sorted."""
    return [
        row["queue_name"]
        for row in fetch(conn, "select queue_name from pgmq.list_queues() order by 1")
    ]


def pgmq_tables(conn: psycopg.Connection) -> set[str]:
    """Tables in the pgmq schema."""
    rows = fetch(conn, "select tablename from pg_tables where schemaname = 'pgmq'")
    return {row["tablename"] for row in rows}


def queue_messages(conn: psycopg.Connection, queue: str) -> list[Row]:
    """Messages still in ``pgmq.q_<queue>`` (visible or not)."""
    return fetch(conn, f'select msg_id, read_ct, vt, message from pgmq."q_{queue}" order by msg_id')


def archived_messages(conn: psycopg.Connection, queue: str) -> list[Row]:
    """Messages in ``pgmq.a_<queue>``."""
    return fetch(conn, f'select msg_id, message from pgmq."a_{queue}" order by msg_id')


def queue_ids(conn: psycopg.Connection, flow: str) -> set[int]:
    """Message ids still in ``pgmq.q_<flow>``."""
    return {row["msg_id"] for row in queue_messages(conn, flow)}


def archive_ids(conn: psycopg.Connection, flow: str) -> set[int]:
    """Message ids in ``pgmq.a_<flow>``."""
    return {row["msg_id"] for row in archived_messages(conn, flow)}


def _queued_message_value(conn: psycopg.Connection, flow: str, msg_id: int, value: str) -> Any:
    """The SQL expression ``value`` over message ``msg_id``, which must be in ``pgmq.q_<flow>``."""
    query = sql.SQL("select {} from pgmq.{} where msg_id = %s").format(
        sql.SQL(value), sql.Identifier(f"q_{flow}")
    )
    row = conn.execute(query, (msg_id,)).fetchone()
    assert row is not None, f"message {msg_id} is not in the queue"
    return row[0]


def vt_seconds_from_now(conn: psycopg.Connection, flow: str, msg_id: int) -> float:
    """How far in the future a message's vt lies, in seconds (negative when visible)."""
    value = "extract(epoch from vt - clock_timestamp())::float8"
    return float(_queued_message_value(conn, flow, msg_id, value))


def retry_delay_seconds(conn: psycopg.Connection, flow: str, msg_id: int) -> int:
    """A message's ``vt - enqueued_at`` in whole seconds (how pgflow's tests measure backoff)."""
    value = "floor(extract(epoch from vt - enqueued_at))::int"
    return int(_queued_message_value(conn, flow, msg_id, value))


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
    return int(scalar(conn, "select pgflow.calculate_retry_delay(%s, %s)", base_delay, attempts))


# -- events --------------------------------------------------------------------------------

REALTIME_STUB = """
create schema if not exists realtime;
create table if not exists realtime.messages (
  id uuid not null default gen_random_uuid(),
  topic text not null,
  extension text not null default 'broadcast',
  payload jsonb,
  event text,
  private boolean default true,
  inserted_at timestamp not null default now(),
  updated_at timestamp not null default now(),
  seq bigserial
);
create or replace function realtime.send(payload jsonb, event text, topic text, private boolean default true)
returns void language sql as $$
  insert into realtime.messages (payload, event, topic, private) values (payload, event, topic, private)
$$;
"""


def install_realtime_stub(conn: psycopg.Connection) -> None:
    """Create a Supabase-like ``realtime.send`` that records each call in ``realtime.messages``."""
    conn.execute(REALTIME_STUB.encode())


def realtime_events(conn: psycopg.Connection) -> list[Row]:
    """Events recorded by the realtime stub, in call order (each checked against the
    events catalogue)."""
    events = fetch(
        conn, "select event, topic, payload, private from realtime.messages order by seq"
    )
    for event in events:
        check_event(event["event"], event["topic"], event["payload"])
    return events


def take_events(conn: psycopg.Connection) -> list[Row]:
    """Events recorded by the realtime stub so far (then forgotten), in call order, each
    checked for its topic and privacy."""
    events = realtime_events(conn)
    conn.execute("delete from realtime.messages")
    for event in events:
        assert event["topic"] == f"pgflow:run:{event['payload']['run_id']}"
        assert event["private"] is False
    return events


class Events:
    """Captures engine events through the realtime stub; ``take()`` drains them."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        install_realtime_stub(conn)

    def take(self) -> list[Row]:
        """Events recorded since the last take (see :func:`take_events`)."""
        return take_events(self.conn)

    def names(self) -> list[str]:
        """Drain and return just the event names."""
        return [event["event"] for event in self.take()]


def ts(value: Any) -> datetime:
    """A timestamp from an event payload (jsonb text form) as a datetime."""
    assert isinstance(value, str)
    return datetime.fromisoformat(value)


def notify_events(listener: psycopg.Connection, timeout: float = 0.2) -> list[Row]:
    """Drain NOTIFY events a listening connection has received (payloads decoded, each
    checked against the events catalogue)."""
    events = []
    for note in listener.notifies(timeout=timeout, stop_after=None):
        event = {"channel": note.channel, **json.loads(note.payload)}
        if note.channel != "pgweave:events":  # the brief copies carry no payload
            check_event(event["event"], note.channel, event["payload"])
        events.append(event)
    return events
