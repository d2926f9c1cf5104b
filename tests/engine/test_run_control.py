"""Run control (issue 13, SQL side): cancel_run, pause_run/unpause_run, pause_flow/
unpause_flow, retry_run/resume_run, fail_task_with_details (handler-chosen retry delay and
failure details) and start_flow_idempotent, on live PostgreSQL: rows, queue and archive
contents, events, documented errors and idempotency."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.engine.concurrency import snapshot
from tests.engine.helpers import (
    Events,
    Row,
    add_step,
    archive_ids,
    complete,
    complete_at,
    create_flow,
    fail,
    fail_at,
    fetch,
    queue_messages,
    read_and_start,
    realtime_events,
    run_row,
    scalar,
    start_flow,
    start_tasks,
    states,
    statuses,
    task_row,
    task_statuses,
    vt_seconds_from_now,
)
from tests.engine.logins import Connect

RUN_CANCELLED_KEYS = {
    "event_type",
    "run_id",
    "flow_slug",
    "status",
    "cancel_reason",
    "cancelled_at",
}


def call_run(conn: psycopg.Connection, function: str, run_id: uuid.UUID, *extra: Any) -> Row:
    """One of the run-control functions taking a run id; returns the run row it returns."""
    placeholders = "".join(", %s" for _ in extra)
    [row] = fetch(conn, f"select * from pgflow.{function}(%s{placeholders})", run_id, *extra)
    return row


def run_queue(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> list[Row]:
    """The run's messages still in the flow's queue."""
    return [m for m in queue_messages(conn, flow) if m["message"]["run_id"] == str(run_id)]


def run_view(conn: psycopg.Connection, run_id: uuid.UUID) -> dict[str, Any]:
    """What a call could change about one run: its rows, queued and archived messages
    and events (other runs' messages left out)."""
    view = snapshot(conn, "f", run_id)
    for key in ("queue", "archive"):
        view[key] = [m for m in view[key] if m["message"]["run_id"] == str(run_id)]
    return view


def diamond(conn: psycopg.Connection, **options: int) -> None:
    """Flow f: root map m over the input, root single a, b after a."""
    create_flow(conn, "f", **options)
    add_step(conn, "f", "m", step_type="map")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])


def chain_with_map(conn: psycopg.Connection, max_attempts: int = 1) -> None:
    """Flow f: a (produces an array) → m (map over it) → z."""
    create_flow(conn, "f", max_attempts=max_attempts)
    add_step(conn, "f", "a")
    add_step(conn, "f", "m", ["a"], step_type="map")
    add_step(conn, "f", "z", ["m"])


def read_all(conn: psycopg.Connection, flow: str = "f") -> list[Row]:
    """Read and start every readable task of the flow."""
    return read_and_start(conn, flow, vt=30, qty=100)


def by_key(tasks: list[Row]) -> dict[tuple[str, int], Row]:
    return {(t["step_slug"], t["task_index"]): t for t in tasks}


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_run_ends_unfinished_work_and_archives_every_message(
    conn: psycopg.Connection,
) -> None:
    diamond(conn)
    events = Events(conn)
    run_id = start_flow(conn, "f", [1, 2, 3])["run_id"]
    started = by_key(read_all(conn))
    complete(conn, started[("a", 0)], "A")  # b becomes ready: queued
    complete(conn, started[("m", 1)], 10)  # one map element done
    read_and_start(conn, "f", vt=30, qty=0)
    events.take()

    row = call_run(conn, "cancel_run", run_id, "operator said so")

    assert row["status"] == "cancelled"
    assert row["cancel_reason"] == "operator said so"
    assert row["cancelled_at"] is not None
    assert row["completed_at"] is None
    assert row == run_row(conn, run_id)
    assert statuses(conn, run_id) == {"m": "cancelled", "a": "completed", "b": "cancelled"}
    assert task_statuses(conn, run_id) == {
        ("a", 0): "completed",
        ("b", 0): "cancelled",
        ("m", 0): "cancelled",
        ("m", 1): "completed",
        ("m", 2): "cancelled",
    }
    assert run_queue(conn, "f", run_id) == []
    all_ids = {t["message_id"] for t in fetch(conn, "select message_id from pgflow.step_tasks")}
    assert archive_ids(conn, "f") == all_ids
    [event] = events.take()
    assert event["event"] == "run:cancelled"
    assert set(event["payload"]) == RUN_CANCELLED_KEYS
    assert event["payload"]["cancel_reason"] == "operator said so"
    assert event["payload"]["status"] == "cancelled"


