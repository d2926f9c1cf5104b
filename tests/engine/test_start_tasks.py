"""start_tasks: phase two of polling.

Which messages start a task (and which are ignored), the task row changes, the handler
input per step kind, flow_input, and the visibility extension to the step's timeout + 2 s
(pgflow 0.14.1 never runs its set_vt_batch call; we do, see difference 4).
"""

from __future__ import annotations

import uuid

import psycopg

from tests.engine.helpers import (
    DEFAULT_WORKER,
    Row,
    add_step,
    complete,
    create_flow,
    ensure_worker,
    fail_run_by_hand,
    fetch,
    queue_messages,
    read_and_start,
    start_flow,
    start_tasks,
    states,
    tasks,
    vt_seconds_from_now,
)


def start(conn: psycopg.Connection, flow: str, msg_ids: list[int] | None) -> list[Row]:
    """start_tasks for explicit message ids with the default worker."""
    ensure_worker(conn, flow)
    return start_tasks(conn, flow, msg_ids, DEFAULT_WORKER)


def msg_ids(conn: psycopg.Connection, flow: str) -> list[int]:
    """Ids of the messages in the flow's queue."""
    return [m["msg_id"] for m in queue_messages(conn, flow)]


def test_root_single_task_starts_with_flow_input(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    run = start_flow(conn, "f", {"user": 7})
    (msg_id,) = msg_ids(conn, "f")

    records = start(conn, "f", [msg_id])

    assert records == [
        {
            "flow_slug": "f",
            "run_id": run["run_id"],
            "step_slug": "a",
            "input": {},
            "msg_id": msg_id,
            "task_index": 0,
            "flow_input": {"user": 7},
        }
    ]
    (task,) = tasks(conn, run["run_id"])
    assert task["status"] == "started"
    assert task["attempts_count"] == 1
    assert task["started_at"] is not None
    assert task["last_worker_id"] == DEFAULT_WORKER


def test_root_map_tasks_get_their_elements_raw(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")
    elements = [{"k": 1}, None, "s", 4, [5]]
    start_flow(conn, "f", elements)

    records = start(conn, "f", msg_ids(conn, "f"))

    by_index = {r["task_index"]: r for r in records}
    assert sorted(by_index) == [0, 1, 2, 3, 4]
    assert [by_index[i]["input"] for i in range(5)] == elements
    assert {r["flow_input"] for r in records} == {None}


def test_dependent_single_gets_completed_dependency_outputs(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b")
    add_step(conn, "f", "c", ["a", "b"])
    start_flow(conn, "f", {"flow": True})
    for task in read_and_start(conn, "f", qty=2):
        complete(conn, task, {"from": task["step_slug"]})

    (record,) = read_and_start(conn, "f")

    assert record["step_slug"] == "c"
    assert record["input"] == {"a": {"from": "a"}, "b": {"from": "b"}}
    assert record["flow_input"] is None


def test_dependent_single_leaves_out_skipped_dependencies(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", required_input_pattern={"run_b": True})
    add_step(conn, "f", "c", ["a", "b"])
    run = start_flow(conn, "f", {"run_b": False})
    assert states(conn, run["run_id"])["b"]["status"] == "skipped"
    (task_a,) = read_and_start(conn, "f")
    complete(conn, task_a, 0)

    (record,) = read_and_start(conn, "f")

    assert record["step_slug"] == "c"
    # the falsy output 0 is passed as given
    assert record["input"] == {"a": 0}


def test_single_whose_dependencies_were_all_skipped_gets_empty_object(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a", required_input_pattern={"go": True})
    add_step(conn, "f", "b", ["a"])

    start_flow(conn, "f", {"go": False})
    (record,) = read_and_start(conn, "f")

    assert record["step_slug"] == "b"
    assert record["input"] == {}
    assert record["flow_input"] is None


def test_dependent_map_tasks_get_elements_of_the_dependency_output(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "list")
    add_step(conn, "f", "each", ["list"], step_type="map")
    start_flow(conn, "f", {})
    (producer,) = read_and_start(conn, "f")
    complete(conn, producer, ["x", None, {"y": 2}])

    records = read_and_start(conn, "f", qty=10)

    by_index = {r["task_index"]: r["input"] for r in records}
    assert by_index == {0: "x", 1: None, 2: {"y": 2}}
    assert {r["flow_input"] for r in records} == {None}
    assert {r["step_slug"] for r in records} == {"each"}


def test_started_message_stays_hidden_for_step_timeout_plus_two(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f", timeout=60)
    add_step(conn, "f", "short", timeout=10)
    add_step(conn, "f", "default")
    run = start_flow(conn, "f", {})

    read_and_start(conn, "f", vt=1, qty=2)

    by_step = {t["step_slug"]: t["message_id"] for t in tasks(conn, run["run_id"])}
    assert 11 <= vt_seconds_from_now(conn, "f", by_step["short"]) <= 12
    assert 61 <= vt_seconds_from_now(conn, "f", by_step["default"]) <= 62
    # not readable again although the read asked for a 1 s visibility timeout
    assert conn.execute("select * from pgmq.read('f', 1, 10)").fetchall() == []


def test_ids_that_start_nothing_are_ignored(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    create_flow(conn, "other")
    add_step(conn, "other", "x")
    start_flow(conn, "f", {})
    start_flow(conn, "other", {})
    (own,) = msg_ids(conn, "f")

    assert start(conn, "f", None) == []
    assert start(conn, "f", []) == []
    assert start(conn, "f", [own + 1000]) == []
    assert [t["status"] for t in fetch(conn, "select status from pgflow.step_tasks")] == [
        "queued",
        "queued",
    ]
    before = queue_messages(conn, "f")

    assert len(start(conn, "f", [own, own + 1000])) == 1
    # a re-read message whose task already started does nothing
    assert start(conn, "f", [own]) == []
    (task,) = fetch(conn, "select * from pgflow.step_tasks where flow_slug = 'f'")
    assert task["attempts_count"] == 1
    assert before[0]["vt"] < queue_messages(conn, "f")[0]["vt"]


def test_other_flow_message_id_is_ignored(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    create_flow(conn, "g")
    add_step(conn, "g", "b")
    # burn a message id in g's queue so the ids of the two queues differ
    conn.execute("select pgmq.send('g', '{}'::jsonb)")
    start_flow(conn, "f", {})
    run_g = start_flow(conn, "g", {})
    (g_task,) = tasks(conn, run_g["run_id"])

    assert start(conn, "f", [g_task["message_id"]]) == []
    assert tasks(conn, run_g["run_id"])[0]["status"] == "queued"


def test_tasks_of_failed_run_or_unstarted_step_are_ignored(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b")
    run = start_flow(conn, "f", {})
    by_step = {t["step_slug"]: t["message_id"] for t in tasks(conn, run["run_id"])}
    # step b is no longer started (e.g. skipped by hand), the run still runs
    conn.execute(
        "update pgflow.step_states set status = 'skipped', skip_reason = 'condition_unmet',"
        " skipped_at = now(), remaining_tasks = null where run_id = %s and step_slug = 'b'",
        (run["run_id"],),
    )
    assert start(conn, "f", [by_step["b"]]) == []

    fail_run_by_hand(conn, run["run_id"])
    assert start(conn, "f", [by_step["a"]]) == []
    assert {t["status"] for t in tasks(conn, run["run_id"])} == {"queued"}


def test_tasks_of_several_runs_start_in_one_call(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    first = start_flow(conn, "f", {"n": 1})
    second = start_flow(conn, "f", {"n": 2})

    records = start(conn, "f", msg_ids(conn, "f"))

    assert {r["run_id"]: r["flow_input"] for r in records} == {
        first["run_id"]: {"n": 1},
        second["run_id"]: {"n": 2},
    }


def test_worker_id_is_recorded_per_call(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", [1, 2])
    other = ensure_worker(conn, "f", uuid.uuid4())
    ids = msg_ids(conn, "f")

    start(conn, "f", ids[:1])
    start_tasks(conn, "f", ids[1:], other)

    assert [t["last_worker_id"] for t in tasks(conn, run["run_id"])] == [DEFAULT_WORKER, other]


def test_requeued_task_counts_another_attempt(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    run = start_flow(conn, "f", {})
    (msg_id,) = msg_ids(conn, "f")
    start(conn, "f", [msg_id])
    # put the task back as a retry does
    conn.execute(
        "update pgflow.step_tasks set status = 'queued', started_at = null where run_id = %s",
        (run["run_id"],),
    )

    (record,) = start(conn, "f", [msg_id])

    assert record["msg_id"] == msg_id
    assert tasks(conn, run["run_id"])[0]["attempts_count"] == 2


def test_falsy_dependency_output_reaches_the_child(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    start_flow(conn, "f", {})
    (task,) = read_and_start(conn, "f")
    complete(conn, task, False)

    (record,) = read_and_start(conn, "f")

    assert record["input"] == {"a": False}


def test_start_tasks_json_input_is_jsonb(conn: psycopg.Connection) -> None:
    """The record's input and flow_input columns are jsonb (typed composite)."""
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    start_flow(conn, "f", [1])
    ensure_worker(conn, "f")
    (msg_id,) = msg_ids(conn, "f")

    row = conn.execute(
        "select pg_typeof(input)::text, pg_typeof(flow_input)::text, pg_typeof(msg_id)::text"
        " from pgflow.start_tasks('f', %s, %s)",
        ([msg_id], DEFAULT_WORKER),
    ).fetchone()

    assert row == ("jsonb", "jsonb", "bigint")
