"""Run control on random DAGs under random operations (hypothesis): workers read, complete
and fail tasks while the run is cancelled, paused, unpaused, and failed or cancelled runs
are retried or resumed, again and again. Invariants after every operation: a paused or
cancelled run starts no task; a resumed run never starts a task its source completed; a
finished run leaves no message in its queue; the source of a restart never changes."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import psycopg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.engine.concurrency import build_flow, snapshot, worker_id
from tests.engine.helpers import (
    complete_at,
    ensure_worker,
    fail_at,
    fetch,
    run_row,
    start_flow,
)
from tests.engine.test_properties import ARRAYS, OUTPUTS, Case, cases

NUMBERS = itertools.count()
MAX_OPS = 30
Key = tuple[str, int]


def keys_with(conn: psycopg.Connection, run_id: uuid.UUID, status: str) -> list[Key]:
    """(step, task_index) of the run's tasks in a status, sorted."""
    rows = fetch(
        conn,
        "select step_slug, task_index from pgflow.step_tasks where run_id = %s and status = %s"
        " order by step_slug, task_index",
        run_id,
        status,
    )
    return [(r["step_slug"], r["task_index"]) for r in rows]


def queued_messages_of(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> int:
    return int(
        fetch(
            conn,
            f"select count(*) as n from pgmq.\"q_{flow}\" where message->>'run_id' = %s",
            str(run_id),
        )[0]["n"]
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(case=cases(), data=st.data())
def test_run_control_under_random_operations(
    conn: psycopg.Connection, case: Case, data: st.DataObject
) -> None:
    flow = f"rc_{next(NUMBERS)}"
    build_flow(conn, flow, case.steps, max_attempts=case.max_attempts, base_delay=0, timeout=3600)
    defs = {s.slug: s for s in case.steps}
    worker = ensure_worker(conn, flow, worker_id(flow))
    runs = [start_flow(conn, flow, case.flow_input)["run_id"]]
    never_again: dict[uuid.UUID, set[Key]] = {runs[0]: set()}  # completed in its sources
    sources: dict[uuid.UUID, dict[str, Any]] = {}  # restarted run -> its state then
    ever_started: dict[uuid.UUID, set[Key]] = {runs[0]: set()}

    for _ in range(MAX_OPS):
        current = runs[-1]
        run = run_row(conn, current)
        started = keys_with(conn, current, "started")
        if run["status"] == "started":
            ops = ["read", "read", "cancel", "unpause" if run["paused_at"] else "pause"]
            ops += ["complete", "complete", "fail"] if started else []
        elif run["status"] in ("failed", "cancelled") and len(runs) < 4:
            ops = ["resume", "resume", "retry"]
        else:
            break
        op = data.draw(st.sampled_from(ops), label="op")

        if op == "read":
            records = fetch(
                conn,
                "select * from pgflow.read_and_start_tasks(%s, %s, %s, 30)",
                flow,
                worker,
                data.draw(st.integers(1, 3), label="qty"),
            )
            keys = {(r["step_slug"], r["task_index"]) for r in records if r["run_id"] == current}
            assert len(keys) == len(records), "a task of an earlier run started"
            if run["paused_at"] is not None:
                assert keys == set(), "a paused run started a task"
            assert not keys & never_again[current], "a resumed run re-ran a completed task"
            ever_started[current] |= keys
        elif op == "complete":
            key = data.draw(st.sampled_from(started), label="task")
            feeds_map = any(defs[c].step_type == "map" and key[0] in defs[c].deps for c in defs)
            pool = ARRAYS if feeds_map and data.draw(st.integers(0, 3), label="arr") else OUTPUTS
            complete_at(conn, current, key[0], key[1], data.draw(st.sampled_from(pool)))
        elif op == "fail":
            key = data.draw(st.sampled_from(started), label="task")
            fail_at(conn, current, key[0], key[1], "random failure")
        elif op in ("cancel", "pause", "unpause"):
            fetch(conn, f"select * from pgflow.{op}_run(%s)", current)
            if op == "cancel":
                assert keys_with(conn, current, "started") == []
                assert keys_with(conn, current, "queued") == []
        else:
            sources[current] = snapshot(conn, flow, current)
            [new] = fetch(conn, f"select * from pgflow.{op}_run(%s)", current)
            assert new["restart_of_run_id"] == current
            carried = set(keys_with(conn, current, "completed")) if op == "resume" else set()
            runs.append(new["run_id"])
            never_again[new["run_id"]] = carried
            ever_started[new["run_id"]] = set()
        event(f"op: {op}")

        for run_id in runs:
            status = run_row(conn, run_id)["status"]
            if status != "started":
                assert queued_messages_of(conn, flow, run_id) == 0, f"{status} run left messages"
        for source, before in sources.items():
            after = snapshot(conn, flow, source)
            assert (after["run"], after["steps"], after["tasks"]) == (
                before["run"],
                before["steps"],
                before["tasks"],
            ), "a restarted run's source changed"

    event(f"runs: {len(runs)}, last {run_row(conn, runs[-1])['status']}")