def test_cancel_is_idempotent_and_refuses_finished_runs(conn: psycopg.Connection) -> None:
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "a")
    events = Events(conn)
    run_id = start_flow(conn, "f", {})["run_id"]
    first = call_run(conn, "cancel_run", run_id)
    events.take()
    before = snapshot(conn, "f", run_id)
    again = call_run(conn, "cancel_run", run_id, "another reason")
    assert again == first
    assert first["cancel_reason"] is None
    assert snapshot(conn, "f", run_id) == before
    assert events.take() == []

    done = start_flow(conn, "f", {})["run_id"]
    [task] = read_and_start(conn, "f")
    complete(conn, task, 1)
    with pytest.raises(psycopg.errors.RaiseException) as completed:
        call_run(conn, "cancel_run", done)
    assert str(completed.value).startswith(f"Run {done} cannot be cancelled: it is completed")

    failed = start_flow(conn, "f", {})["run_id"]
    [task] = read_and_start(conn, "f")
    fail(conn, task, "boom")
    with pytest.raises(psycopg.errors.RaiseException, match="it is failed"):
        call_run(conn, "cancel_run", failed)

    unknown = uuid.uuid4()
    with pytest.raises(psycopg.errors.RaiseException, match=f"Run not found: {unknown}"):
        call_run(conn, "cancel_run", unknown)


def test_late_calls_on_a_cancelled_run_change_nothing(conn: psycopg.Connection) -> None:
    diamond(conn, max_attempts=3)
    Events(conn)
    run_id = start_flow(conn, "f", [1, 2])["run_id"]
    started = read_all(conn)
    call_run(conn, "cancel_run", run_id)
    before = snapshot(conn, "f", run_id)
    for task in started:
        key = (task["run_id"], task["step_slug"], task["task_index"])
        complete_at(conn, *key, "late")
        fail_at(conn, *key, "late failure")
        fetch(
            conn, "select * from pgflow.fail_task_with_details(%s, %s, %s, 'x', 1, 'E', 'tb')", *key
        )
        fetch(
            conn,
            "select * from pgflow.complete_tasks(%s::uuid[], %s::text[], %s::int[], %s::jsonb[])",
            [key[0]],
            [key[1]],
            [key[2]],
            [Jsonb("late")],
        )
    message_ids = [t["msg_id"] for t in started]
    assert start_tasks(conn, "f", message_ids, uuid.uuid4()) == []
    assert fetch(conn, "select * from pgflow.read_and_start_tasks('f', %s, 10)", uuid.uuid4()) == []
    assert snapshot(conn, "f", run_id) == before


# -- pause ----------------------------------------------------------------------------------


