"""start_flow, start_flow_with_states, get_run_with_states, start_ready_steps and maybe_complete_run.

Runs, step states, tasks and the messages in pgmq.q_<flow> right after a run starts;
the root-map input errors; runs that complete inside start_flow; the deprecated
poll_for_tasks stub.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.engine.helpers import (
    add_step,
    archived_messages,
    complete,
    create_flow,
    fail_run_by_hand,
    fetch,
    queue_messages,
    read_and_start,
    run_count,
    run_row,
    scalar,
    single_step_run,
    start_flow,
    states,
    statuses,
    tasks,
    vt_seconds_from_now,
)


def test_run_row_counts_every_step_and_keeps_the_input(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    add_step(conn, "f", "c", ["a", "b"])

    run = start_flow(conn, "f", {"x": [1, 2]})

    assert run["flow_slug"] == "f"
    assert run["status"] == "started"
    assert run["input"] == {"x": [1, 2]}
    assert run["remaining_steps"] == 3
    assert run["output"] is None
    assert run["completed_at"] is None
    assert run["failed_at"] is None
    assert isinstance(run["run_id"], uuid.UUID)
    assert run_row(conn, run["run_id"]) == run


def test_given_run_id_is_used(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    chosen = uuid.uuid4()

    rows = fetch(conn, "select * from pgflow.start_flow('f', '{}'::jsonb, %s)", chosen)

    assert [row["run_id"] for row in rows] == [chosen]
    assert set(states(conn, chosen)) == {"a"}


def test_step_states_per_step_type(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "root_map", step_type="map")
    add_step(conn, "f", "single", ["root_map"])
    add_step(conn, "f", "dep_map", ["root_map"], step_type="map")
    add_step(conn, "f", "join", ["single", "dep_map"])

    run = start_flow(conn, "f", [10, 20, 30])
    by_slug = states(conn, run["run_id"])

    assert {slug: row["initial_tasks"] for slug, row in by_slug.items()} == {
        "root_map": 3,
        "single": 1,
        "dep_map": None,
        "join": 1,
    }
    assert {slug: row["remaining_deps"] for slug, row in by_slug.items()} == {
        "root_map": 0,
        "single": 1,
        "dep_map": 1,
        "join": 2,
    }
    assert statuses(conn, run["run_id"]) == {
        "root_map": "started",
        "single": "created",
        "dep_map": "created",
        "join": "created",
    }
    root = by_slug["root_map"]
    assert root["remaining_tasks"] == 3
    assert root["started_at"] is not None
    for slug in ("single", "dep_map", "join"):
        assert by_slug[slug]["remaining_tasks"] is None
        assert by_slug[slug]["started_at"] is None
        assert by_slug[slug]["flow_slug"] == "f"


def test_root_single_step_queues_one_exact_message(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")

    run = start_flow(conn, "f", {"hello": "world"})

    messages = queue_messages(conn, "f")
    assert [m["message"] for m in messages] == [
        {"flow_slug": "f", "run_id": str(run["run_id"]), "step_slug": "a", "task_index": 0}
    ]
    assert messages[0]["read_ct"] == 0
    assert vt_seconds_from_now(conn, "f", messages[0]["msg_id"]) <= 0
    (task,) = tasks(conn, run["run_id"])
    assert task["status"] == "queued"
    assert task["message_id"] == messages[0]["msg_id"]
    assert task["attempts_count"] == 0
    assert task["task_index"] == 0
    assert task["started_at"] is None


def test_root_map_message_ids_ascend_with_task_index(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")

    run = start_flow(conn, "f", ["a", None, {"k": 1}, 4])

    messages = queue_messages(conn, "f")
    assert [m["message"]["task_index"] for m in messages] == [0, 1, 2, 3]
    by_index = {t["task_index"]: t["message_id"] for t in tasks(conn, run["run_id"])}
    assert [by_index[i] for i in range(4)] == [m["msg_id"] for m in messages]
    assert sorted(by_index.values()) == [by_index[i] for i in range(4)]
    assert {t["status"] for t in tasks(conn, run["run_id"])} == {"queued"}


def test_ready_steps_are_sent_in_step_slug_order(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "zeta")
    add_step(conn, "f", "alpha", step_type="map")
    add_step(conn, "f", "mid")

    start_flow(conn, "f", [1, 2])

    sent = [
        (m["message"]["step_slug"], m["message"]["task_index"]) for m in queue_messages(conn, "f")
    ]
    assert sent == [("alpha", 0), ("alpha", 1), ("mid", 0), ("zeta", 0)]


def test_start_delay_applies_to_the_first_send(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "late", start_delay=30)
    add_step(conn, "f", "now")

    run = start_flow(conn, "f", {})

    by_step = {t["step_slug"]: t["message_id"] for t in tasks(conn, run["run_id"])}
    assert 28 <= vt_seconds_from_now(conn, "f", by_step["late"]) <= 30
    assert vt_seconds_from_now(conn, "f", by_step["now"]) <= 0
    # the delayed message is invisible to a worker
    started = read_and_start(conn, "f", qty=5)
    assert [t["step_slug"] for t in started] == ["now"]


@pytest.mark.parametrize(
    ("flow_input", "type_name"),
    [({"a": 1}, "object"), ("text", "string"), (5, "number"), (True, "boolean"), (None, "null")],
)
def test_root_map_needs_an_array(conn: psycopg.Connection, flow_input: Any, type_name: str) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")

    with pytest.raises(psycopg.errors.RaiseException) as error:
        conn.execute("select pgflow.start_flow('f', %s)", (Jsonb(flow_input),))

    assert error.value.diag.message_primary == (
        f"Flow f has root map steps but input is not an array (got {type_name})"
    )
    assert error.value.sqlstate == "P0001"
    assert run_count(conn) == 0
    assert queue_messages(conn, "f") == []


def test_root_map_refuses_sql_null(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")

    with pytest.raises(psycopg.errors.RaiseException) as error:
        conn.execute("select pgflow.start_flow('f', null)")

    assert error.value.diag.message_primary == "Flow f has root map steps but input is NULL"
    assert run_count(conn) == 0


def test_dependent_map_does_not_need_an_array_input(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "m", ["a"], step_type="map")

    run = start_flow(conn, "f", {"not": "an array"})

    assert statuses(conn, run["run_id"]) == {"a": "started", "m": "created"}


def test_unknown_flow_violates_the_runs_foreign_key(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as error:
        conn.execute("select pgflow.start_flow('nope', '{}'::jsonb)")

    assert error.value.diag.constraint_name == "runs_flow_slug_fkey"
    assert run_count(conn) == 0


def test_sql_null_input_without_root_map_violates_not_null(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")

    with pytest.raises(psycopg.errors.NotNullViolation) as error:
        conn.execute("select pgflow.start_flow('f', null)")

    assert error.value.diag.column_name == "input"
    assert run_count(conn) == 0


def test_empty_root_map_completes_the_run_inside_start_flow(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")

    run = start_flow(conn, "f", [])

    assert run["status"] == "completed"
    assert run["remaining_steps"] == 0
    assert run["output"] == {"m": []}
    assert run["completed_at"] is not None
    state = states(conn, run["run_id"])["m"]
    assert state["status"] == "completed"
    assert state["output"] == []
    assert state["initial_tasks"] == 0
    assert state["remaining_tasks"] == 0
    assert tasks(conn, run["run_id"]) == []
    assert queue_messages(conn, "f") == []


def test_flow_without_steps_completes_with_null_output(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")

    run = start_flow(conn, "f", {"x": 1})

    assert run["status"] == "completed"
    assert run["remaining_steps"] == 0
    assert run["output"] is None


def test_start_flow_returns_exactly_one_row(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b")

    rows = fetch(conn, "select * from pgflow.start_flow('f', '{}'::jsonb)")

    assert len(rows) == 1
    assert rows[0]["remaining_steps"] == 2


def test_start_flow_with_states_returns_run_and_steps(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    chosen = uuid.uuid4()

    result = scalar(
        conn,
        "select pgflow.start_flow_with_states('f', %s, %s)",
        Jsonb({"n": 1}),
        chosen,
    )

    assert set(result) == {"run", "steps"}
    assert result["run"]["run_id"] == str(chosen)
    assert result["run"]["status"] == "started"
    assert result["run"]["input"] == {"n": 1}
    assert result["run"]["remaining_steps"] == 2
    steps = {s["step_slug"]: s for s in result["steps"]}
    assert set(steps) == {"a", "b"}
    assert steps["a"]["status"] == "started"
    assert steps["a"]["remaining_tasks"] == 1
    assert steps["b"]["status"] == "created"
    # the same shape as to_jsonb of the rows
    expected = scalar(
        conn,
        "select to_jsonb(s) from pgflow.step_states as s where run_id = %s and step_slug = 'b'",
        chosen,
    )
    assert steps["b"] == expected


def test_get_run_with_states_reflects_progress(conn: psycopg.Connection) -> None:
    run, task = single_step_run(conn, {})
    complete(conn, task, {"done": True})

    result = scalar(conn, "select pgflow.get_run_with_states(%s)", run["run_id"])

    assert result["run"]["status"] == "completed"
    assert result["run"]["output"] == {"a": {"done": True}}
    assert [s["status"] for s in result["steps"]] == ["completed"]
    assert result["steps"][0]["output"] == {"done": True}


def test_get_run_with_states_of_unknown_run_is_null(conn: psycopg.Connection) -> None:
    assert scalar(conn, "select pgflow.get_run_with_states(%s)", uuid.uuid4()) is None


def test_start_ready_steps_does_nothing_on_a_failed_run(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    run = start_flow(conn, "f", {})
    fail_run_by_hand(conn, run["run_id"])
    conn.execute(
        "update pgflow.step_states set remaining_deps = 0 where run_id = %s and step_slug = 'b'",
        (run["run_id"],),
    )

    conn.execute("select pgflow.start_ready_steps(%s)", (run["run_id"],))

    assert statuses(conn, run["run_id"])["b"] == "created"
    assert [m["message"]["step_slug"] for m in queue_messages(conn, "f")] == ["a"]


def test_start_ready_steps_starts_steps_made_ready(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    run = start_flow(conn, "f", {})
    conn.execute(
        "update pgflow.step_states set remaining_deps = 0 where run_id = %s and step_slug = 'b'",
        (run["run_id"],),
    )

    conn.execute("select pgflow.start_ready_steps(%s)", (run["run_id"],))
    conn.execute("select pgflow.start_ready_steps(%s)", (run["run_id"],))

    b = states(conn, run["run_id"])["b"]
    assert b["status"] == "started"
    assert b["remaining_tasks"] == 1
    # a second call sends nothing more
    assert [m["message"]["step_slug"] for m in queue_messages(conn, "f")] == ["a", "b"]


def test_maybe_complete_run_waits_for_remaining_steps(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    run = start_flow(conn, "f", {})

    conn.execute("select pgflow.maybe_complete_run(%s)", (run["run_id"],))

    assert run_row(conn, run["run_id"])["status"] == "started"


def test_maybe_complete_run_outputs_completed_leaves_only(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "root")
    add_step(conn, "f", "leaf_done", ["root"])
    add_step(conn, "f", "leaf_skipped", ["root"])
    run = start_flow(conn, "f", {})
    run_id = run["run_id"]
    # drive the states directly, as pgflow's own tests do
    conn.execute(
        "update pgflow.step_states set status = 'completed', remaining_tasks = 0,"
        " completed_at = now(), output = %s"
        " where run_id = %s and step_slug in ('root', 'leaf_done')",
        (Jsonb({"v": 1}), run_id),
    )
    conn.execute(
        "update pgflow.step_states set status = 'skipped', skip_reason = 'condition_unmet',"
        " skipped_at = now() where run_id = %s and step_slug = 'leaf_skipped'",
        (run_id,),
    )
    conn.execute("update pgflow.runs set remaining_steps = 0 where run_id = %s", (run_id,))

    conn.execute("select pgflow.maybe_complete_run(%s)", (run_id,))
    first = run_row(conn, run_id)
    conn.execute("select pgflow.maybe_complete_run(%s)", (run_id,))

    assert first["status"] == "completed"
    assert first["output"] == {"leaf_done": {"v": 1}}
    assert first["completed_at"] is not None
    # a second call changes nothing
    assert run_row(conn, run_id) == first


def test_poll_for_tasks_is_a_deprecated_stub(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    start_flow(conn, "f", {})
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))

    rows = conn.execute("select * from pgflow.poll_for_tasks('f', 30, 10)").fetchall()

    assert rows == []
    assert len(notices) == 1
    assert "deprecated" in notices[0]
    # nothing was read or started
    (message,) = queue_messages(conn, "f")
    assert message["read_ct"] == 0
    assert {t["status"] for t in fetch(conn, "select status from pgflow.step_tasks")} == {"queued"}
    assert archived_messages(conn, "f") == []
