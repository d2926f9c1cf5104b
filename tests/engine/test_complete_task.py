"""complete_task: stored outputs, step and run completion, what a completion unlocks,
late/replayed/queued calls, and sibling completions serialised by the run lock."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.engine.concurrency import wait_until_blocked
from tests.engine.helpers import (
    CASCADE_SKIPPED_KEYS,
    RUN_COMPLETED_KEYS,
    RUN_FAILED_KEYS,
    STEP_COMPLETED_KEYS,
    STEP_FAILED_KEYS,
    STEP_STARTED_KEYS,
    Events,
    add_step,
    archive_ids,
    complete,
    complete_sql_null,
    create_flow,
    fail,
    fail_run_by_hand,
    fail_step_by_hand,
    map_step_run,
    notify_events,
    queue_ids,
    read_and_start,
    run_row,
    single_step_run,
    start_flow,
    step_row,
    task_row,
    ts,
)


def test_single_step_completes_step_and_run(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    run = start_flow(conn, "f", {"x": 1})
    events.take()
    [task] = read_and_start(conn, "f")

    returned = complete(conn, task, {"done": True})

    assert returned["status"] == "completed"
    assert returned["output"] == {"done": True}
    assert returned["completed_at"] is not None
    assert task_row(conn, run["run_id"], "a") == returned
    state = step_row(conn, run["run_id"], "a")
    assert (state["status"], state["remaining_tasks"], state["output"]) == (
        "completed",
        0,
        {"done": True},
    )
    finished = run_row(conn, run["run_id"])
    assert (finished["status"], finished["remaining_steps"], finished["output"]) == (
        "completed",
        0,
        {"a": {"done": True}},
    )
    assert task["msg_id"] not in queue_ids(conn, "f")
    assert task["msg_id"] in archive_ids(conn, "f")

    step_event, run_event = events.take()
    assert step_event["event"] == "step:a:completed"
    assert set(step_event["payload"]) == STEP_COMPLETED_KEYS
    assert step_event["payload"]["event_type"] == "step:completed"
    assert step_event["payload"]["run_id"] == str(run["run_id"])
    assert step_event["payload"]["step_slug"] == "a"
    assert step_event["payload"]["status"] == "completed"
    assert step_event["payload"]["output"] == {"done": True}
    assert ts(step_event["payload"]["completed_at"]) == state["completed_at"]
    assert run_event["event"] == "run:completed"
    assert set(run_event["payload"]) == RUN_COMPLETED_KEYS
    assert run_event["payload"]["output"] == {"a": {"done": True}}
    assert run_event["payload"]["flow_slug"] == "f"
    assert ts(run_event["payload"]["completed_at"]) == finished["completed_at"]


def test_completion_unlocks_children_in_order(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "c", ["a"])
    add_step(conn, "f", "b", ["a"])
    run = start_flow(conn, "f", {})
    events.take()
    [task] = read_and_start(conn, "f")

    complete(conn, task, 42)

    names = events.names()
    assert names == ["step:a:completed", "step:b:started", "step:c:started"]
    for child in ("b", "c"):
        state = step_row(conn, run["run_id"], child)
        assert (state["status"], state["remaining_deps"], state["remaining_tasks"]) == (
            "started",
            0,
            1,
        )
        queued = task_row(conn, run["run_id"], child)
        assert queued["status"] == "queued"
        assert queued["message_id"] in queue_ids(conn, "f")
    current = run_row(conn, run["run_id"])
    assert (current["status"], current["remaining_steps"]) == ("started", 2)

    inputs = sorted(
        (record["step_slug"], record["input"]) for record in read_and_start(conn, "f", qty=5)
    )
    assert inputs == [("b", {"a": 42}), ("c", {"a": 42})]


def test_step_started_event_payload(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    run = start_flow(conn, "f", {})
    events.take()
    [task] = read_and_start(conn, "f")
    complete(conn, task, "x")
    started = events.take()[1]
    state = step_row(conn, run["run_id"], "b")
    assert started["event"] == "step:b:started"
    assert set(started["payload"]) == STEP_STARTED_KEYS
    assert started["payload"]["event_type"] == "step:started"
    assert started["payload"]["remaining_tasks"] == 1
    assert started["payload"]["remaining_deps"] == 0
    assert ts(started["payload"]["started_at"]) == state["started_at"]


@pytest.mark.parametrize("output", [False, 0, "", [], {}, None], ids=repr)
def test_falsy_outputs_are_stored_as_given(conn: psycopg.Connection, output: Any) -> None:
    run, task = single_step_run(conn, {})

    complete(conn, task, output)

    expected = conn.execute("select %s::jsonb::text", (Jsonb(output),)).fetchone()
    assert expected is not None
    stored = conn.execute(
        "select t.output::text, ss.output::text, r.output -> 'a' is not null"
        " from pgflow.step_tasks t"
        " join pgflow.step_states ss using (run_id, step_slug)"
        " join pgflow.runs r using (run_id)"
        " where t.run_id = %s",
        (run["run_id"],),
    ).fetchone()
    assert stored is not None
    assert stored[0] == expected[0]
    assert stored[1] == expected[0]
    assert stored[2] is True
    assert run_row(conn, run["run_id"])["output"] == {"a": output}


def test_sql_null_output(conn: psycopg.Connection) -> None:
    run, task = single_step_run(conn, {})

    returned = complete_sql_null(conn, run["run_id"], "a", 0)

    assert returned["status"] == "completed"
    assert returned["output"] is None
    assert step_row(conn, run["run_id"], "a")["output"] is None
    row = conn.execute(
        "select status, jsonb_typeof(output -> 'a') from pgflow.runs where run_id = %s",
        (run["run_id"],),
    ).fetchone()
    assert row == ("completed", "null")
    assert task["msg_id"] in archive_ids(conn, "f")


def test_replayed_completion_changes_nothing(conn: psycopg.Connection) -> None:
    events = Events(conn)
    run, task = single_step_run(conn, {})
    first = complete(conn, task, {"v": 1})
    events.take()
    archived = archive_ids(conn, "f")

    again = complete(conn, task, {"v": 2})

    assert again == first
    assert step_row(conn, run["run_id"], "a")["output"] == {"v": 1}
    assert run_row(conn, run["run_id"])["output"] == {"a": {"v": 1}}
    assert archive_ids(conn, "f") == archived
    assert events.take() == []


def test_queued_task_is_not_completed(conn: psycopg.Connection) -> None:
    events = Events(conn)
    run, [first] = map_step_run(conn, [1, 2], qty=1)
    assert first["task_index"] == 0
    queued = task_row(conn, run["run_id"], "m", 1)
    events.take()

    returned = complete(conn, {**first, "task_index": 1}, "early")

    assert returned == queued
    assert returned["status"] == "queued"
    assert returned["output"] is None
    assert queued["message_id"] in queue_ids(conn, "f")
    assert step_row(conn, run["run_id"], "m")["remaining_tasks"] == 2

    complete(conn, first, "zero")
    state = step_row(conn, run["run_id"], "m")
    assert (state["status"], state["remaining_tasks"], state["output"]) == ("started", 1, None)
    assert first["msg_id"] in archive_ids(conn, "f")
    assert queued["message_id"] in queue_ids(conn, "f")
    # No step event until the last task completes.
    assert events.take() == []


def test_late_completion_on_a_finished_step_only_archives(conn: psycopg.Connection) -> None:
    events = Events(conn)
    run, task = single_step_run(conn, {})
    # The step finished by other means while the handler ran.
    fail_step_by_hand(conn, run["run_id"], "a")
    before = task_row(conn, run["run_id"], "a")
    events.take()

    returned = complete(conn, task, "late")

    assert returned == before
    assert returned["status"] == "started"
    assert task["msg_id"] not in queue_ids(conn, "f")
    assert task["msg_id"] in archive_ids(conn, "f")
    assert step_row(conn, run["run_id"], "a")["status"] == "failed"
    assert run_row(conn, run["run_id"])["remaining_steps"] == 1
    assert events.take() == []


def test_late_completion_of_a_sibling_in_a_skipped_step(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "m", step_type="map", when_exhausted="skip")
    run = start_flow(conn, "f", [1, 2])
    first, second = read_and_start(conn, "f", qty=2)
    fail(conn, first, "boom")
    events.take()
    skipped = task_row(conn, run["run_id"], "m", second["task_index"])
    assert skipped["status"] == "skipped"

    returned = complete(conn, second, "too late")

    assert returned == skipped
    assert step_row(conn, run["run_id"], "m")["status"] == "skipped"
    assert events.take() == []


def test_completion_under_a_failed_run_changes_nothing(conn: psycopg.Connection) -> None:
    events = Events(conn)
    run, task = single_step_run(conn, {})
    fail_run_by_hand(conn, run["run_id"])
    before = task_row(conn, run["run_id"], "a")
    events.take()

    returned = complete(conn, task, "ignored")

    assert returned == before
    assert step_row(conn, run["run_id"], "a")["status"] == "started"
    # Nothing archived: the message stays where it was.
    assert task["msg_id"] in queue_ids(conn, "f")
    assert events.take() == []


def test_completion_of_a_cancelled_task_after_run_failure(conn: psycopg.Connection) -> None:
    events = Events(conn)
    run, (first, second) = map_step_run(conn, [1, 2], qty=2, max_attempts=1)
    fail(conn, first, "boom")
    cancelled = task_row(conn, run["run_id"], "m", second["task_index"])
    assert cancelled["status"] == "cancelled"
    events.take()

    assert complete(conn, second, "late") == cancelled
    assert events.take() == []


def test_unmet_fail_condition_on_child_fails_the_run(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"], required_input_pattern={"a": {"ok": True}}, when_unmet="fail")
    run = start_flow(conn, "f", {})
    [task] = read_and_start(conn, "f")
    events.take()

    returned = complete(conn, task, {"ok": False})

    assert returned["status"] == "completed"
    assert task["msg_id"] in archive_ids(conn, "f")
    child = step_row(conn, run["run_id"], "b")
    assert (child["status"], child["error_message"]) == ("failed", "Condition not met")
    assert run_row(conn, run["run_id"])["status"] == "failed"
    taken = events.take()
    assert [event["event"] for event in taken] == [
        "step:a:completed",
        "step:b:failed",
        "run:failed",
    ]
    assert set(taken[1]["payload"]) == STEP_FAILED_KEYS
    assert set(taken[2]["payload"]) == RUN_FAILED_KEYS
    assert taken[2]["payload"]["error_message"] == "Condition not met"


def test_unmet_skip_condition_on_only_child_completes_the_run(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"], required_input_pattern={"a": {"ok": True}})
    run = start_flow(conn, "f", {})
    [task] = read_and_start(conn, "f")
    events.take()

    complete(conn, task, {"ok": False})

    child = step_row(conn, run["run_id"], "b")
    assert (child["status"], child["skip_reason"]) == ("skipped", "condition_unmet")
    finished = run_row(conn, run["run_id"])
    # The only leaf was skipped, so the run output is NULL.
    assert (finished["status"], finished["output"], finished["remaining_steps"]) == (
        "completed",
        None,
        0,
    )
    taken = events.take()
    assert [event["event"] for event in taken] == [
        "step:a:completed",
        "step:b:skipped",
        "run:completed",
    ]
    assert set(taken[1]["payload"]) == CASCADE_SKIPPED_KEYS


def test_sibling_completions_serialise_and_complete_the_step_once(
    conn: psycopg.Connection, db: str
) -> None:
    events = Events(conn)
    run, started = map_step_run(conn, ["x", "y"], qty=2)
    assert sorted(task["task_index"] for task in started) == [0, 1]
    events.take()
    errors: list[BaseException] = []
    call = "select pgflow.complete_task(%s, 'm', %s, %s)"

    with psycopg.connect(db) as first, psycopg.connect(db) as second:
        # The first completion holds the run and step locks until it commits.
        first.execute(call, (run["run_id"], 1, Jsonb("one")))

        def complete_second() -> None:
            try:
                second.execute(call, (run["run_id"], 0, Jsonb("zero")))
                second.commit()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=complete_second)
        thread.start()
        wait_until_blocked(conn, second.info.backend_pid)
        assert task_row(conn, run["run_id"], "m", 0)["status"] == "started"
        first.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert errors == []

    state = step_row(conn, run["run_id"], "m")
    assert (state["status"], state["remaining_tasks"], state["output"]) == (
        "completed",
        0,
        ["zero", "one"],
    )
    assert run_row(conn, run["run_id"])["output"] == {"m": ["zero", "one"]}
    names = events.names()
    assert names == ["step:m:completed", "run:completed"]


def test_events_reach_notify_listeners_without_realtime(conn: psycopg.Connection, db: str) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    run = start_flow(conn, "f", {})
    [task] = read_and_start(conn, "f")
    topic = f"pgflow:run:{run['run_id']}"

    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute(sql.SQL("listen {}").format(sql.Identifier(topic)))
        complete(conn, task, {"v": 1})
        received = notify_events(listener, timeout=1.0)
        assert [event["event"] for event in received] == ["step:a:completed", "step:b:started"]
        assert {event["channel"] for event in received} == {topic}
        assert received[0]["payload"]["output"] == {"v": 1}
        assert received[0]["payload"]["event_type"] == "step:completed"

        # A replayed completion is silent.
        complete(conn, task, {"v": 1})
        assert notify_events(listener, timeout=0.3) == []
