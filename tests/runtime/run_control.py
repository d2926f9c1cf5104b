"""Runs in every state for the run-control tests of the clients and the CLI, driven through
the engine's SQL as a worker would (no worker process needed).

Flows: ``chain`` (``a`` → ``b``, one attempt each), ``spread`` (a root map ``m`` over the
input, one attempt) and ``waiting`` (one step whose tasks nobody takes, for started runs).
Each helper leaves the queues of ``chain`` and ``spread`` empty, so they can be chained.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.engine.helpers import (
    Row,
    add_step,
    complete,
    create_flow,
    fetch,
    read_and_start,
    start_flow,
)

TRACEBACK = "\n".join(
    ["Traceback (most recent call last):"]
    + [f'  File "handlers.py", line {n}, in level_{n}' for n in range(1, 21)]
    + ["ValueError: bad input 42"]
)


def make_flows(conn: psycopg.Connection) -> None:
    """Create the flows ``chain``, ``spread`` and ``waiting``."""
    create_flow(conn, "chain", max_attempts=1)
    add_step(conn, "chain", "a")
    add_step(conn, "chain", "b", ["a"])
    create_flow(conn, "spread", max_attempts=1)
    add_step(conn, "spread", "m", step_type="map")
    create_flow(conn, "waiting")
    add_step(conn, "waiting", "only")


def fail_with_details(conn: psycopg.Connection, task: Row, message: str) -> None:
    """fail_task_with_details with a ValueError and :data:`TRACEBACK`."""
    fetch(
        conn,
        "select * from pgflow.fail_task_with_details(%s, %s, %s, %s,"
        " error_type => 'ValueError', error_traceback => %s)",
        task["run_id"],
        task["step_slug"],
        task["task_index"],
        message,
        TRACEBACK,
    )


def completed_chain(conn: psycopg.Connection, flow_input: Any = None) -> uuid.UUID:
    """A completed run of ``chain``."""
    run = start_flow(conn, "chain", flow_input or {"n": 1})
    for step in ("a", "b"):
        [task] = read_and_start(conn, "chain")
        assert task["step_slug"] == step
        complete(conn, task, {"step": step})
    return uuid.UUID(str(run["run_id"]))


def failed_chain(conn: psycopg.Connection, flow_input: Any = None) -> uuid.UUID:
    """A run of ``chain`` whose step ``a`` failed with details (type and traceback)."""
    run = start_flow(conn, "chain", flow_input or {"n": 2})
    [task] = read_and_start(conn, "chain")
    fail_with_details(conn, task, "bad input 42")
    return uuid.UUID(str(run["run_id"]))


def partly_mapped(conn: psycopg.Connection) -> uuid.UUID:
    """A failed run of ``spread`` over [1, 2, 3]: elements 0 and 1 completed, 2 failed."""
    run = start_flow(conn, "spread", [1, 2, 3])
    tasks = sorted(read_and_start(conn, "spread", qty=3), key=lambda t: t["task_index"])
    assert len(tasks) == 3
    complete(conn, tasks[0], 10)
    complete(conn, tasks[1], 20)
    fail_with_details(conn, tasks[2], "element 2 broke")
    return uuid.UUID(str(run["run_id"]))


def waiting_run(conn: psycopg.Connection, flow_input: Any = None) -> uuid.UUID:
    """A started run of ``waiting`` (its task stays queued)."""
    return uuid.UUID(str(start_flow(conn, "waiting", flow_input or {"n": 3})["run_id"]))