def are_parked(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> list[bool]:
    """For each of the run's queued messages, in msg_id order: is it parked?"""
    return [
        row["parked"]
        for row in fetch(
            conn,
            f"select vt = '9000-01-01 00:00:00+00' as parked from pgmq.\"q_{flow}\""
            " where message->>'run_id' = %s order by msg_id",
            str(run_id),
        )
    ]


def test_pause_run_holds_its_tasks_until_unpause(conn: psycopg.Connection) -> None:
    diamond(conn)
    events = Events(conn)
    run_id = start_flow(conn, "f", [1, 2])["run_id"]
    other = start_flow(conn, "f", [7])["run_id"]
    [a_task] = [t for t in read_all(conn) if t["step_slug"] == "a" and t["run_id"] == run_id]
    for task in fetch(conn, "select * from pgflow.step_tasks where status = 'started'"):
        if task["run_id"] == run_id and task["step_slug"] == "m":
            fail_at(conn, run_id, "m", task["task_index"], "back to the queue")  # in backoff
    events.take()

    paused = call_run(conn, "pause_run", run_id)
    assert paused["paused_at"] is not None
    assert paused["status"] == "started"
    [event] = events.take()
    assert event["event"] == "run:paused"
    assert set(event["payload"]) == {"event_type", "run_id", "flow_slug", "status", "paused_at"}

    # A started task finishes and is recorded; the step it unlocks is queued, not started.
    complete(conn, a_task, "A")
    assert task_row(conn, run_id, "b")["status"] == "queued"
    assert statuses(conn, run_id)["b"] == "started"
    # No task of the paused run starts, whatever reads the queue; the other run goes on.
    conn.execute("update pgmq.q_f set vt = now() where vt < '9000-01-01'")
    started = read_all(conn)
    assert {t["run_id"] for t in started} <= {other}
    assert all(v for v in are_parked(conn, "f", run_id)), "read messages are parked"
    queued_ids = [
        t["message_id"]
        for t in fetch(
            conn,
            "select message_id from pgflow.step_tasks where run_id = %s and status = 'queued'",
            run_id,
        )
    ]
    assert start_tasks(conn, "f", queued_ids, uuid.uuid4()) == []
    assert sorted(m["msg_id"] for m in run_queue(conn, "f", run_id)) == sorted(queued_ids)
    events.take()

    # Pausing again changes nothing.
    assert call_run(conn, "pause_run", run_id)["paused_at"] == paused["paused_at"]
    assert events.take() == []

    unpaused = call_run(conn, "unpause_run", run_id)
    assert unpaused["paused_at"] is None
    [event] = events.take()
    assert event["event"] == "run:unpaused"
    assert set(event["payload"]) == {"event_type", "run_id", "flow_slug", "status", "unpaused_at"}
    assert not any(are_parked(conn, "f", run_id))
    resumed = read_all(conn)
    assert sorted((t["step_slug"], t["task_index"]) for t in resumed) == [
        ("b", 0),
        ("m", 0),
        ("m", 1),
    ]
    for task in resumed:
        complete(conn, task, 1)
    assert run_row(conn, run_id)["status"] == "completed"
    assert call_run(conn, "unpause_run", run_id)["paused_at"] is None
    assert events.take()[-1]["event"] == "run:completed"


def test_pause_keeps_retry_delays_and_refuses_finished_runs(conn: psycopg.Connection) -> None:
    create_flow(conn, "f", max_attempts=3, base_delay=100)
    add_step(conn, "f", "a")
    run_id = start_flow(conn, "f", {})["run_id"]
    [task] = read_and_start(conn, "f")
    fail(conn, task, "retry later")
    msg = task_row(conn, run_id, "a")["message_id"]
    waiting = vt_seconds_from_now(conn, "f", msg)
    assert waiting > 100
    call_run(conn, "pause_run", run_id)
    assert are_parked(conn, "f", run_id) == [False]
    call_run(conn, "unpause_run", run_id)
    assert vt_seconds_from_now(conn, "f", msg) > 100

    call_run(conn, "cancel_run", run_id)
    with pytest.raises(psycopg.errors.RaiseException) as error:
        call_run(conn, "pause_run", run_id)
    assert str(error.value).startswith(f"Run {run_id} cannot be paused: it is cancelled")
    unknown = uuid.uuid4()
    for function in ("pause_run", "unpause_run"):
        with pytest.raises(psycopg.errors.RaiseException, match=f"Run not found: {unknown}"):
            call_run(conn, function, unknown)


def flow_events(conn: psycopg.Connection) -> list[Row]:
    return [e for e in realtime_events(conn) if e["topic"].startswith("pgflow:flow:")]


def test_pause_flow_holds_present_and_new_runs(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    Events(conn)
    before = start_flow(conn, "f", {"n": 1})["run_id"]
    held = start_flow(conn, "f", {"n": 2})["run_id"]
    call_run(conn, "pause_run", held)

    [flow] = fetch(conn, "select * from pgflow.pause_flow('f')")
    assert flow["paused_at"] is not None
    assert fetch(conn, "select * from pgflow.pause_flow('f')") == [flow]
    during = start_flow(conn, "f", {"n": 3})["run_id"]
    assert run_row(conn, during)["status"] == "started"
    assert read_all(conn) == []
    assert are_parked(conn, "f", during) == [True]
    # unpausing the run alone does not show its messages while the flow is paused
    call_run(conn, "pause_run", during)
    call_run(conn, "unpause_run", during)
    assert are_parked(conn, "f", during) == [True]
    assert read_all(conn) == []

    [flow] = fetch(conn, "select * from pgflow.unpause_flow('f')")
    assert flow["paused_at"] is None
    assert fetch(conn, "select * from pgflow.unpause_flow('f')") == [flow]
    got = read_all(conn)
    assert sorted(str(t["run_id"]) for t in got) == sorted([str(before), str(during)])
    assert are_parked(conn, "f", held) == [True], "a paused run stays paused"

    names = [(e["event"], e["topic"], sorted(e["payload"])) for e in flow_events(conn)]
    assert names == [
        ("flow:paused", "pgflow:flow:f", ["event_type", "flow_slug", "paused_at"]),
        ("flow:unpaused", "pgflow:flow:f", ["event_type", "flow_slug", "unpaused_at"]),
    ]
    for function in ("pause_flow", "unpause_flow"):
        with pytest.raises(psycopg.errors.RaiseException, match="Flow not found: nope"):
            conn.execute(f"select pgflow.{function}('nope')")


# -- retry and resume -----------------------------------------------------------------------


def fail_map_run(conn: psycopg.Connection, elements: int, done: int) -> uuid.UUID:
    """A run of chain_with_map whose map got ``elements`` elements, ``done`` of them
    completed, then one failed for good: the run failed."""
    run_id: uuid.UUID = start_flow(conn, "f", {"go": True})["run_id"]
    [a] = read_and_start(conn, "f")
    complete(conn, a, list(range(elements)))
    tasks = sorted(read_all(conn), key=lambda t: t["task_index"])
    for task in tasks[:done]:
        complete(conn, task, task["input"] * 10)
    fail(conn, tasks[done], "element broke")
    assert run_row(conn, run_id)["status"] == "failed"
    return run_id


def test_retry_run_starts_afresh_linked_to_the_source(conn: psycopg.Connection) -> None:
    chain_with_map(conn)
    source = fail_map_run(conn, 3, 2)
    before = run_view(conn, source)
    new = call_run(conn, "retry_run", source)
    assert new["run_id"] != source
    assert new["restart_of_run_id"] == source
    assert new["input"] == {"go": True}
    assert new["status"] == "started"
    assert statuses(conn, new["run_id"]) == {"a": "started", "m": "created", "z": "created"}
    assert task_statuses(conn, new["run_id"]) == {("a", 0): "queued"}
    assert run_view(conn, source) == before

    # a retry of the retry links to it
    call_run(conn, "cancel_run", new["run_id"])
    newer = call_run(conn, "retry_run", new["run_id"])
    assert newer["restart_of_run_id"] == new["run_id"]


def test_resume_run_queues_only_the_missing_map_element(conn: psycopg.Connection) -> None:
    chain_with_map(conn)
    events = Events(conn)
    source = fail_map_run(conn, 4, 3)
    events.take()
    before = run_view(conn, source)

    new = call_run(conn, "resume_run", source)
    run_id = new["run_id"]
    assert new["restart_of_run_id"] == source
    assert new["remaining_steps"] == 2
    assert run_view(conn, source) == before
    rows = states(conn, run_id)
    assert rows["a"]["status"] == "completed"
    assert rows["a"]["output"] == [0, 1, 2, 3]
    assert rows["m"]["status"] == "started"
    assert rows["m"]["remaining_tasks"] == 1
    assert rows["z"]["status"] == "created"
    assert task_statuses(conn, run_id) == {
        ("a", 0): "completed",
        ("m", 0): "completed",
        ("m", 1): "completed",
        ("m", 2): "completed",
        ("m", 3): "queued",
    }
    assert [e["event"] for e in events.take()] == ["run:started", "step:m:started"]

    [missing] = read_all(conn)
    assert (missing["step_slug"], missing["task_index"], missing["input"]) == ("m", 3, 3)
    complete(conn, missing, 30)
    assert states(conn, run_id)["m"]["output"] == [0, 10, 20, 30]
    [z] = read_all(conn)
    assert z["input"] == {"m": [0, 10, 20, 30]}
    complete(conn, z, "done")
    assert run_row(conn, run_id)["status"] == "completed"
    assert run_row(conn, run_id)["output"] == {"z": "done"}


def test_resume_carries_skipped_steps_and_reruns_failed_ones(conn: psycopg.Connection) -> None:
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "s", when_exhausted="skip")
    add_step(conn, "f", "x")
    add_step(conn, "f", "y", ["s", "x"])
    source = start_flow(conn, "f", {})["run_id"]
    tasks = by_key(read_all(conn))
    fail(conn, tasks[("s", 0)], "skipped for good")
    fail(conn, tasks[("x", 0)], "x broke")
    assert run_row(conn, source)["status"] == "failed"

    run_id = call_run(conn, "resume_run", source)["run_id"]
    rows = states(conn, run_id)
    assert (rows["s"]["status"], rows["s"]["skip_reason"]) == ("skipped", "handler_failed")
    assert rows["x"]["status"] == "started"
    assert rows["y"]["remaining_deps"] == 1
    [x] = read_all(conn)
    complete(conn, x, "X")
    [y] = read_all(conn)
    assert y["input"] == {"x": "X"}
    complete(conn, y, "Y")
    assert run_row(conn, run_id)["status"] == "completed"


def test_restart_refuses_runs_that_are_not_failed_or_cancelled(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    run_id = start_flow(conn, "f", {})["run_id"]
    for function in ("retry_run", "resume_run"):
        with pytest.raises(psycopg.errors.RaiseException) as error:
            call_run(conn, function, run_id)
        assert str(error.value).startswith(
            f"Run {run_id} cannot be retried or resumed: it is started (only failed or cancelled runs can)"
        )
        unknown = uuid.uuid4()
        with pytest.raises(psycopg.errors.RaiseException, match=f"Run not found: {unknown}"):
            call_run(conn, function, unknown)
    call_run(conn, "cancel_run", run_id)
    resumed = call_run(conn, "resume_run", run_id)
    assert resumed["restart_of_run_id"] == run_id
    assert task_statuses(conn, resumed["run_id"]) == {("a", 0): "queued"}


# -- handler-chosen retry delay and failure details -----------------------------------------


def fail_with(
    conn: psycopg.Connection,
    task: Row,
    delay: Any,
    kind: str | None = "ValueError",
    tb: str | None = "tb",
) -> Row:
    [row] = fetch(
        conn,
        "select * from pgflow.fail_task_with_details(%s, %s, %s, %s, %s::numeric, %s, %s)",
        task["run_id"],
        task["step_slug"],
        task["task_index"],
        "it broke",
        delay,
        kind,
        tb,
    )
    return row


def test_retry_delay_replaces_the_backoff_and_details_are_kept(conn: psycopg.Connection) -> None:
    create_flow(conn, "f", max_attempts=2, base_delay=100)
    add_step(conn, "f", "a")
    start_flow(conn, "f", {})
    [task] = read_and_start(conn, "f")
    row = fail_with(conn, task, 2.5, "TimeoutError", "x" * 9000)
    assert row["status"] == "queued"
    assert row["error_message"] == "it broke"
    assert row["error_type"] == "TimeoutError"
    assert row["error_traceback"] == "x" * 8000
    assert 1.5 < vt_seconds_from_now(conn, "f", row["message_id"]) <= 2.5

    # exhausted: the delay is ignored, the task fails with its details
    conn.execute("update pgmq.q_f set vt = now()")
    [task] = read_and_start(conn, "f")
    row = fail_with(conn, task, 3000, "KeyError", "trace")
    assert (row["status"], row["error_type"], row["error_traceback"]) == (
        "failed",
        "KeyError",
        "trace",
    )
    assert run_row(conn, task["run_id"])["status"] == "failed"
    assert queue_messages(conn, "f") == []


def test_retry_without_delay_keeps_the_backoff(conn: psycopg.Connection) -> None:
    create_flow(conn, "f", max_attempts=2, base_delay=100)
    add_step(conn, "f", "a")
    start_flow(conn, "f", {})
    [task] = read_and_start(conn, "f")
    row = fail_with(conn, task, None, None, None)
    assert row["status"] == "queued"
    assert row["error_type"] is None
    assert vt_seconds_from_now(conn, "f", row["message_id"]) > 150


@pytest.mark.parametrize("delay", ["-1", "NaN", "Infinity", "-Infinity", "3600.5"])
def test_bad_retry_delays_are_refused_before_anything_changes(
    conn: psycopg.Connection, delay: str
) -> None:
    create_flow(conn, "f", max_attempts=2)
    add_step(conn, "f", "a")
    run_id = start_flow(conn, "f", {})["run_id"]
    [task] = read_and_start(conn, "f")
    before = snapshot(conn, "f", run_id)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as error:
        fail_with(conn, task, delay)
    assert str(error.value).startswith(
        "retry_delay must be a finite number of seconds from 0 to 3600 (got "
    )
    assert snapshot(conn, "f", run_id) == before


# -- idempotent start ------------------------------------------------------------------------


def start_once(
    conn: psycopg.Connection,
    flow: str,
    value: Any,
    key: str | None,
    run_id: uuid.UUID | None = None,
) -> Row:
    [row] = fetch(
        conn,
        "select * from pgflow.start_flow_idempotent(%s, %s, idempotency_key => %s, run_id => %s)",
        flow,
        Jsonb(value),
        key,
        run_id,
    )
    return row


def test_idempotent_start_returns_the_existing_run(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    create_flow(conn, "g")
    add_step(conn, "g", "a")
    first = start_once(conn, "f", {"x": 1}, "order-17")
    assert first["idempotency_key"] == "order-17"
    assert start_once(conn, "f", {"x": 1}, "order-17") == first
    assert scalar(conn, "select count(*) from pgflow.runs") == 1
    assert len(queue_messages(conn, "f")) == 1

    for flow, value in (("f", {"x": 2}), ("g", {"x": 1})):
        with pytest.raises(psycopg.errors.RaiseException) as error:
            start_once(conn, flow, value, "order-17")
        assert str(error.value).startswith(
            f"Run {first['run_id']} (flow f) already exists for this idempotency key or run id"
        )

    chosen = uuid.uuid4()
    by_id = start_once(conn, "f", {"x": 3}, None, chosen)
    assert by_id["run_id"] == chosen
    assert by_id["idempotency_key"] is None
    assert start_once(conn, "f", {"x": 3}, None, chosen) == by_id
    with pytest.raises(psycopg.errors.RaiseException, match="already exists"):
        start_once(conn, "g", {"x": 3}, None, chosen)
    with pytest.raises(psycopg.errors.RaiseException, match="already exists"):
        start_once(conn, "f", {"x": 1}, "order-17", chosen)
    assert scalar(conn, "select count(*) from pgflow.runs") == 2

    with pytest.raises(psycopg.errors.RaiseException) as missing:
        start_once(conn, "f", {}, None)
    assert str(missing.value).startswith(
        "start_flow_idempotent needs an idempotency_key or a run_id"
    )


# -- roles ------------------------------------------------------------------------------------


def test_clients_control_runs_admins_pause_flows_workers_pass_details(
    connect_as: Connect,
) -> None:
    admin = connect_as("pgflow_admin")
    worker = connect_as("pgflow_worker")
    client = connect_as("pgflow_client")
    admin.execute("select pgflow.create_flow('jobs', max_attempts => 2)")
    admin.execute("select pgflow.add_step('jobs', 'only', step_type => 'map')")

    [run] = fetch(client, "select * from pgflow.start_flow_idempotent('jobs', '[1, 2]', 'k')")
    run_id = run["run_id"]
    me = uuid.uuid4()
    worker.execute("select pgflow.register_worker(%s, 'jobs', 'py')", (me,))
    [task, _] = fetch(worker, "select * from pgflow.read_and_start_tasks('jobs', %s, 10, 30)", me)
    [retried] = fetch(
        worker,
        "select * from pgflow.fail_task_with_details(%s, 'only', %s, 'e', 0, 'E', 'tb')",
        run_id,
        task["task_index"],
    )
    assert (retried["status"], retried["error_type"]) == ("queued", "E")

    # the client pauses: the worker's read parks the message (a queue write as the worker)
    fetch(client, "select * from pgflow.pause_run(%s)", run_id)
    assert fetch(worker, "select * from pgflow.read_and_start_tasks('jobs', %s, 10)", me) == []
    fetch(client, "select * from pgflow.unpause_run(%s)", run_id)
    [again] = fetch(worker, "select * from pgflow.read_and_start_tasks('jobs', %s, 10, 30)", me)
    assert again["task_index"] == task["task_index"]

    for refused_query in ("select pgflow.pause_flow('jobs')", "select pgflow.unpause_flow('jobs')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            client.execute(refused_query)
    for refused_query in (
        "select pgflow.cancel_run(gen_random_uuid())",
        "select pgflow.pause_run(gen_random_uuid())",
        "select pgflow.resume_run(gen_random_uuid())",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute(refused_query)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        client.execute("select pgflow.fail_task_with_details(gen_random_uuid(), 'a', 0, 'e')")

    assert fetch(admin, "select paused_at is not null as p from pgflow.pause_flow('jobs')") == [
        {"p": True}
    ]
    fetch(admin, "select * from pgflow.unpause_flow('jobs')")
    [cancelled] = fetch(client, "select * from pgflow.cancel_run(%s)", run_id)
    assert cancelled["status"] == "cancelled"
    [retry] = fetch(client, "select * from pgflow.retry_run(%s)", run_id)
    [resumed] = fetch(admin, "select * from pgflow.resume_run(%s)", run_id)
    assert retry["restart_of_run_id"] == resumed["restart_of_run_id"] == run_id
