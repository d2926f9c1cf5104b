"""Map steps through complete_task: aggregation by task_index (NULL outputs kept), root and
dependent maps end to end, empty arrays cascading, map->map, and type violations."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.engine.helpers import (
    RUN_FAILED_KEYS,
    STEP_COMPLETED_KEYS,
    STEP_FAILED_KEYS,
    Events,
    add_step,
    archive_ids,
    complete,
    complete_sql_null,
    create_flow,
    fetch,
    map_step_run,
    queue_ids,
    read_and_start,
    run_row,
    start_flow,
    step_row,
    task_row,
    tasks,
)


def _by_index(started: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {task["task_index"]: task for task in started}


def test_root_map_aggregates_by_task_index_not_completion_order(
    conn: psycopg.Connection,
) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", [10, 20, 30])
    started = _by_index(read_and_start(conn, "f", qty=3))
    assert {i: t["input"] for i, t in started.items()} == {0: 10, 1: 20, 2: 30}
    events.take()

    for remaining, index in enumerate((2, 0), start=1):
        complete(conn, started[index], {"doubled": started[index]["input"] * 2})
        state = step_row(conn, run["run_id"], "m")
        assert (state["status"], state["remaining_tasks"]) == ("started", 3 - remaining)
        assert events.take() == []
    complete(conn, started[1], {"doubled": 40})

    expected = [{"doubled": 20}, {"doubled": 40}, {"doubled": 60}]
    state = step_row(conn, run["run_id"], "m")
    assert (state["status"], state["output"]) == ("completed", expected)
    assert run_row(conn, run["run_id"])["output"] == {"m": expected}
    taken = events.take()
    assert [event["event"] for event in taken] == ["step:m:completed", "run:completed"]
    assert set(taken[0]["payload"]) == STEP_COMPLETED_KEYS
    assert taken[0]["payload"]["output"] == expected
    assert archive_ids(conn, "f") == {t["msg_id"] for t in started.values()}


def test_null_and_falsy_task_outputs_are_kept(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", ["a", "b", "c", "d"])
    started = _by_index(read_and_start(conn, "f", qty=4))

    complete_sql_null(conn, run["run_id"], "m", 0)
    complete(conn, started[1], None)
    complete(conn, started[2], False)
    complete(conn, started[3], 0)

    state = step_row(conn, run["run_id"], "m")
    assert state["output"] == [None, None, False, 0]


@pytest.mark.parametrize("output", [{"k": 1}, [1, 2], "x"], ids=repr)
def test_one_task_map_outputs_a_one_element_array(conn: psycopg.Connection, output: Any) -> None:
    run, [task] = map_step_run(conn, ["only"], qty=1)

    complete(conn, task, output)

    assert step_row(conn, run["run_id"], "m")["output"] == [output]
    assert run_row(conn, run["run_id"])["output"] == {"m": [output]}


def test_elements_are_passed_raw_including_null(conn: psycopg.Connection) -> None:
    elements: list[Any] = [None, 1, "s", {"a": 1}, [2], False]
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", elements)
    started = _by_index(read_and_start(conn, "f", qty=len(elements)))
    assert [started[i]["input"] for i in range(len(elements))] == elements

    # Each task echoes its element back: the aggregate reproduces the input array.
    for task in started.values():
        complete(conn, task, task["input"])
    assert step_row(conn, run["run_id"], "m")["output"] == elements


def test_root_map_over_empty_array_completes_without_tasks(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")

    run = start_flow(conn, "f", [])

    state = step_row(conn, run["run_id"], "m")
    assert (state["status"], state["initial_tasks"], state["output"]) == ("completed", 0, [])
    assert tasks(conn, run["run_id"]) == []
    assert queue_ids(conn, "f") == set()
    finished = run_row(conn, run["run_id"])
    assert (finished["status"], finished["output"]) == ("completed", {"m": []})
    assert events.names() == ["run:started", "step:m:completed", "run:completed"]


def test_dependent_map_end_to_end(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "m", ["a"], step_type="map")
    add_step(conn, "f", "s", ["m"])
    run = start_flow(conn, "f", {"n": 3})
    assert step_row(conn, run["run_id"], "m")["initial_tasks"] is None
    [root] = read_and_start(conn, "f")
    events.take()

    complete(conn, root, [1, 2, 3])

    mapped = step_row(conn, run["run_id"], "m")
    assert (mapped["status"], mapped["initial_tasks"], mapped["remaining_tasks"]) == (
        "started",
        3,
        3,
    )
    queued = [task_row(conn, run["run_id"], "m", i) for i in range(3)]
    message_ids = [task["message_id"] for task in queued]
    assert message_ids == sorted(message_ids)
    assert set(message_ids) <= queue_ids(conn, "f")
    taken = events.take()
    assert [event["event"] for event in taken] == ["step:a:completed", "step:m:started"]
    assert taken[1]["payload"]["remaining_tasks"] == 3

    started = _by_index(read_and_start(conn, "f", qty=3))
    assert [started[i]["input"] for i in range(3)] == [1, 2, 3]
    for index in (1, 2, 0):
        complete(conn, started[index], started[index]["input"] * 10)
    assert step_row(conn, run["run_id"], "m")["output"] == [10, 20, 30]

    [last] = read_and_start(conn, "f")
    assert (last["step_slug"], last["input"]) == ("s", {"m": [10, 20, 30]})
    complete(conn, last, {"sum": 60})
    finished = run_row(conn, run["run_id"])
    assert (finished["status"], finished["output"]) == ("completed", {"s": {"sum": 60}})


def test_empty_array_cascades_through_chained_maps(conn: psycopg.Connection) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "m1", ["a"], step_type="map")
    add_step(conn, "f", "m2", ["m1"], step_type="map")
    add_step(conn, "f", "s", ["m2"])
    run = start_flow(conn, "f", {})
    [root] = read_and_start(conn, "f")
    events.take()

    complete(conn, root, [])

    for slug in ("m1", "m2"):
        state = step_row(conn, run["run_id"], slug)
        assert (state["status"], state["initial_tasks"], state["output"]) == ("completed", 0, [])
    assert [t["step_slug"] for t in tasks(conn, run["run_id"])] == ["a", "s"]
    assert events.names() == [
        "step:a:completed",
        "step:m1:completed",
        "step:m2:completed",
        "step:s:started",
    ]
    [last] = read_and_start(conn, "f")
    assert last["input"] == {"m2": []}


def test_map_to_map_is_never_type_checked(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m1", step_type="map")
    add_step(conn, "f", "m2", ["m1"], step_type="map")
    run = start_flow(conn, "f", ["p", "q"])
    started = _by_index(read_and_start(conn, "f", qty=2))

    # Non-array (and null) task outputs of a map parent are fine: its output is the array.
    complete(conn, started[0], {"v": "p"})
    complete(conn, started[1], None)

    assert run_row(conn, run["run_id"])["status"] == "started"
    child = step_row(conn, run["run_id"], "m2")
    assert (child["status"], child["initial_tasks"]) == ("started", 2)
    inputs = _by_index(read_and_start(conn, "f", qty=2))
    assert [inputs[i]["input"] for i in range(2)] == [{"v": "p"}, None]


def test_non_array_output_feeding_a_single_step_is_fine(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    run = start_flow(conn, "f", {})
    [task] = read_and_start(conn, "f")

    complete(conn, task, "not an array")

    assert step_row(conn, run["run_id"], "b")["status"] == "started"
    assert run_row(conn, run["run_id"])["status"] == "started"


@pytest.mark.parametrize(
    ("output", "produced"),
    [
        ({"x": 1}, "object"),
        ("text", "string"),
        (5, "number"),
        (True, "boolean"),
        (None, "null"),
        ("SQL NULL", "null"),
    ],
    ids=["object", "string", "number", "boolean", "json-null", "sql-null"],
)
def test_type_violation_fails_the_run(conn: psycopg.Connection, output: Any, produced: str) -> None:
    events = Events(conn)
    create_flow(conn, "f")
    add_step(conn, "f", "a", when_exhausted="skip")
    add_step(conn, "f", "b")
    add_step(conn, "f", "c")
    add_step(conn, "f", "m", ["a"], step_type="map")
    run = start_flow(conn, "f", {})
    # Lowest message ids first: a and b start, c stays queued.
    started = {t["step_slug"]: t for t in read_and_start(conn, "f", qty=2)}
    assert set(started) == {"a", "b"}
    all_messages = queue_ids(conn, "f")
    events.take()

    if output == "SQL NULL":
        returned = complete_sql_null(conn, run["run_id"], "a", 0)
        stored = None
    else:
        returned = complete(conn, started["a"], output)
        stored = output

    task_error = f"[TYPE_VIOLATION] Produced {produced} instead of array"
    step_error = (
        f"[TYPE_VIOLATION] Map step m expects array input but dependency a produced {produced}"
    )
    assert returned == task_row(conn, run["run_id"], "a")
    assert (returned["status"], returned["error_message"]) == ("failed", task_error)
    assert returned["output"] == stored
    assert returned["failed_at"] is not None
    # The jsonb null vs SQL NULL distinction survives.
    typeof = fetch(
        conn,
        "select jsonb_typeof(output) as t from pgflow.step_tasks"
        " where run_id = %s and step_slug = 'a'",
        run["run_id"],
    )[0]["t"]
    assert typeof == (None if output == "SQL NULL" else produced)

    state = step_row(conn, run["run_id"], "a")
    assert (state["status"], state["error_message"], state["output"]) == (
        "failed",
        step_error,
        None,
    )
    mapped = step_row(conn, run["run_id"], "m")
    assert (mapped["status"], mapped["initial_tasks"], mapped["remaining_deps"]) == (
        "created",
        None,
        1,
    )
    failed_run = run_row(conn, run["run_id"])
    assert (failed_run["status"], failed_run["remaining_steps"]) == ("failed", 4)
    assert failed_run["failed_at"] is not None

    statuses = {t["step_slug"]: t["status"] for t in tasks(conn, run["run_id"])}
    assert statuses == {"a": "failed", "b": "cancelled", "c": "cancelled"}
    assert queue_ids(conn, "f") == set()
    assert archive_ids(conn, "f") == all_messages

    run_event, step_event = events.take()
    assert run_event["event"] == "run:failed"
    assert set(run_event["payload"]) == RUN_FAILED_KEYS - {"error_message"}
    assert run_event["payload"]["status"] == "failed"
    assert step_event["event"] == "step:a:failed"
    assert set(step_event["payload"]) == STEP_FAILED_KEYS
    assert step_event["payload"]["error_message"] == step_error

    # A replayed completion under the failed run changes nothing and says nothing.
    replay = conn.execute(
        "select status from pgflow.complete_task(%s, 'a', 0, %s)",
        (run["run_id"], Jsonb([1])),
    ).fetchone()
    assert replay == ("failed",)
    assert step_row(conn, run["run_id"], "m")["initial_tasks"] is None
    assert events.take() == []
