"""fail_task: requeue with attempts left, step and run failure with cancelled siblings,
calls under a failed run or a finished step, queued and replayed calls."""

from __future__ import annotations

import threading

import psycopg
from psycopg.types.json import Jsonb

from tests.engine.concurrency import wait_until_blocked
from tests.engine.helpers import (
    RUN_FAILED_KEYS,
    STEP_FAILED_KEYS,
    Events,
    add_step,
    archive_ids,
    complete,
    create_flow,
    fail,
    fail_run_by_hand,
    fail_step_by_hand,
    make_visible,
    map_step_run,
    queue_ids,
    queue_messages,
    read_and_start,
    run_row,
    single_step_run,
    start_flow,
    step_row,
    task_row,
    task_statuses,
    ts,
)


def test_failure_with_attempts_left_requeues_the_task(conn: psycopg.Connection) -> None:
    events = Events(conn)
    run, task = single_step_run(conn, {}, max_attempts=3, base_delay=1)
    events.take()

    returned = fail(conn, task, "oops")

    assert returned == task_row(conn, run["run_id"], "a")
    assert returned["status"] == "queued"
    assert returned["error_message"] == "oops"
    assert returned["attempts_count"] == 1
    assert returned["started_at"] is None
    assert returned["failed_at"] is None
    state = step_row(conn, run["run_id"], "a")
    assert (state["status"], state["error_message"], state["failed_at"]) == ("started", None, None)
    assert state["remaining_tasks"] == 1
    assert run_row(conn, run["run_id"])["status"] == "started"
    # The message stays in the queue, invisible until the backoff elapses.
    assert task["msg_id"] in queue_ids(conn, "f")
    assert task["msg_id"] not in archive_ids(conn, "f")
    assert read_and_start(conn, "f") == []
    assert events.take() == []


def test_retry_then_success_completes_the_run(conn: psycopg.Connection) -> None:
    run, task = single_step_run(conn, {"n": 1}, max_attempts=2)
    fail(conn, task, "transient")
    make_visible(conn, "f")

    [again] = read_and_start(conn, "f")
    assert again["msg_id"] == task["msg_id"]
    assert task_row(conn, run["run_id"], "a")["attempts_count"] == 2
    done = complete(conn, again, {"ok": True})

    assert done["status"] == "completed"
    assert run_row(conn, run["run_id"])["output"] == {"a": {"ok": True}}
    assert run_row(conn, run["run_id"])["status"] == "completed"


def test_retry_of_one_map_task_leaves_its_siblings(conn: psycopg.Connection) -> None:
    create_flow(conn, "f", max_attempts=3)
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", ["p", "q"])
    started = {t["task_index"]: t for t in read_and_start(conn, "f", qty=2)}

    fail(conn, started[0], "flaky")

    assert task_row(conn, run["run_id"], "m", 0)["status"] == "queued"
    assert task_row(conn, run["run_id"], "m", 1)["status"] == "started"
    assert step_row(conn, run["run_id"], "m")["remaining_tasks"] == 2
    assert queue_ids(conn, "f") == {started[0]["msg_id"], started[1]["msg_id"]}


def test_exhausted_failure_fails_step_and_run_and_cancels_the_rest(
    conn: psycopg.Connection,
) -> None:
    events = Events(conn)
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "m", step_type="map")
    add_step(conn, "f", "z")
    run = start_flow(conn, "f", [1, 2, 3])
    # Lowest message ids first: m's tasks 0 and 1 start, m's task 2 and z stay queued.
    started = {t["task_index"]: t for t in read_and_start(conn, "f", qty=2)}
    assert {t["step_slug"] for t in started.values()} == {"m"}
    all_messages = queue_ids(conn, "f")
    events.take()

    returned = fail(conn, started[0], "boom")

    assert returned["status"] == "failed"
    assert returned["error_message"] == "boom"
    assert returned["failed_at"] is not None
    statuses = task_statuses(conn, run["run_id"])
    assert statuses == {
        ("m", 0): "failed",
        ("m", 1): "cancelled",
        ("m", 2): "cancelled",
        ("z", 0): "cancelled",
    }
    assert queue_ids(conn, "f") == set()
    assert archive_ids(conn, "f") == all_messages

    state = step_row(conn, run["run_id"], "m")
    assert (state["status"], state["error_message"]) == ("failed", "boom")
    failed_run = run_row(conn, run["run_id"])
    assert failed_run["status"] == "failed"
    # Failing never decrements remaining_steps.
    assert failed_run["remaining_steps"] == 2

    step_event, run_event = events.take()
    assert step_event["event"] == "step:m:failed"
    assert set(step_event["payload"]) == STEP_FAILED_KEYS
    assert step_event["payload"]["event_type"] == "step:failed"
    assert step_event["payload"]["step_slug"] == "m"
    assert step_event["payload"]["status"] == "failed"
    assert step_event["payload"]["error_message"] == "boom"
    assert ts(step_event["payload"]["failed_at"]) == state["failed_at"]
    assert run_event["event"] == "run:failed"
    assert set(run_event["payload"]) == RUN_FAILED_KEYS
    assert run_event["payload"]["event_type"] == "run:failed"
    assert run_event["payload"]["flow_slug"] == "f"
    assert run_event["payload"]["status"] == "failed"
    assert run_event["payload"]["error_message"] == "boom"
    assert ts(run_event["payload"]["failed_at"]) == failed_run["failed_at"]


