"""The cascades: conditions (if/ifNot with skip, skip-cascade and fail), taskless steps
(empty maps, maps of skipped dependencies), _cascade_force_skip_steps, _cancel_run_tasks
and the safety limits of both loops.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.engine.helpers import (
    add_step,
    archived_messages,
    complete,
    create_flow,
    fetch,
    queue_messages,
    read_and_start,
    run_count,
    run_row,
    scalar,
    start_flow,
    states,
    statuses,
    task_statuses,
    tasks,
)

# -- conditions ---------------------------------------------------------------------------


def test_met_root_condition_starts_the_step(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a", required_input_pattern={"plan": "pro"})

    run = start_flow(conn, "f", {"plan": "pro", "extra": 1})

    assert statuses(conn, run["run_id"]) == {"a": "started"}
    assert [m["message"]["step_slug"] for m in queue_messages(conn, "f")] == ["a"]


def test_unmet_root_condition_skips_the_step(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a", required_input_pattern={"plan": "pro"})
    add_step(conn, "f", "b")

    run = start_flow(conn, "f", {"plan": "free"})

    a = states(conn, run["run_id"])["a"]
    assert a["status"] == "skipped"
    assert a["skip_reason"] == "condition_unmet"
    assert a["skipped_at"] is not None
    assert a["remaining_tasks"] is None
    assert a["error_message"] is None
    assert statuses(conn, run["run_id"])["b"] == "started"
    assert run_row(conn, run["run_id"])["remaining_steps"] == 1
    assert [t["step_slug"] for t in tasks(conn, run["run_id"])] == ["b"]


def test_forbidden_pattern_skips_when_contained(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "not_banned", forbidden_input_pattern={"banned": True})

    skipped = start_flow(conn, "f", {"banned": True, "name": "x"})
    allowed = start_flow(conn, "f", {"banned": False})

    assert statuses(conn, skipped["run_id"]) == {"not_banned": "skipped"}
    assert statuses(conn, allowed["run_id"]) == {"not_banned": "started"}


def test_both_patterns_must_hold(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(
        conn,
        "f",
        "a",
        required_input_pattern={"role": "admin"},
        forbidden_input_pattern={"locked": True},
    )

    results = {
        name: statuses(conn, start_flow(conn, "f", flow_input)["run_id"])["a"]
        for name, flow_input in {
            "both_hold": {"role": "admin", "locked": False},
            "required_missing": {"role": "user"},
            "forbidden_present": {"role": "admin", "locked": True},
        }.items()
    }

    assert results == {
        "both_hold": "started",
        "required_missing": "skipped",
        "forbidden_present": "skipped",
    }


def test_run_whose_only_step_is_skipped_completes_with_null_output(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a", required_input_pattern={"x": 1})

    run = start_flow(conn, "f", {"x": 2})

    assert run["status"] == "completed"
    assert run["output"] is None
    assert run["remaining_steps"] == 0
    assert queue_messages(conn, "f") == []


def test_dependent_condition_tests_dependency_outputs(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "check")
    add_step(conn, "f", "on_ok", ["check"], required_input_pattern={"check": {"ok": True}})
    add_step(conn, "f", "on_error", ["check"], required_input_pattern={"check": {"ok": False}})
    run = start_flow(conn, "f", {"ok": False})
    (task,) = read_and_start(conn, "f")

    complete(conn, task, {"ok": True, "detail": "fine"})

    assert statuses(conn, run["run_id"]) == {
        "check": "completed",
        "on_ok": "started",
        "on_error": "skipped",
    }
    assert run_row(conn, run["run_id"])["remaining_steps"] == 1


def test_skipped_dependency_is_absent_from_a_condition_input(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a", required_input_pattern={"run_a": True})
    # b only runs when a's output is absent
    add_step(conn, "f", "b", ["a"], forbidden_input_pattern={"a": None})
    add_step(conn, "f", "c", ["a"], required_input_pattern={"a": None})

    run = start_flow(conn, "f", {"run_a": False})

    assert statuses(conn, run["run_id"]) == {"a": "skipped", "b": "started", "c": "skipped"}


def test_skip_unblocks_children_and_gives_map_children_no_tasks(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a", required_input_pattern={"go": True})
    add_step(conn, "f", "after", ["a"])
    add_step(conn, "f", "each", ["a"], step_type="map")
    add_step(conn, "f", "last", ["each"])

    run = start_flow(conn, "f", {"go": False})

    by_slug = states(conn, run["run_id"])
    assert {slug: row["status"] for slug, row in by_slug.items()} == {
        "a": "skipped",
        "after": "started",
        "each": "completed",
        "last": "started",
    }
    assert by_slug["after"]["remaining_deps"] == 0
    assert by_slug["each"]["initial_tasks"] == 0
    assert by_slug["each"]["output"] == []
    # the step after the empty map gets its [] as input
    records = read_and_start(conn, "f", qty=5)
    assert {r["step_slug"]: r["input"] for r in records} == {"after": {}, "last": {"each": []}}


def test_chained_unmet_conditions_resolve_in_one_call(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a", required_input_pattern={"go": True})
    # b's input is {} (a skipped), so b's condition is unmet as well
    add_step(conn, "f", "b", ["a"], required_input_pattern={"a": {}})
    add_step(conn, "f", "c", ["b"])

    run = start_flow(conn, "f", {"go": False})

    assert statuses(conn, run["run_id"]) == {"a": "skipped", "b": "skipped", "c": "started"}
    assert states(conn, run["run_id"])["b"]["skip_reason"] == "condition_unmet"
    assert run_row(conn, run["run_id"])["remaining_steps"] == 1


def test_unmet_condition_with_fail_fails_the_run(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "other")
    add_step(conn, "f", "guard", required_input_pattern={"valid": True}, when_unmet="fail")
    add_step(conn, "f", "next", ["guard"])

    run = start_flow(conn, "f", {"valid": False})

    assert run["status"] == "failed"
    assert run["failed_at"] is not None
    assert run["completed_at"] is None
    assert run["remaining_steps"] == 3
    guard = states(conn, run["run_id"])["guard"]
    assert guard["status"] == "failed"
    assert guard["error_message"] == "Condition not met"
    assert guard["failed_at"] is not None
    assert guard["skip_reason"] is None
    # nothing was started or sent
    assert statuses(conn, run["run_id"]) == {
        "other": "created",
        "guard": "failed",
        "next": "created",
    }
    assert tasks(conn, run["run_id"]) == []
    assert queue_messages(conn, "f") == []


def test_fail_wins_over_skip_and_the_first_fail_step_fails(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "skipper", required_input_pattern={"x": 1})
    add_step(conn, "f", "first", required_input_pattern={"x": 1}, when_unmet="fail")
    add_step(conn, "f", "second", required_input_pattern={"x": 1}, when_unmet="fail")

    run = start_flow(conn, "f", {})

    assert statuses(conn, run["run_id"]) == {
        "skipper": "created",
        "first": "failed",
        "second": "created",
    }


def test_condition_failure_after_completion_cancels_running_tasks(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "slow", step_type="map")
    add_step(conn, "f", "guard", ["a"], required_input_pattern={"a": "ok"}, when_unmet="fail")
    run = start_flow(conn, "f", [1, 2, 3])
    run_id = run["run_id"]
    started = read_and_start(conn, "f", qty=2)
    (task_a,) = [t for t in started if t["step_slug"] == "a"]

    complete(conn, task_a, "not ok")

    assert run_row(conn, run_id)["status"] == "failed"
    assert states(conn, run_id)["guard"]["status"] == "failed"
    assert task_statuses(conn, run_id) == {
        ("a", 0): "completed",
        ("slow", 0): "cancelled",
        ("slow", 1): "cancelled",
        ("slow", 2): "cancelled",
    }
    assert queue_messages(conn, "f") == []
    assert len(archived_messages(conn, "f")) == 4


def test_skip_cascade_skips_the_step_and_its_dependants(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a", required_input_pattern={"go": True}, when_unmet="skip-cascade")
    add_step(conn, "f", "b", ["a"])
    add_step(conn, "f", "c", ["b"])
    add_step(conn, "f", "independent")
    add_step(conn, "f", "join", ["c", "independent"])

    run = start_flow(conn, "f", {"go": False})

    by_slug = states(conn, run["run_id"])
    assert {slug: (row["status"], row["skip_reason"]) for slug, row in by_slug.items()} == {
        "a": ("skipped", "condition_unmet"),
        "b": ("skipped", "dependency_skipped"),
        "c": ("skipped", "dependency_skipped"),
        "join": ("skipped", "dependency_skipped"),
        "independent": ("started", None),
    }
    assert run_row(conn, run["run_id"])["remaining_steps"] == 1
    # remaining_deps is left as it was
    assert by_slug["join"]["remaining_deps"] == 2
    (task,) = read_and_start(conn, "f")
    complete(conn, task, "done")
    finished = run_row(conn, run["run_id"])
    assert finished["status"] == "completed"
    # independent is not a leaf, join (the only leaf) was skipped
    assert finished["output"] is None


def test_cascade_resolve_conditions_on_terminal_runs(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"], required_input_pattern={"never": True}, when_unmet="fail")
    run = start_flow(conn, "f", {})
    run_id = run["run_id"]
    conn.execute(
        "update pgflow.step_states set remaining_deps = 0 where run_id = %s and step_slug = 'b'",
        (run_id,),
    )

    conn.execute(
        "update pgflow.runs set status = 'completed', completed_at = now() where run_id = %s",
        (run_id,),
    )
    assert scalar(conn, "select pgflow.cascade_resolve_conditions(%s)", run_id) is True
    conn.execute(
        "update pgflow.runs set status = 'failed', completed_at = null, failed_at = now()"
        " where run_id = %s",
        (run_id,),
    )
    assert scalar(conn, "select pgflow.cascade_resolve_conditions(%s)", run_id) is False
    # b's unmet condition was never acted on
    assert statuses(conn, run_id)["b"] == "created"


def test_cascade_resolve_conditions_returns_true_when_nothing_is_unmet(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a", required_input_pattern={"x": 1})
    run = start_flow(conn, "f", {"x": 1})

    assert scalar(conn, "select pgflow.cascade_resolve_conditions(%s)", run["run_id"]) is True
    assert statuses(conn, run["run_id"]) == {"a": "started"}


def _conditional_chain(conn: psycopg.Connection, length: int) -> None:
    """A chain of steps whose conditions are all unmet (each skip readies the next)."""
    create_flow(conn, "chain")
    previous: list[str] = []
    for i in range(length):
        add_step(conn, "chain", f"s{i}", previous, required_input_pattern={"never": True})
        previous = [f"s{i}"]


def test_fifty_condition_rounds_are_allowed(conn: psycopg.Connection) -> None:
    _conditional_chain(conn, 50)

    run = start_flow(conn, "chain", {})

    assert run["status"] == "completed"
    assert set(statuses(conn, run["run_id"]).values()) == {"skipped"}


def test_condition_cascade_safety_limit(conn: psycopg.Connection) -> None:
    _conditional_chain(conn, 51)

    with pytest.raises(psycopg.errors.RaiseException) as error:
        conn.execute("select pgflow.start_flow('chain', '{}'::jsonb)")

    assert error.value.diag.message_primary == (
        "cascade_resolve_conditions exceeded safety limit of 50 iterations"
    )
    assert run_count(conn) == 0


# -- taskless steps -----------------------------------------------------------------------


def _empty_map_chain(conn: psycopg.Connection, length: int) -> None:
    """A root map followed by ``length - 1`` maps, each over the previous one."""
    create_flow(conn, "maps")
    add_step(conn, "maps", "m0", step_type="map")
    for i in range(1, length):
        add_step(conn, "maps", f"m{i}", [f"m{i - 1}"], step_type="map")


def test_empty_maps_cascade_through_a_chain(conn: psycopg.Connection) -> None:
    _empty_map_chain(conn, 3)
    add_step(conn, "maps", "report", ["m2"])

    run = start_flow(conn, "maps", [])

    by_slug = states(conn, run["run_id"])
    for slug in ("m0", "m1", "m2"):
        row = by_slug[slug]
        assert (row["status"], row["output"], row["initial_tasks"], row["remaining_tasks"]) == (
            "completed",
            [],
            0,
            0,
        )
        assert row["started_at"] == row["completed_at"]
    assert by_slug["report"]["status"] == "started"
    assert run_row(conn, run["run_id"])["remaining_steps"] == 1
    (record,) = read_and_start(conn, "maps")
    assert record["input"] == {"m2": []}


def test_single_dependency_outputting_empty_array_completes_the_map(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "list")
    add_step(conn, "f", "each", ["list"], step_type="map")
    add_step(conn, "f", "again", ["each"], step_type="map")
    run = start_flow(conn, "f", {})
    (task,) = read_and_start(conn, "f")

    complete(conn, task, [])

    finished = run_row(conn, run["run_id"])
    assert finished["status"] == "completed"
    assert finished["output"] == {"again": []}
    assert {t["step_slug"] for t in tasks(conn, run["run_id"])} == {"list"}


def test_cascade_complete_taskless_steps_counts_what_it_completes(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "m1", ["a"], step_type="map")
    add_step(conn, "f", "m2", ["m1"], step_type="map")
    add_step(conn, "f", "b", ["m2"])
    run = start_flow(conn, "f", {})
    run_id = run["run_id"]
    assert scalar(conn, "select pgflow.cascade_complete_taskless_steps(%s)", run_id) == 0

    # as if a had completed with []
    conn.execute(
        "update pgflow.step_states set remaining_deps = 0, initial_tasks = 0"
        " where run_id = %s and step_slug = 'm1'",
        (run_id,),
    )
    completed = scalar(conn, "select pgflow.cascade_complete_taskless_steps(%s)", run_id)

    assert completed == 2
    by_slug = states(conn, run_id)
    assert (by_slug["m1"]["status"], by_slug["m2"]["status"]) == ("completed", "completed")
    assert by_slug["m2"]["initial_tasks"] == 0
    assert by_slug["b"]["remaining_deps"] == 0
    assert by_slug["b"]["status"] == "created"
    assert run_row(conn, run_id)["remaining_steps"] == 2


def test_fifty_taskless_waves_are_allowed(conn: psycopg.Connection) -> None:
    _empty_map_chain(conn, 50)

    run = start_flow(conn, "maps", [])

    assert run["status"] == "completed"
    assert run["output"] == {"m49": []}


def test_taskless_cascade_safety_limit_rolls_back_start_flow(conn: psycopg.Connection) -> None:
    _empty_map_chain(conn, 51)

    with pytest.raises(psycopg.errors.RaiseException) as error:
        conn.execute("select pgflow.start_flow('maps', '[]'::jsonb)")

    assert error.value.diag.message_primary == (
        "Cascade loop exceeded safety limit of 50 iterations"
    )
    assert run_count(conn) == 0


# -- _cascade_force_skip_steps --------------------------------------------------------------


def test_force_skip_of_unknown_run(conn: psycopg.Connection) -> None:
    missing = uuid.uuid4()

    with pytest.raises(psycopg.errors.RaiseException) as error:
        conn.execute(
            "select pgflow._cascade_force_skip_steps(%s, 'a', 'handler_failed')", (missing,)
        )

    assert error.value.diag.message_primary == f"Run not found: {missing}"


def test_force_skip_skips_started_step_downstream_and_their_tasks(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")
    add_step(conn, "f", "left", ["m"])
    add_step(conn, "f", "right", ["m"])
    add_step(conn, "f", "join", ["left", "right"])
    add_step(conn, "f", "other")
    run = start_flow(conn, "f", [1, 2, 3])
    run_id = run["run_id"]
    # start one task of m (lowest msg id first), leave the others queued
    (started,) = read_and_start(conn, "f")
    assert started["step_slug"] == "m"
    deps_before = {slug: row["remaining_deps"] for slug, row in states(conn, run_id).items()}

    count = scalar(
        conn, "select pgflow._cascade_force_skip_steps(%s, 'm', 'handler_failed')", run_id
    )

    assert count == 4
    by_slug = states(conn, run_id)
    assert {slug: (row["status"], row["skip_reason"]) for slug, row in by_slug.items()} == {
        "m": ("skipped", "handler_failed"),
        "left": ("skipped", "dependency_skipped"),
        "right": ("skipped", "dependency_skipped"),
        "join": ("skipped", "dependency_skipped"),
        "other": ("started", None),
    }
    assert by_slug["m"]["remaining_tasks"] is None
    assert all(by_slug[s]["skipped_at"] is not None for s in ("m", "left", "right", "join"))
    assert {slug: row["remaining_deps"] for slug, row in by_slug.items()} == deps_before
    run_after = run_row(conn, run_id)
    assert run_after["remaining_steps"] == 1
    assert run_after["status"] == "started"
    assert task_statuses(conn, run_id) == {
        ("m", 0): "skipped",
        ("m", 1): "skipped",
        ("m", 2): "skipped",
        ("other", 0): "queued",
    }
    # m's messages went to the archive; other's message stays queued
    assert [m["message"]["step_slug"] for m in queue_messages(conn, "f")] == ["other"]
    assert sorted(m["message"]["task_index"] for m in archived_messages(conn, "f")) == [0, 1, 2]


def test_force_skip_leaves_finished_steps_alone_and_repeats_as_noop(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    add_step(conn, "f", "c", ["b"])
    run = start_flow(conn, "f", {})
    run_id = run["run_id"]
    (task,) = read_and_start(conn, "f")
    complete(conn, task, "a done")

    first = scalar(
        conn, "select pgflow._cascade_force_skip_steps(%s, 'a', 'handler_failed')", run_id
    )
    after_first = (states(conn, run_id), run_row(conn, run_id))
    second = scalar(
        conn, "select pgflow._cascade_force_skip_steps(%s, 'a', 'handler_failed')", run_id
    )

    assert first == 2
    by_slug = after_first[0]
    assert by_slug["a"]["status"] == "completed"
    assert by_slug["a"]["output"] == "a done"
    assert (by_slug["b"]["status"], by_slug["b"]["skip_reason"]) == (
        "skipped",
        "dependency_skipped",
    )
    assert (by_slug["c"]["status"], by_slug["c"]["skip_reason"]) == (
        "skipped",
        "dependency_skipped",
    )
    assert second == 0
    assert (states(conn, run_id), run_row(conn, run_id)) == after_first
    # the force skip does not complete the run itself
    assert after_first[1]["remaining_steps"] == 0
    assert after_first[1]["status"] == "started"


# -- _cancel_run_tasks ----------------------------------------------------------------------


def test_cancel_run_tasks_cancels_unfinished_tasks_only(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", [1, 2, 3])
    run_id = run["run_id"]
    done, running = read_and_start(conn, "f", qty=2)
    complete(conn, done, "ok")
    other_run = start_flow(conn, "f", [9])

    cancelled = scalar(conn, "select pgflow._cancel_run_tasks(%s)", run_id)

    assert cancelled == 2
    by_index = {t["task_index"]: t["status"] for t in tasks(conn, run_id)}
    assert by_index == {
        done["task_index"]: "completed",
        running["task_index"]: "cancelled",
        2: "cancelled",
    }
    assert [t["status"] for t in tasks(conn, other_run["run_id"])] == ["queued"]
    remaining = queue_messages(conn, "f")
    assert [m["message"]["run_id"] for m in remaining] == [str(other_run["run_id"])]
    archived = {
        (m["message"]["run_id"], m["message"]["task_index"]) for m in archived_messages(conn, "f")
    }
    assert archived == {(str(run_id), 0), (str(run_id), 1), (str(run_id), 2)}
    assert scalar(conn, "select pgflow._cancel_run_tasks(%s)", run_id) == 0


def test_cancel_run_tasks_skips_tasks_without_message(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    run = start_flow(conn, "f", {})
    conn.execute(
        "update pgflow.step_tasks set message_id = null where run_id = %s", (run["run_id"],)
    )

    assert scalar(conn, "select pgflow._cancel_run_tasks(%s)", run["run_id"]) == 1
    assert [t["status"] for t in tasks(conn, run["run_id"])] == ["cancelled"]
    assert archived_messages(conn, "f") == []
    assert len(fetch(conn, "select * from pgmq.q_f")) == 1
