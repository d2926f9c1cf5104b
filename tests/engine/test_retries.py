"""Retries and exhaustion: exponential backoff (vt - enqueued_at vs calculate_retry_delay,
capped), effective options, max_attempts 0/1, and when_exhausted fail/skip/skip-cascade."""

from __future__ import annotations

import psycopg
import pytest

from tests.engine.helpers import (
    CASCADE_SKIPPED_KEYS,
    RUN_COMPLETED_KEYS,
    STEP_SKIPPED_KEYS,
    Events,
    add_step,
    archive_ids,
    calculate_retry_delay,
    complete,
    create_flow,
    fail,
    make_visible,
    queue_ids,
    read_and_start,
    retry_delay_seconds,
    run_row,
    start_flow,
    step_row,
    task_row,
    tasks,
    ts,
)


def test_backoff_doubles_with_each_attempt(conn: psycopg.Connection) -> None:
    base_delay, max_attempts = 2, 4
    create_flow(conn, "f", max_attempts=max_attempts, base_delay=base_delay)
    add_step(conn, "f", "a")
    run = start_flow(conn, "f", {})

    for attempt in range(1, max_attempts):
        [task] = read_and_start(conn, "f")
        assert task_row(conn, run["run_id"], "a")["attempts_count"] == attempt
        fail(conn, task, f"attempt {attempt}")
        delay = retry_delay_seconds(conn, "f", task["msg_id"])
        assert delay == calculate_retry_delay(conn, base_delay, attempt)
        # attempts_count already counts the failed attempt: the first retry waits 2 x base.
        assert delay == base_delay * 2**attempt
        assert task_row(conn, run["run_id"], "a")["status"] == "queued"
        make_visible(conn, "f")

    [last] = read_and_start(conn, "f")
    final = fail(conn, last, "last attempt")
    assert (final["status"], final["attempts_count"]) == ("failed", max_attempts)
    assert last["msg_id"] in archive_ids(conn, "f")
    assert run_row(conn, run["run_id"])["status"] == "failed"


def test_step_options_override_the_flow(conn: psycopg.Connection) -> None:
    create_flow(conn, "f", max_attempts=5, base_delay=7)
    add_step(conn, "f", "a", max_attempts=2, base_delay=3)
    run = start_flow(conn, "f", {})

    [task] = read_and_start(conn, "f")
    fail(conn, task, "first")
    assert retry_delay_seconds(conn, "f", task["msg_id"]) == calculate_retry_delay(conn, 3, 1)
    make_visible(conn, "f")
    [task] = read_and_start(conn, "f")
    assert fail(conn, task, "second")["status"] == "failed"
    assert step_row(conn, run["run_id"], "a")["status"] == "failed"


def test_retry_delay_is_capped_at_an_hour(conn: psycopg.Connection) -> None:
    base_delay = 1000
    create_flow(conn, "f", max_attempts=10, base_delay=base_delay)
    add_step(conn, "f", "a")
    start_flow(conn, "f", {})

    delays = []
    for _ in range(3):
        [task] = read_and_start(conn, "f")
        fail(conn, task, "again")
        delays.append(retry_delay_seconds(conn, "f", task["msg_id"]))
        make_visible(conn, "f")

    assert delays == [calculate_retry_delay(conn, base_delay, n) for n in (1, 2, 3)]
    assert delays == [min(base_delay * 2**n, 3600) for n in (1, 2, 3)]


@pytest.mark.parametrize("max_attempts", [0, 1])
@pytest.mark.parametrize("level", ["flow", "step"])
def test_zero_or_one_attempt_means_no_retry(
    conn: psycopg.Connection, level: str, max_attempts: int
) -> None:
    if level == "flow":
        create_flow(conn, "f", max_attempts=max_attempts)
        add_step(conn, "f", "a")
    else:
        create_flow(conn, "f", max_attempts=5)
        add_step(conn, "f", "a", max_attempts=max_attempts)
    run = start_flow(conn, "f", {})
    [task] = read_and_start(conn, "f")

    returned = fail(conn, task, "once")

    assert (returned["status"], returned["attempts_count"]) == ("failed", 1)
    assert queue_ids(conn, "f") == set()
    assert step_row(conn, run["run_id"], "a")["status"] == "failed"
    assert run_row(conn, run["run_id"])["status"] == "failed"