def test_replayed_exhausted_failure_sends_nothing(conn: psycopg.Connection) -> None:
    events = Events(conn)
    run, task = single_step_run(conn, {}, max_attempts=1)
    first = fail(conn, task, "boom")
    events.take()

    again = fail(conn, task, "boom again")

    assert again == first
    assert step_row(conn, run["run_id"], "a")["error_message"] == "boom"
    assert events.take() == []


def test_failure_under_a_failed_run_fails_a_started_task(conn: psycopg.Connection) -> None:
    events = Events(conn)
    run, [first] = map_step_run(conn, [1, 2], qty=1)
    queued = task_row(conn, run["run_id"], "m", 1)
    fail_run_by_hand(conn, run["run_id"])
    events.take()

    returned = fail(conn, first, "worker died")

    assert (returned["status"], returned["error_message"]) == ("failed", "worker died")
    assert returned["failed_at"] is not None
    assert first["msg_id"] in archive_ids(conn, "f")
    # The step itself is not touched.
    assert step_row(conn, run["run_id"], "m")["status"] == "started"

    # A queued task of the failed run keeps its status, but its message is archived.
    unchanged = fail(conn, {**first, "task_index": 1}, "never ran")
    assert unchanged == queued
    assert queued["message_id"] not in queue_ids(conn, "f")
    assert queued["message_id"] in archive_ids(conn, "f")
    assert events.take() == []


def test_late_failure_on_a_finished_step_only_archives(conn: psycopg.Connection) -> None:
    events = Events(conn)
    run, task = single_step_run(conn, {}, max_attempts=1)
    fail_step_by_hand(conn, run["run_id"], "a")
    before = task_row(conn, run["run_id"], "a")
    events.take()

    returned = fail(conn, task, "late")

    assert returned == before
    assert returned["status"] == "started"
    assert task["msg_id"] in archive_ids(conn, "f")
    assert run_row(conn, run["run_id"])["status"] == "started"
    assert events.take() == []


def test_failure_of_a_queued_task_changes_no_row(conn: psycopg.Connection) -> None:
    """Only its message moves: hidden for the retry delay (test_hardening checks how long)."""
    events = Events(conn)
    run, [first] = map_step_run(conn, [1, 2], qty=1, max_attempts=1)
    queued = task_row(conn, run["run_id"], "m", 1)
    before = {m["msg_id"]: m["vt"] for m in queue_messages(conn, "f")}
    events.take()

    returned = fail(conn, {**first, "task_index": 1}, "not started")

    assert returned == queued == task_row(conn, run["run_id"], "m", 1)
    after = {m["msg_id"]: m["vt"] for m in queue_messages(conn, "f")}
    assert after[first["msg_id"]] == before[first["msg_id"]]
    assert after[queued["message_id"]] > before[queued["message_id"]]
    state = step_row(conn, run["run_id"], "m")
    assert (state["status"], state["remaining_tasks"]) == ("started", 2)
    assert run_row(conn, run["run_id"])["status"] == "started"
    assert events.take() == []


def test_sibling_completion_waits_for_a_run_failing_failure(
    conn: psycopg.Connection, db: str
) -> None:
    events = Events(conn)
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", ["x", "y"])
    assert len(read_and_start(conn, "f", qty=2)) == 2
    events.take()
    errors: list[BaseException] = []

    with psycopg.connect(db) as failing, psycopg.connect(db) as completing:
        # The exhausted failure fails the run and holds its lock until commit.
        failing.execute("select pgflow.fail_task(%s, 'm', 0, 'boom')", (run["run_id"],))

        def complete_sibling() -> None:
            try:
                completing.execute(
                    "select pgflow.complete_task(%s, 'm', 1, %s)", (run["run_id"], Jsonb("y!"))
                )
                completing.commit()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=complete_sibling)
        thread.start()
        wait_until_blocked(conn, completing.info.backend_pid)
        failing.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert errors == []

    # The completion saw the failed run: the sibling stays cancelled, the step failed.
    sibling = task_row(conn, run["run_id"], "m", 1)
    assert (sibling["status"], sibling["output"]) == ("cancelled", None)
    assert step_row(conn, run["run_id"], "m")["status"] == "failed"
    assert run_row(conn, run["run_id"])["status"] == "failed"
    assert events.names() == ["step:m:failed", "run:failed"]
