"""Run ids are time-ordered (UUID version 7) where the engine picks them, so new runs'
index entries land at the end of the run_id indexes; a caller's own run_id is kept."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from tests.engine.helpers import fail, scalar, single_step_run, start_flow


def milliseconds(run_id: uuid.UUID) -> int:
    """The time a version 7 UUID carries: milliseconds since 1970, its first 48 bits."""
    return run_id.int >> 80


def assert_version_7(run_id: uuid.UUID) -> None:
    assert run_id.version == 7, run_id
    assert run_id.variant == uuid.RFC_4122, run_id


def test_start_flow_and_start_flows_pick_time_ordered_ids(conn: psycopg.Connection) -> None:
    run, _task = single_step_run(conn, {})
    ids = [run["run_id"]]
    for _ in range(3):
        time.sleep(0.002)  # a later millisecond
        ids.append(start_flow(conn, "f", {})["run_id"])
    time.sleep(0.002)
    rows = conn.execute(
        "select run_id, started_at from pgflow.start_flows('f', %s::jsonb[])",
        ([Jsonb(i) for i in range(5)],),
    ).fetchall()
    ids += [row[0] for row in rows]
    for run_id in ids:
        assert_version_7(run_id)
    assert ids[:4] == sorted(ids[:4])  # one run per millisecond: in start order
    assert len(set(ids)) == len(ids)
    # the time in the id is the start's, to the millisecond
    started_at: datetime = rows[0][1]
    assert abs(milliseconds(rows[0][0]) - started_at.timestamp() * 1000) < 1000


def test_a_callers_run_id_is_kept(conn: psycopg.Connection) -> None:
    single_step_run(conn, {})
    mine = uuid.uuid4()
    row = conn.execute("select run_id from pgflow.start_flow('f', '{}', %s)", (mine,)).fetchone()
    assert row == (mine,)


def test_a_resumed_run_gets_a_time_ordered_id(conn: psycopg.Connection) -> None:
    run, task = single_step_run(conn, {}, max_attempts=1)
    fail(conn, task, "broken")
    assert scalar(conn, "select status from pgflow.runs where run_id = %s", run["run_id"]) == (
        "failed"
    )
    time.sleep(0.002)
    resumed = scalar(conn, "select run_id from pgflow.resume_run(%s)", run["run_id"])
    assert_version_7(resumed)
    assert resumed > run["run_id"]


def test_removing_a_worker_finds_its_tasks_by_index(conn: psycopg.Connection) -> None:
    # step_tasks.last_worker_id references workers (on delete set null): the foreign key's
    # update of the tasks of a removed worker can use idx_step_tasks_last_worker_id
    conn.execute("set enable_seqscan = off")
    plan = scalar(
        conn,
        "explain (format json) update pgflow.step_tasks set last_worker_id = null"
        " where last_worker_id = %s",
        uuid.uuid4(),
    )
    assert "idx_step_tasks_last_worker_id" in str(plan)


def test_an_id_can_carry_a_given_time(conn: psycopg.Connection) -> None:
    # what bench/history.py uses to write a past run's id as the engine would have then
    at = scalar(conn, "select timestamptz '2026-01-02 03:04:05.678+00'")
    run_id = scalar(conn, "select pgflow._uuid_v7(%s)", at)
    assert_version_7(run_id)
    assert milliseconds(run_id) == round(at.timestamp() * 1000)
