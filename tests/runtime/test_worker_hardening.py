"""Real worker processes under faults: failed polls, values PostgreSQL rejects, real attempt
numbers, an unreachable database, lost connections and a second Ctrl-C."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgweave.client import Client
from tests.runtime.processes import (
    Spawn,
    log_events,
    refused_dsn,
    registered,
    tasks,
    wait_for,
)

# Fails the first three attempts to start a task, whatever protocol the worker polls with:
# nextval is not rolled back with the failing statement.
POLL_FAULT = """
create sequence public.poll_faults;
create function public.inject_poll_fault() returns trigger language plpgsql as $$
begin
  if new.status = 'started' and nextval('public.poll_faults') <= 3 then
    raise exception 'injected poll fault';
  end if;
  return new;
end $$;
create trigger inject_poll_fault before update on pgflow.step_tasks
  for each row execute function public.inject_poll_fault();
"""


def test_a_failed_poll_is_logged_and_the_worker_keeps_polling(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    worker = spawn("squares")
    wait_for(registered(conn), 30, "the worker to register")
    conn.execute(POLL_FAULT)
    final = Client(db).start_flow("squares", [1, 2, 3]).wait(timeout=60)
    assert (final.status, final.output) == ("completed", {"total": 14})
    assert worker.process.poll() is None  # still serving
    events = log_events(worker)
    failures = [e for e in events if e["event"] == "worker.poll_failed"]
    assert len(failures) == 3  # each failed poll consumed one fault
    assert all("injected poll fault" in e["error"] for e in failures)
    delays = [e["retry_in"] for e in failures]
    assert delays == sorted(delays)  # backing off
    assert any(e["event"] == "worker.poll_recovered" for e in events)


def test_outputs_postgres_rejects_fail_the_task_as_an_attempt(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    worker = spawn("unstorable")
    wait_for(registered(conn), 30, "the worker to register")
    client = Client(db)
    kinds = ["nan", "infinity", "nul", "raise", "fine"]
    runs = {kind: client.start_flow("unstorable", kind) for kind in kinds}
    finals = {kind: run.wait(timeout=60) for kind, run in runs.items()}
    assert {k: f.status for k, f in finals.items()} == {
        "nan": "failed",
        "infinity": "failed",
        "nul": "failed",
        "raise": "failed",
        "fine": "completed",
    }
    assert finals["fine"].output == {"value": {"ok": "fine"}}
    errors = {}
    for kind, final in finals.items():
        [(_step, _index, status, attempts, error)] = tasks(conn, final.run_id)
        assert (status, attempts) == (("completed", 1) if kind == "fine" else ("failed", 2))
        errors[kind] = error
    assert errors["nan"] == (
        "the handler's output cannot be stored by PostgreSQL: $.score is nan, "
        "which JSON cannot represent"
    )
    assert errors["infinity"] == (
        "the handler's output cannot be stored by PostgreSQL: $[1] is inf, "
        "which JSON cannot represent"
    )
    assert errors["nul"] == (
        "the handler's output cannot be stored by PostgreSQL: $.text is a string "
        "containing NUL (\\u0000)"
    )
    assert errors["raise"] == "bad\\x00text"  # the NUL escaped, the text kept
    completed = {e["run_id"] for e in log_events(worker) if e["event"] == "task.completed"}
    assert completed == {str(finals["fine"].run_id)}


def test_step_context_attempt_is_the_tasks_attempt_number(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    spawn("attempts")
    wait_for(registered(conn), 30, "the worker to register")
    final = Client(db).start_flow("attempts", None).wait(timeout=60)
    assert (final.status, final.output) == ("completed", {"lucky": {"attempt": 3}})
    assert tasks(conn, final.run_id) == [("lucky", 0, "completed", 3, "failed at attempt 2")]


def test_ctrl_c_while_the_database_is_unreachable_stops_at_once(spawn: Spawn) -> None:
    worker = spawn("squares", dsn=refused_dsn())
    wait_for(lambda: "error connecting" in worker.logs(), 30, "the pool's first failure")
    worker.signal(signal.SIGINT)
    asked = time.monotonic()
    assert worker.wait(20) == 0
    assert time.monotonic() - asked < 10  # the pool would wait 30 s for a connection
    lines = worker.logs().splitlines()
    events = [json.loads(line) for line in lines]  # every line, psycopg's too, is JSON
    pool = [e for e in events if e["logger"] == "psycopg.pool"]
    assert pool
    assert all(e["level"] == "warning" for e in pool)
    assert "error connecting in 'pgweave-worker'" in pool[0]["event"]
    assert [e["event"] for e in events if e["logger"] == "pgweave.worker"] == [
        "worker.stopped_before_start"
    ]


def test_lost_connections_are_logged_in_the_log_format_and_work_goes_on(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    worker = spawn("squares", args=("--max-poll-seconds", "1"))
    wait_for(registered(conn), 30, "the worker to register")
    terminated = conn.execute(
        "select count(*) from pg_stat_activity, pg_terminate_backend(pid)"
        " where datname = current_database() and pid <> pg_backend_pid()"
        " and backend_type = 'client backend'"
    ).fetchone()
    assert terminated is not None
    assert terminated[0] >= 1
    final = Client(db).start_flow("squares", [2, 3]).wait(timeout=60)
    assert (final.status, final.output) == ("completed", {"total": 13})
    events = [json.loads(line) for line in worker.logs().splitlines()]
    noticed = [
        e for e in events if e["event"] == "worker.poll_failed" or e["logger"].startswith("psycopg")
    ]
    assert noticed, "the lost connections were not logged"


def test_a_second_ctrl_c_stops_at_once_and_reports_the_abandoned_tasks(
    db: str, conn: psycopg.Connection, spawn: Spawn, markers: Path
) -> None:
    worker = spawn("patient_map")
    wait_for(registered(conn), 30, "the worker to register")
    run = Client(db).start_flow("patient_map", [30])
    wait_for(lambda: (markers / "sleep-0-1.start").exists(), 30, "the task to start")
    worker.signal(signal.SIGINT)
    wait_for(lambda: "worker.draining" in worker.logs(), 30, "the worker to drain")
    worker.signal(signal.SIGINT)
    asked = time.monotonic()
    assert worker.wait(20) == 3  # the sync handler's thread is left behind
    assert time.monotonic() - asked < 10  # not waiting for the 30 s handler
    events = log_events(worker)
    names = [e["event"] for e in events]
    assert names.index("worker.forced_stop") < names.index("worker.abandoned_tasks")
    [abandoned] = [e for e in events if e["event"] == "worker.abandoned_tasks"]
    assert abandoned["tasks"] == [f"{run.run_id}/sleep/0"]
    assert names[-1] == "worker.exit_with_running_handlers"
    assert conn.execute("select stopped_at is not null from pgflow.workers").fetchone() == (True,)


def test_poll_fault_trigger_is_removable(conn: psycopg.Connection) -> None:
    """The fault injection itself: it fails exactly three starts, then lets them through."""
    conn.execute(POLL_FAULT)
    conn.execute("select pgflow.create_flow('faulty')")
    conn.execute("select pgflow.add_step('faulty', 'only')")
    conn.execute("select pgflow.start_flow('faulty', %s)", (Jsonb({}),))
    worker_id = "11111111-1111-1111-1111-111111111111"
    conn.execute("select pgflow.register_worker(%s, 'faulty', 'test')", (worker_id,))
    for _ in range(3):
        with pytest.raises(psycopg.errors.RaiseException, match="injected poll fault"):
            conn.execute(
                "select * from pgflow.read_and_start_tasks('faulty', %s, 1, 0)", (worker_id,)
            )
    rows = conn.execute(
        "select step_slug from pgflow.read_and_start_tasks('faulty', %s, 1, 0)", (worker_id,)
    ).fetchall()
    assert rows == [("only",)]
