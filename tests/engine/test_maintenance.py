"""Maintenance: prune_data_older_than (finished runs, their states, tasks, workers and
archived messages; runs in progress are never touched) and
setup_requeue_stalled_tasks_cron with pg_cron missing and with a stub of it."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from tests.engine.helpers import (
    Row,
    add_step,
    archived_messages,
    complete,
    create_flow,
    fail,
    fetch,
    read_and_start,
    start_flow,
)


def prune(conn: psycopg.Connection, interval: str) -> None:
    conn.execute("select pgflow.prune_data_older_than(%s::interval)", (interval,))


def age_run(conn: psycopg.Connection, run_id: Any, days: int) -> None:
    """Move every timestamp of a run (rows and archived messages) ``days`` into the past."""
    shift = f"interval '{days} days'"
    conn.execute(
        f"update pgflow.runs set started_at = started_at - {shift},"
        f" completed_at = completed_at - {shift}, failed_at = failed_at - {shift}"
        " where run_id = %s",
        (run_id,),
    )
    conn.execute(
        f"update pgflow.step_states set created_at = created_at - {shift},"
        f" started_at = started_at - {shift}, completed_at = completed_at - {shift},"
        f" failed_at = failed_at - {shift}, skipped_at = skipped_at - {shift}"
        " where run_id = %s",
        (run_id,),
    )
    conn.execute(
        f"update pgflow.step_tasks set queued_at = queued_at - {shift},"
        f" started_at = started_at - {shift}, completed_at = completed_at - {shift},"
        f" failed_at = failed_at - {shift} where run_id = %s",
        (run_id,),
    )
    row = conn.execute(
        "select pgmq.format_table_name(flow_slug, 'a') from pgflow.runs where run_id = %s",
        (run_id,),
    ).fetchone()
    assert row is not None
    conn.execute(
        f"update pgmq.{row[0]} set archived_at = archived_at - {shift}"
        " where message->>'run_id' = %s",
        (str(run_id),),
    )


def counts(conn: psycopg.Connection, run_id: Any) -> tuple[int, int, int]:
    """(runs, step_states, step_tasks) rows of a run."""
    row = conn.execute(
        "select (select count(*) from pgflow.runs where run_id = %(r)s),"
        " (select count(*) from pgflow.step_states where run_id = %(r)s),"
        " (select count(*) from pgflow.step_tasks where run_id = %(r)s)",
        {"r": run_id},
    ).fetchone()
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]))


def archived_runs(conn: psycopg.Connection, flow_slug: str) -> list[str]:
    return sorted(m["message"]["run_id"] for m in archived_messages(conn, flow_slug))


def two_step_flow(conn: psycopg.Connection, slug: str) -> None:
    create_flow(conn, slug, max_attempts=1)
    add_step(conn, slug, "a")
    add_step(conn, slug, "b", ["a"])


def completed_run(conn: psycopg.Connection, slug: str) -> Row:
    run = start_flow(conn, slug, {})
    for _ in range(2):
        [task] = read_and_start(conn, slug)
        complete(conn, task, {"ok": True})
    return run


def failed_run(conn: psycopg.Connection, slug: str) -> Row:
    run = start_flow(conn, slug, {})
    [task] = read_and_start(conn, slug)
    fail(conn, task, "boom")
    return run


def in_progress_run(conn: psycopg.Connection, slug: str) -> Row:
    run = start_flow(conn, slug, {})
    [task] = read_and_start(conn, slug)
    complete(conn, task, {"ok": True})  # 'a' done and archived, 'b' queued
    return run


def test_prune_deletes_old_finished_runs_and_keeps_the_rest(conn: psycopg.Connection) -> None:
    two_step_flow(conn, "f")
    old_completed = completed_run(conn, "f")
    old_failed = failed_run(conn, "f")
    recent_completed = completed_run(conn, "f")
    old_running = in_progress_run(conn, "f")
    for run in (old_completed, old_failed, old_running):
        age_run(conn, run["run_id"], 30)
    statuses = fetch(conn, "select run_id, status from pgflow.runs order by started_at")
    assert [r["status"] for r in statuses] == ["completed", "failed", "started", "completed"]
    running_before = fetch(
        conn,
        "select * from pgflow.step_states where run_id = %s order by step_slug",
        old_running["run_id"],
    )

    prune(conn, "7 days")

    assert counts(conn, old_completed["run_id"]) == (0, 0, 0)
    assert counts(conn, old_failed["run_id"]) == (0, 0, 0)
    assert counts(conn, recent_completed["run_id"]) == (1, 2, 2)
    assert counts(conn, old_running["run_id"]) == (1, 2, 2)
    assert (
        fetch(
            conn,
            "select * from pgflow.step_states where run_id = %s order by step_slug",
            old_running["run_id"],
        )
        == running_before
    )
    # archived messages: those of pruned runs go; recent ones and the 30-day-old
    # message of the run still in progress stay
    assert archived_runs(conn, "f") == sorted(
        [str(recent_completed["run_id"])] * 2 + [str(old_running["run_id"])]
    )
    # the definitions are untouched
    assert fetch(conn, "select count(*) as n from pgflow.steps") == [{"n": 2}]


def test_prune_uses_completed_at_and_failed_at_not_started_at(
    conn: psycopg.Connection,
) -> None:
    two_step_flow(conn, "f")
    long_run = completed_run(conn, "f")
    # started 30 days ago but finished only 2 days ago
    conn.execute(
        "update pgflow.runs set started_at = started_at - interval '30 days' where run_id = %s",
        (long_run["run_id"],),
    )

    prune(conn, "7 days")
    assert counts(conn, long_run["run_id"]) == (1, 2, 2)

    prune(conn, "0 seconds")
    assert counts(conn, long_run["run_id"]) == (0, 0, 0)


def test_prune_covers_every_flow_queue(conn: psycopg.Connection) -> None:
    two_step_flow(conn, "first")
    two_step_flow(conn, "Second_Flow")  # pgmq lower-cases its table names
    runs = [completed_run(conn, "first"), completed_run(conn, "Second_Flow")]
    for run in runs:
        age_run(conn, run["run_id"], 10)
    assert len(archived_messages(conn, "first")) == 2
    assert len(archived_messages(conn, "second_flow")) == 2

    prune(conn, "1 day")

    assert archived_messages(conn, "first") == []
    assert archived_messages(conn, "second_flow") == []
    assert all(counts(conn, run["run_id"]) == (0, 0, 0) for run in runs)


def test_prune_tolerates_a_flow_whose_queue_is_gone(conn: psycopg.Connection) -> None:
    two_step_flow(conn, "gone")
    two_step_flow(conn, "kept")
    old = completed_run(conn, "kept")
    age_run(conn, old["run_id"], 10)
    conn.execute("select pgmq.drop_queue('gone')")

    prune(conn, "1 day")

    assert counts(conn, old["run_id"]) == (0, 0, 0)
    assert archived_messages(conn, "kept") == []


def test_prune_deletes_silent_workers_not_named_by_kept_tasks(
    conn: psycopg.Connection,
) -> None:
    two_step_flow(conn, "f")
    silent, busy, alive = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    run = start_flow(conn, "f", {})
    read_and_start(conn, "f", worker=busy)  # a task of a run in progress names it
    read_and_start(conn, "f", worker=alive)  # nothing to read, but registers it
    read_and_start(conn, "f", worker=silent)
    conn.execute(
        "update pgflow.workers set started_at = now() - interval '30 days',"
        " last_heartbeat_at = now() - interval '20 days' where worker_id <> %s",
        (alive,),
    )

    prune(conn, "7 days")

    remaining = {r["worker_id"] for r in fetch(conn, "select worker_id from pgflow.workers")}
    assert remaining == {busy, alive}
    [task] = fetch(
        conn, "select last_worker_id from pgflow.step_tasks where run_id = %s", run["run_id"]
    )
    assert task["last_worker_id"] == busy


def test_prune_with_nothing_old_changes_nothing(conn: psycopg.Connection) -> None:
    two_step_flow(conn, "f")
    completed_run(conn, "f")
    failed_run(conn, "f")
    snapshot = [
        fetch(conn, f"select * from {table} order by 1, 2")
        for table in ("pgflow.runs", "pgflow.step_states", "pgflow.step_tasks", "pgmq.a_f")
    ]

    prune(conn, "1 hour")

    assert snapshot == [
        fetch(conn, f"select * from {table} order by 1, 2")
        for table in ("pgflow.runs", "pgflow.step_states", "pgflow.step_tasks", "pgmq.a_f")
    ]


def test_prune_signature_matches_pgflows_pasted_copy(conn: psycopg.Connection) -> None:
    [row] = fetch(
        conn,
        "select pg_get_function_arguments(p.oid) as args,"
        " pg_get_function_result(p.oid) as result, l.lanname"
        " from pg_proc as p join pg_language as l on l.oid = p.prolang"
        " where p.oid = 'pgflow.prune_data_older_than(interval)'::regprocedure",
    )
    assert row == {"args": "retention_interval interval", "result": "void", "lanname": "plpgsql"}
    # pgflow's maintenance tests replace it with their own copy: that must be accepted
    conn.execute("begin")
    try:
        conn.execute(
            "create or replace function pgflow.prune_data_older_than(retention_interval interval)"
            " returns void language plpgsql as $$ begin null; end $$"
        )
    finally:
        conn.execute("rollback")


CRON_STUB = """
create schema cron;
create table cron.job (jobid bigserial primary key, jobname text unique, schedule text, command text);
create table cron.calls (id bigserial primary key, call text, args text[]);
create function cron.schedule(job_name text, schedule text, command text) returns bigint
language plpgsql as $$
declare
  id bigint;
