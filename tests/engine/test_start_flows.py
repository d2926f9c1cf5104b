"""start_flows: many runs of one flow in one call.

The reference is start_flow called once per input: for every kind of flow (single steps,
chains, root and dependent maps, empty maps, conditions that skip or fail, start delays,
a flow without steps) start_flows leaves the same runs, step states, tasks, queue messages
and events, in input order. Bad input fails the whole call and leaves nothing behind.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.engine.concurrency import StepDef, build_flow
from tests.engine.helpers import (
    Row,
    fetch,
    install_realtime_stub,
    queue_messages,
    run_count,
    scalar,
    start_flow,
)

# A clock value in a row or payload: only whether it is set matters here.
TIMESTAMPS = {"started_at", "completed_at", "failed_at", "skipped_at", "created_at", "queued_at"}


def start_flows(conn: psycopg.Connection, flow: str, inputs: list[Any]) -> list[Row]:
    """pgflow.start_flows (Python None as JSON null); returns the run rows in the order
    they came back."""
    return fetch(
        conn,
        "select * from pgflow.start_flows(%s, %s::jsonb[])",
        flow,
        [Jsonb(i) for i in inputs],
    )


def _plain(value: Any, runs: dict[str, int], flow: str) -> Any:
    """A row or payload with run ids as input positions, the flow slug as 'F' and
    timestamps as whether they are set."""
    if isinstance(value, dict):
        return {
            key: (item is not None)
            if key in TIMESTAMPS
            else ("F" if key == "flow_slug" else _plain(item, runs, flow))
            for key, item in value.items()
            if key not in ("message_id", "msg_id")
        }
    if isinstance(value, list):
        return [_plain(item, runs, flow) for item in value]
    if isinstance(value, uuid.UUID) or (isinstance(value, str) and value in runs):
        return runs.get(str(value), value)
    return value


def view(conn: psycopg.Connection, flow: str, run_ids: list[uuid.UUID]) -> dict[str, Any]:
    """Everything the runs' start left, with run ids replaced by their input position."""
    runs = {str(run_id): pos for pos, run_id in enumerate(run_ids)}
    ids = list(run_ids)
    messages = fetch(
        conn, f'select msg_id, vt, enqueued_at, message from pgmq."q_{flow}" order by msg_id'
    )
    rank = {m["msg_id"]: pos for pos, m in enumerate(messages)}
    tasks = fetch(
        conn,
        "select * from pgflow.step_tasks where run_id = any(%s) order by run_id, step_slug, task_index",
        ids,
    )
    return {
        "runs": sorted(
            (
                _plain(r, runs, flow)
                for r in fetch(conn, "select * from pgflow.runs where run_id = any(%s)", ids)
            ),
            key=lambda r: r["run_id"],
        ),
        "states": sorted(
            (
                _plain(s, runs, flow)
                for s in fetch(conn, "select * from pgflow.step_states where run_id = any(%s)", ids)
            ),
            key=lambda s: (s["run_id"], s["step_slug"]),
        ),
        "tasks": sorted(
            (
                {
                    **_plain(t, runs, flow),
                    "message": _plain(
                        next(m["message"] for m in messages if m["msg_id"] == t["message_id"]),
                        runs,
                        flow,
                    ),
                }
                for t in tasks
            ),
            key=lambda t: (t["run_id"], t["step_slug"], t["task_index"]),
        ),
        # Start delays: seconds between enqueueing and visibility, per task.
        "delays": sorted(
            (
                runs[m["message"]["run_id"]],
                m["message"]["step_slug"],
                m["message"]["task_index"],
                round((m["vt"] - m["enqueued_at"]).total_seconds()),
            )
            for m in messages
        ),
        # Message ids ascend with task_index within a step, and with the input order.
        "ascending": all(
            rank[a["message_id"]] < rank[b["message_id"]]
            for a, b in itertools.pairwise(tasks)
            if a["step_slug"] == b["step_slug"] and a["run_id"] == b["run_id"]
        ),
        "events": {
            runs[str(run_id)]: [
                (e["event"], _plain(e["payload"], runs, flow))
                for e in fetch(
                    conn,
                    "select event, payload from realtime.messages where topic = %s order by seq",
                    f"pgflow:run:{run_id}",
                )
            ]
            for run_id in ids
        },
    }


FLOWS: dict[str, tuple[list[StepDef], list[Any]]] = {
    "single": ([StepDef("a")], [{"n": 1}, {"n": 2}, {"n": 3}]),
    "chain": ([StepDef("a"), StepDef("b", ("a",)), StepDef("c", ("b",))], [1, "x", None]),
    "fan": (
        [StepDef("a"), StepDef("b"), StepDef("c", ("a", "b"))],
        [{"k": 1}, [1, 2], False],
    ),
    "root_map": (
        [StepDef("m", step_type="map"), StepDef("after", ("m",))],
        [[1, 2, 3], [], ["x"], [], [{"a": 1}, None]],
    ),
    "only_empty_maps": ([StepDef("m", step_type="map")], [[], []]),
    "map_of_map": (
        [StepDef("m", step_type="map"), StepDef("mm", ("m",), step_type="map"), StepDef("s")],
        [[1], [2, 3]],
    ),
    "conditions": (
        [
            StepDef("gate", required={"go": True}, when_unmet="skip-cascade"),
            StepDef("after", ("gate",)),
            StepDef("free"),
        ],
        [{"go": True}, {"go": False}, {"go": True}],
    ),
    "condition_fails": (
        [StepDef("gate", forbidden={"stop": True}, when_unmet="fail"), StepDef("b")],
        [{"stop": False}, {"stop": True}, {}],
    ),
    "no_steps": ([], [{"x": 1}, {"x": 2}]),
}


