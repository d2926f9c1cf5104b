"""Shared helpers for engine tests: worker-like polling, queue inspection, event capture.

They mirror what pgflow's own test helpers do (ensure_worker, read_and_start,
poll_and_complete, poll_and_fail), in Python over psycopg.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

DEFAULT_WORKER = uuid.UUID("11111111-1111-1111-1111-111111111111")

Row = dict[str, Any]


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
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select * from pgflow.start_tasks(%s, %s, %s)", (flow, ids, worker)
        ).fetchall()


def complete(conn: psycopg.Connection, task: Row, output: Any) -> Row:
    """complete_task for a started task record; returns the task row."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select * from pgflow.complete_task(%s, %s, %s, %s)",
            (task["run_id"], task["step_slug"], task["task_index"], Jsonb(output)),
        ).fetchone()
    assert row is not None
    return row


def fail(conn: psycopg.Connection, task: Row, message: str) -> Row:
    """fail_task for a started task record; returns the task row."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select * from pgflow.fail_task(%s, %s, %s, %s)",
            (task["run_id"], task["step_slug"], task["task_index"], message),
        ).fetchone()
    assert row is not None
    return row


def start_flow(conn: psycopg.Connection, flow: str, flow_input: Any) -> Row:
    """start_flow; returns the run row."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select * from pgflow.start_flow(%s, %s)", (flow, Jsonb(flow_input))
        ).fetchone()
    assert row is not None
    return row


def fetch(conn: psycopg.Connection, query: str, *params: Any) -> list[Row]:
    """Rows of a query as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def queue_messages(conn: psycopg.Connection, queue: str) -> list[Row]:
    """Messages still in ``pgmq.q_<queue>`` (visible or not)."""
    return fetch(conn, f'select msg_id, read_ct, vt, message from pgmq."q_{queue}" order by msg_id')


def archived_messages(conn: psycopg.Connection, queue: str) -> list[Row]:
    """Messages in ``pgmq.a_<queue>``."""
    return fetch(conn, f'select msg_id, message from pgmq."a_{queue}" order by msg_id')


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
    """Events recorded by the realtime stub, in call order."""
    return fetch(conn, "select event, topic, payload, private from realtime.messages order by seq")


def notify_events(listener: psycopg.Connection, timeout: float = 0.2) -> list[Row]:
    """Drain NOTIFY events a listening connection has received (payloads decoded)."""
    events = []
    for note in listener.notifies(timeout=timeout, stop_after=None):
        events.append({"channel": note.channel, **json.loads(note.payload)})
    return events