begin
  insert into cron.calls (call, args) values ('schedule', array[job_name, schedule, command]);
  insert into cron.job (jobname, schedule, command) values (job_name, schedule, command)
  returning jobid into id;
  return id;
end
$$;
create function cron.unschedule(job_name text) returns boolean
language plpgsql as $$
begin
  insert into cron.calls (call, args) values ('unschedule', array[job_name]);
  delete from cron.job where jobname = job_name;
  if not found then
    raise exception 'could not find valid entry for job ''%''', job_name;
  end if;
  return true;
end
$$;
"""


def setup_cron(conn: psycopg.Connection, *interval: str) -> str:
    args = "%s" if interval else ""
    row = conn.execute(
        f"select pgflow.setup_requeue_stalled_tasks_cron({args})", interval
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_setup_cron_without_pg_cron_raises_a_clear_error(conn: psycopg.Connection) -> None:
    assert conn.execute("select to_regnamespace('cron')").fetchone() == (None,)

    with pytest.raises(psycopg.errors.RaiseException) as raised:
        setup_cron(conn)

    error = raised.value
    assert error.sqlstate == "P0001"
    message = error.diag.message_primary or ""
    assert message.startswith("pg_cron is not installed in this database: ")
    assert "requeue_stalled_tasks" in message
    assert "create extension pg_cron" in message
    # nothing was created on the way
    assert conn.execute("select to_regnamespace('cron')").fetchone() == (None,)


def test_setup_cron_schedules_the_requeue_job(conn: psycopg.Connection) -> None:
    conn.execute(CRON_STUB.encode())

    first = setup_cron(conn)
    [job] = fetch(conn, "select * from cron.job")
    assert (
        first == f"Scheduled pgflow_requeue_stalled_tasks (every 15 seconds, job_id={job['jobid']})"
    )
    assert (job["jobname"], job["schedule"], job["command"]) == (
        "pgflow_requeue_stalled_tasks",
        "15 seconds",
        "select pgflow.requeue_stalled_tasks()",
    )

    second = setup_cron(conn, "5 seconds")
    [job] = fetch(conn, "select * from cron.job")
    assert (
        second == f"Scheduled pgflow_requeue_stalled_tasks (every 5 seconds, job_id={job['jobid']})"
    )
    assert job["schedule"] == "5 seconds"
    # the first unschedule failed (no job yet, its row rolled back with the error) and was
    # ignored; the second removed the old job before scheduling the new one
    assert [
        (c["call"], c["args"][:2]) for c in fetch(conn, "select * from cron.calls order by id")
    ] == [
        ("schedule", ["pgflow_requeue_stalled_tasks", "15 seconds"]),
        ("unschedule", ["pgflow_requeue_stalled_tasks"]),
        ("schedule", ["pgflow_requeue_stalled_tasks", "5 seconds"]),
    ]
    # the scheduled command is valid as pg_cron would run it
    assert conn.execute(job["command"]).fetchone() == (0,)