@pytest.mark.parametrize("shape", sorted(FLOWS))
def test_start_flows_equals_start_flow_per_input(conn: psycopg.Connection, shape: str) -> None:
    steps, inputs = FLOWS[shape]
    install_realtime_stub(conn)
    build_flow(conn, "one", steps)
    build_flow(conn, "many", steps)

    singles = [start_flow(conn, "one", flow_input)["run_id"] for flow_input in inputs]
    batch = start_flows(conn, "many", inputs)

    assert [r["input"] for r in batch] == inputs
    assert [r["flow_slug"] for r in batch] == ["many"] * len(inputs)
    assert len({r["run_id"] for r in batch}) == len(inputs)
    assert view(conn, "many", [r["run_id"] for r in batch]) == view(conn, "one", singles)
    assert view(conn, "many", [r["run_id"] for r in batch])["ascending"]


def test_start_delays_apply_per_step(conn: psycopg.Connection) -> None:
    install_realtime_stub(conn)
    for flow in ("one", "many"):
        build_flow(conn, flow, [StepDef("now"), StepDef("m", step_type="map")])
        conn.execute("select pgflow.add_step(%s, 'later', start_delay => 7)", (flow,))
    inputs: list[Any] = [[1, 2], [3]]
    singles = [start_flow(conn, "one", flow_input)["run_id"] for flow_input in inputs]
    batch = [r["run_id"] for r in start_flows(conn, "many", inputs)]

    many = view(conn, "many", batch)
    assert many == view(conn, "one", singles)
    assert {(d[1], d[3]) for d in many["delays"]} == {("now", 0), ("m", 0), ("later", 7)}


def test_runs_come_back_in_input_order_with_ascending_messages(conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("a")])
    inputs = [{"i": i} for i in range(50)]

    runs = start_flows(conn, "f", inputs)

    assert [r["input"] for r in runs] == inputs
    by_run = {m["message"]["run_id"]: m["msg_id"] for m in queue_messages(conn, "f")}
    ids = [by_run[str(r["run_id"])] for r in runs]
    assert ids == sorted(ids)


def test_an_empty_array_starts_nothing(conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("a")])
    assert start_flows(conn, "f", []) == []
    assert run_count(conn) == 0


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([[1], None, "x"], "Flow f has root map steps but input is not an array (got null)"),
        ([[1], "x", None], "Flow f has root map steps but input is not an array (got string)"),
        ([[], {"a": 1}], "Flow f has root map steps but input is not an array (got object)"),
    ],
)
def test_a_bad_input_fails_the_whole_call(
    conn: psycopg.Connection, inputs: list[Any], message: str
) -> None:
    build_flow(conn, "f", [StepDef("m", step_type="map")])
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        start_flows(conn, "f", inputs)
    assert caught.value.diag.message_primary == message
    assert run_count(conn) == 0
    assert scalar(conn, "select count(*) from pgflow.step_states") == 0
    assert queue_messages(conn, "f") == []


def test_a_sql_null_input_of_a_root_map_flow_is_refused(conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("m", step_type="map")])
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        conn.execute("select * from pgflow.start_flows('f', array['[1]'::jsonb, null, '2'])")
    assert caught.value.diag.message_primary == "Flow f has root map steps but input is NULL"
    assert run_count(conn) == 0


def test_null_inputs_array_is_refused(conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("a")])
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        conn.execute("select * from pgflow.start_flows('f', null)")
    assert caught.value.diag.message_primary == (
        "start_flows needs a one-dimensional array of flow inputs, got NULL"
    )
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        conn.execute("select * from pgflow.start_flows('f', '{{1},{2}}'::jsonb[])")
    assert caught.value.diag.message_primary == (
        "start_flows needs a one-dimensional array of flow inputs, got 2 dimensions"
    )
    assert run_count(conn) == 0


def test_a_null_input_without_root_map_is_a_not_null_violation(conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("a")])
    # A JSON null is an input like any other; a SQL NULL is not.
    conn.execute("select * from pgflow.start_flows('f', array['{}'::jsonb, 'null'::jsonb])")
    assert run_count(conn) == 2
    with pytest.raises(psycopg.errors.NotNullViolation) as caught:
        conn.execute("select * from pgflow.start_flows('f', array['{}'::jsonb, null::jsonb])")
    assert caught.value.diag.column_name == "input"
    assert run_count(conn) == 2


def test_unknown_flow_fails_on_runs_flow_slug_fkey(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught:
        start_flows(conn, "nope", [{}])
    assert caught.value.diag.constraint_name == "runs_flow_slug_fkey"


def test_start_flow_still_takes_a_chosen_run_id(conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("m", step_type="map")])
    chosen = uuid.uuid4()
    [run] = fetch(conn, "select * from pgflow.start_flow('f', '[1, 2]', %s)", chosen)
    assert run["run_id"] == chosen
    assert scalar(conn, "select count(*) from pgflow.step_tasks where run_id = %s", chosen) == 2
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("select * from pgflow.start_flow('f', '[1]', %s)", (chosen,))


def test_tasks_still_need_their_step_state(conn: psycopg.Connection) -> None:
    """The one foreign key left on step_tasks covers the two dropped ones: a task needs a
    step state, which needs its run and flow."""
    build_flow(conn, "f", [StepDef("a")])
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught:
        conn.execute(
            "insert into pgflow.step_tasks (flow_slug, run_id, step_slug, status)"
            " values ('f', %s, 'a', 'queued')",
            (uuid.uuid4(),),
        )
    assert caught.value.diag.constraint_name == "step_tasks_run_id_step_slug_fkey"