def test_when_exhausted_fail_sends_events_only_at_exhaustion(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f", max_attempts=2)
    add_step(conn, "f", "a", when_exhausted="fail")
    run = start_flow(conn, "f", {})
    events.take()

    [task] = read_and_start(conn, "f")
    fail(conn, task, "first")
    assert events.take() == []
    make_visible(conn, "f")
    [task] = read_and_start(conn, "f")
    fail(conn, task, "second")

    taken = events.take()
    assert [event["event"] for event in taken] == ["step:a:failed", "run:failed"]
    assert taken[0]["payload"]["error_message"] == "second"
    assert taken[1]["payload"]["error_message"] == "second"
    assert run_row(conn, run["run_id"])["status"] == "failed"


def test_when_exhausted_skip_lets_the_run_go_on(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "a", when_exhausted="skip")
    add_step(conn, "f", "b", ["a"])
    add_step(conn, "f", "m", ["a"], step_type="map")
    run = start_flow(conn, "f", {})
    [task] = read_and_start(conn, "f")
    events.take()

    returned = fail(conn, task, "handler broke")

    assert returned["status"] == "failed"
    assert task["msg_id"] in archive_ids(conn, "f")
    skipped = step_row(conn, run["run_id"], "a")
    assert skipped["status"] == "skipped"
    assert skipped["skip_reason"] == "handler_failed"
    assert skipped["error_message"] == "handler broke"
    assert skipped["remaining_tasks"] is None
    assert skipped["skipped_at"] is not None
    # A skipped dependency is an empty array for the map child...
    mapped = step_row(conn, run["run_id"], "m")
    assert (mapped["status"], mapped["initial_tasks"], mapped["output"]) == ("completed", 0, [])
    # ...and left out of the single child's input.
    child = step_row(conn, run["run_id"], "b")
    assert (child["status"], child["remaining_deps"]) == ("started", 0)
    assert run_row(conn, run["run_id"])["remaining_steps"] == 1

    taken = events.take()
    assert [event["event"] for event in taken] == [
        "step:a:skipped",
        "step:m:completed",
        "step:b:started",
    ]
    payload = taken[0]["payload"]
    assert set(payload) == STEP_SKIPPED_KEYS | {"error_message"}
    assert payload["event_type"] == "step:skipped"
    assert payload["status"] == "skipped"
    assert payload["skip_reason"] == "handler_failed"
    assert payload["error_message"] == "handler broke"
    assert ts(payload["skipped_at"]) == skipped["skipped_at"]

    [child_task] = read_and_start(conn, "f")
    assert child_task["input"] == {}
    complete(conn, child_task, "fine")
    finished = run_row(conn, run["run_id"])
    assert (finished["status"], finished["output"]) == ("completed", {"b": "fine", "m": []})


def test_skip_keeps_the_other_parents_in_a_child_input(conn: psycopg.Connection) -> None:
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", when_exhausted="skip")
    add_step(conn, "f", "c", ["a", "b"])
    run = start_flow(conn, "f", {})
    started = {t["step_slug"]: t for t in read_and_start(conn, "f", qty=2)}
    complete(conn, started["a"], {"from": "a"})
    assert step_row(conn, run["run_id"], "c")["status"] == "created"

    fail(conn, started["b"], "nope")

    [child_task] = read_and_start(conn, "f")
    assert (child_task["step_slug"], child_task["input"]) == ("c", {"a": {"from": "a"}})


def test_when_exhausted_skip_cascade_skips_downstream(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "a", when_exhausted="skip-cascade")
    add_step(conn, "f", "b", ["a"])
    add_step(conn, "f", "c", ["b"])
    add_step(conn, "f", "d")
    run = start_flow(conn, "f", {})
    started = {t["step_slug"]: t for t in read_and_start(conn, "f", qty=2)}
    events.take()

    fail(conn, started["a"], "gave up")

    states = {slug: step_row(conn, run["run_id"], slug) for slug in ("a", "b", "c", "d")}
    reasons = {slug: (row["status"], row["skip_reason"]) for slug, row in states.items()}
    assert reasons == {
        "a": ("skipped", "handler_failed"),
        "b": ("skipped", "dependency_skipped"),
        "c": ("skipped", "dependency_skipped"),
        "d": ("started", None),
    }
    assert states["a"]["error_message"] == "gave up"
    assert started["a"]["msg_id"] in archive_ids(conn, "f")
    current = run_row(conn, run["run_id"])
    assert (current["status"], current["remaining_steps"]) == ("started", 1)

    taken = events.take()
    assert [event["event"] for event in taken] == [
        "step:a:skipped",
        "step:b:skipped",
        "step:c:skipped",
    ]
    assert set(taken[0]["payload"]) == STEP_SKIPPED_KEYS | {"error_message"}
    assert set(taken[1]["payload"]) == CASCADE_SKIPPED_KEYS
    assert taken[1]["payload"]["skip_reason"] == "dependency_skipped"

    complete(conn, started["d"], 4)
    finished = run_row(conn, run["run_id"])
    # Skipped leaves are left out of the run output.
    assert (finished["status"], finished["output"]) == ("completed", {"d": 4})
    assert [event["event"] for event in events.take()] == ["step:d:completed", "run:completed"]


def test_skipped_map_step_skips_its_unfinished_tasks(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "m", step_type="map", when_exhausted="skip")
    run = start_flow(conn, "f", ["a", "b", "c", "d"])
    started = {t["task_index"]: t for t in read_and_start(conn, "f", qty=3)}
    complete(conn, started[2], "done")
    all_messages = {t["message_id"] for t in tasks(conn, run["run_id"])}
    events.take()

    fail(conn, started[0], "bad element")

    statuses = [t["status"] for t in tasks(conn, run["run_id"])]
    assert statuses == ["failed", "skipped", "completed", "skipped"]
    assert queue_ids(conn, "f") == set()
    assert archive_ids(conn, "f") == all_messages
    finished = run_row(conn, run["run_id"])
    assert (finished["status"], finished["output"]) == ("completed", None)
    assert [event["event"] for event in events.take()] == ["step:m:skipped", "run:completed"]


@pytest.mark.parametrize("mode", ["skip", "skip-cascade"])
def test_flow_whose_only_step_is_skipped_completes_with_null_output(
    conn: psycopg.Connection, mode: str
) -> None:
    events = Events(conn)
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "only", when_exhausted=mode)
    run = start_flow(conn, "f", {"x": 1})
    [task] = read_and_start(conn, "f")
    events.take()

    fail(conn, task, "broken")

    finished = run_row(conn, run["run_id"])
    assert (finished["status"], finished["output"], finished["remaining_steps"]) == (
        "completed",
        None,
        0,
    )
    assert finished["completed_at"] is not None
    taken = events.take()
    assert [event["event"] for event in taken] == ["step:only:skipped", "run:completed"]
    assert set(taken[1]["payload"]) == RUN_COMPLETED_KEYS
    assert taken[1]["payload"]["output"] is None
    assert task["msg_id"] in archive_ids(conn, "f")
