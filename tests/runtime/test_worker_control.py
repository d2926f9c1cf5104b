"""Run control in real worker processes: cancellation, timeouts, RetryAfter, failure details."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg

from pgweave.client import Client
from tests.runtime.processes import Spawn, log_events, registered, wait_for


def _stamp(markers: Path, run_id: uuid.UUID, step: str, what: str, attempt: int = 1) -> Path:
    return markers / f"{run_id}-{step}-{attempt}.{what}"


def _stamped_at(path: Path) -> float:
    return float(path.read_text(encoding="utf-8"))


def test_cancelling_a_run_stops_its_async_and_sync_handlers_within_a_second(
    db: str, conn: psycopg.Connection, spawn: Spawn, markers: Path
) -> None:
    worker = spawn("cancellable")
    wait_for(registered(conn), 30, "the worker to register")
    client = Client(db)
    doomed = client.start_flow("cancellable", {"seconds": 30})
    other = client.start_flow("cancellable", {"seconds": 2})
    started = [
        _stamp(markers, run.run_id, step, "start")
        for run in (doomed, other)
        for step in ("async_wait", "sync_wait")
    ]
    wait_for(lambda: all(p.exists() for p in started), 30, "all four handlers to start")

    cancelled_at = time.time()
    conn.execute("select pgflow.cancel_run(%s)", (doomed.run_id,))
    stopped = [_stamp(markers, doomed.run_id, s, "stopped") for s in ("async_wait", "sync_wait")]
    wait_for(lambda: all(p.exists() for p in stopped), 10, "both handlers of the run to stop")
    for path in stopped:
        assert _stamped_at(path) - cancelled_at < 1.0, path.name

    # the other run of the same flow is unaffected and completes
    final = other.wait(timeout=30)
    assert final.status == "completed"
    assert final.output == {"async_wait": {"slept": 2}, "sync_wait": {"slept": 2}}
    # the cancelled run's tasks stay cancelled: results discarded, never reported
    statuses = conn.execute(
        "select step_slug, status, output from pgflow.step_tasks where run_id = %s"
        " order by step_slug",
        (doomed.run_id,),
    ).fetchall()
    assert statuses == [("async_wait", "cancelled", None), ("sync_wait", "cancelled", None)]
    assert not _stamp(markers, doomed.run_id, "async_wait", "end").exists()
    discarded = [e for e in log_events(worker) if e["event"] == "task.discarded"]
    assert sorted(e["step"] for e in discarded) == ["async_wait", "sync_wait"]
    assert {e["run_id"] for e in discarded} == {str(doomed.run_id)}
    # and the worker keeps serving new runs
    assert client.start_flow("cancellable", {"seconds": 0}).wait(timeout=30).status == "completed"


def test_a_handler_past_its_timeout_is_stopped_and_the_task_retried_once_completed(
    db: str, conn: psycopg.Connection, spawn: Spawn, markers: Path
) -> None:
    spawn("overtime")
    wait_for(registered(conn), 30, "the worker to register")
    run = Client(db).start_flow("overtime", None)
    final = run.wait(timeout=60)
    assert final.status == "completed"
    assert final.output == {"late_async": {"attempt": 2}, "late_sync": {"attempt": 2}}
    rows = conn.execute(
        "select step_slug, status, attempts_count, output, error_message, error_type"
        " from pgflow.step_tasks where run_id = %s order by step_slug",
        (run.run_id,),
    ).fetchall()
    assert [r[:4] for r in rows] == [
        ("late_async", "completed", 2, {"attempt": 2}),
        ("late_sync", "completed", 2, {"attempt": 2}),
    ]
    # the first attempts failed with the timeout error (kept as the last failure)
    for row in rows:
        assert row[4] == "handler timed out after 3 s (the step's timeout); result discarded"
        assert row[5] == "TimeoutError"
    # the async handler was cancelled; the sync one finished later and changed nothing
    assert not _stamp(markers, run.run_id, "late_async", "end").exists()
    late_end = _stamp(markers, run.run_id, "late_sync", "end")
    wait_for(late_end.exists, 10, "the timed out sync handler's thread to finish")
    time.sleep(0.5)
    again = conn.execute(
        "select status, attempts_count, output from pgflow.step_tasks"
        " where run_id = %s and step_slug = 'late_sync'",
        (run.run_id,),
    ).fetchone()
    assert again == ("completed", 2, {"attempt": 2})


def test_retry_after_delays_the_next_attempt_by_the_chosen_seconds(
    db: str, conn: psycopg.Connection, spawn: Spawn, markers: Path
) -> None:
    spawn("retrying")
    wait_for(registered(conn), 30, "the worker to register")
    run = Client(db).start_flow("retrying", None)
    final = run.wait(timeout=60)
    assert final.status == "completed"
    assert final.output == {"later": {"attempt": 2}}
    first, second = (_stamped_at(_stamp(markers, run.run_id, "later", "start", n)) for n in (1, 2))
    # 2.5 s chosen by the handler, not the flow's backoff of 30 s
    assert 2.5 <= second - first < 15
    row = conn.execute(
        "select error_message, error_type from pgflow.step_tasks where run_id = %s",
        (run.run_id,),
    ).fetchone()
    assert row == ("not ready yet", "pgweave.dsl.RetryAfter")


def test_a_failed_task_keeps_the_exception_type_and_its_traceback(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    spawn("breaking")
    wait_for(registered(conn), 30, "the worker to register")
    final = Client(db).start_flow("breaking", None).wait(timeout=60)
    assert final.status == "failed"
    message, kind, traceback = conn.execute(
        "select error_message, error_type, error_traceback from pgflow.step_tasks"
        " where run_id = %s",
        (final.run_id,),
    ).fetchone() or (None, None, None)
    assert (message, kind) == ("nothing works", "tests.runtime.flows.BrokenError")
    assert traceback.startswith("Traceback (most recent call last)")
    assert 'raise BrokenError("nothing works")' in traceback
    assert traceback.rstrip().endswith("tests.runtime.flows.BrokenError: nothing works")
