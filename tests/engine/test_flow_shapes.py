"""Flow shapes: _get_flow_shape, _compare_flow_shapes, _create_flow_from_shape, ensure_flow_compiled.

Texts and their order follow the contract's section 3.1; ensure_flow_compiled is exercised
in its four statuses, in local mode, with allow_data_loss and under concurrency.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.engine.helpers import fetch, queue_messages, scalar, shape_step, start_flow

LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"

Shape = dict[str, Any]


def get_shape(conn: psycopg.Connection, flow: str) -> Shape:
    value: Shape = scalar(conn, "select pgflow._get_flow_shape(%s)", flow)
    return value


def compare(conn: psycopg.Connection, local: Any, db: Any) -> list[str]:
    value: list[str] = scalar(
        conn,
        "select pgflow._compare_flow_shapes(%s, %s)",
        None if local is None else Jsonb(local),
        None if db is None else Jsonb(db),
    )
    return value


def ensure(
    conn: psycopg.Connection, flow: str, shape: Shape, allow_data_loss: bool | None = False
) -> dict[str, Any]:
    value: dict[str, Any] = scalar(
        conn,
        "select pgflow.ensure_flow_compiled(flow_slug => %s, shape => %s, allow_data_loss => %s)",
        flow,
        Jsonb(shape),
        allow_data_loss,
    )
    return value


def define_sample(conn: psycopg.Connection, flow: str = "sample") -> None:
    """A flow using every shape feature, defined with create_flow/add_step."""
    conn.execute("select pgflow.create_flow(%s, 4, 2, 30)", (flow,))
    conn.execute("select pgflow.add_step(%s, 'fetch', timeout => 5)", (flow,))
    conn.execute(
        "select pgflow.add_step(%s, 'items', array['fetch'], step_type => 'map',"
        " when_exhausted => 'skip-cascade')",
        (flow,),
    )
    conn.execute(
        "select pgflow.add_step(%s, 'report', array['items', 'fetch'],"
        " required_input_pattern => %s, forbidden_input_pattern => %s,"
        " when_unmet => 'fail', when_exhausted => 'skip', max_attempts => 1)",
        (flow, Jsonb({"fetch": {"status": "active"}}), Jsonb({"fetch": {"muted": True}})),
    )


SAMPLE_SHAPE: Shape = {
    "steps": [
        shape_step("fetch"),
        shape_step("items", ["fetch"], step_type="map", when_exhausted="skip-cascade"),
        shape_step(
            "report",
            ["fetch", "items"],
            when_unmet="fail",
            when_exhausted="skip",
            required={"fetch": {"status": "active"}},
            forbidden={"fetch": {"muted": True}},
        ),
    ]
}


# -- _get_flow_shape ---------------------------------------------------------------------


def test_shape_of_a_flow(conn: psycopg.Connection) -> None:
    define_sample(conn)
    assert get_shape(conn, "sample") == SAMPLE_SHAPE


def test_shape_of_unknown_and_empty_flows(conn: psycopg.Connection) -> None:
    assert get_shape(conn, "nope") == {"steps": []}
    conn.execute("select pgflow.create_flow('empty')")
    assert get_shape(conn, "empty") == {"steps": []}


def test_shape_ignores_options_and_other_flows(conn: psycopg.Connection) -> None:
    define_sample(conn, "first")
    conn.execute("select pgflow.create_flow('second')")
    conn.execute("select pgflow.add_step('second', 'fetch', max_attempts => 9, start_delay => 3)")
    conn.execute(
        "select pgflow.add_step('second', 'items', array['fetch'], step_type => 'map',"
        " when_exhausted => 'skip-cascade', base_delay => 7)"
    )
    conn.execute(
        "select pgflow.add_step('second', 'report', array['fetch', 'items'],"
        " required_input_pattern => %s, forbidden_input_pattern => %s,"
        " when_unmet => 'fail', when_exhausted => 'skip', timeout => 100)",
        (Jsonb({"fetch": {"status": "active"}}), Jsonb({"fetch": {"muted": True}})),
    )
    assert get_shape(conn, "first") == get_shape(conn, "second") == SAMPLE_SHAPE


def test_shape_sorts_dependencies_by_code_point(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    for slug in ["b", "a", "B", "_z"]:
        conn.execute("select pgflow.add_step('f', %s)", (slug,))
    conn.execute("select pgflow.add_step('f', 'join', array['b', 'a', '_z', 'B'])")
    joined = get_shape(conn, "f")["steps"][4]
    assert joined["dependencies"] == sorted(["b", "a", "_z", "B"])
    assert [s["slug"] for s in get_shape(conn, "f")["steps"]] == ["b", "a", "B", "_z", "join"]


def test_shape_pattern_text_form(conn: psycopg.Connection) -> None:
    """Patterns are jsonb, so _compare_flow_shapes prints them in jsonb's text form."""
    conn.execute("select pgflow.create_flow('f')")
    conn.execute(
        "select pgflow.add_step('f', 'a', required_input_pattern => '{\"status\": \"active\"}')"
    )
    text = conn.execute(
        "select pgflow._get_flow_shape('f') -> 'steps' -> 0 ->> 'requiredInputPattern'"
    ).fetchone()
    assert text == ('{"value": {"status": "active"}, "defined": true}',)


# -- _compare_flow_shapes ----------------------------------------------------------------


def test_equal_shapes_have_no_differences(conn: psycopg.Connection) -> None:
    define_sample(conn)
    assert compare(conn, SAMPLE_SHAPE, get_shape(conn, "sample")) == []
    assert compare(conn, {"steps": []}, {"steps": []}) == []


def test_dependency_order_does_not_matter(conn: psycopg.Connection) -> None:
    local = {"steps": [shape_step("a"), shape_step("b"), shape_step("c", ["b", "a"])]}
    db = {"steps": [shape_step("a"), shape_step("b"), shape_step("c", ["a", "b"])]}
    assert compare(conn, local, db) == []


def test_extra_step_in_first_shape(conn: psycopg.Connection) -> None:
    local = {"steps": [shape_step("a"), shape_step("b"), shape_step("c")]}
    db = {"steps": [shape_step("a")]}
    assert compare(conn, local, db) == [
        "Step count differs: 3 vs 1",
        "Step at index 1: missing in second shape (first has 'b')",
        "Step at index 2: missing in second shape (first has 'c')",
    ]


def test_extra_step_in_second_shape(conn: psycopg.Connection) -> None:
    assert compare(conn, {"steps": []}, {"steps": [shape_step("a")]}) == [
        "Step count differs: 0 vs 1",
        "Step at index 0: missing in first shape (second has 'a')",
    ]


def test_every_field_difference_in_order(conn: psycopg.Connection) -> None:
    local = {
        "steps": [
            shape_step(
                "a",
                ["y", "x"],
                step_type="map",
                when_unmet="fail",
                when_exhausted="skip",
                required={"value": {"status": "active"}},
                forbidden=None,
            )
        ]
    }
    db = {
        "steps": [
            shape_step(
                "b",
                ["x"],
                step_type="single",
                when_unmet="skip",
                when_exhausted="skip-cascade",
                required=None,
                forbidden={"k": [1, 2]},
            )
        ]
    }
    assert compare(conn, local, db) == [
        "Step at index 0: slug differs 'a' vs 'b'",
        "Step at index 0: type differs 'map' vs 'single'",
        "Step at index 0: dependencies differ [x, y] vs [x]",
        "Step at index 0: whenUnmet differs 'fail' vs 'skip'",
        "Step at index 0: whenExhausted differs 'skip' vs 'skip-cascade'",
        "Step at index 0: requiredInputPattern differs"
        ' \'{"value": {"value": {"status": "active"}}, "defined": true}\''
        " vs '{\"defined\": false}'",
        "Step at index 0: forbiddenInputPattern differs '{\"defined\": false}'"
        ' vs \'{"value": {"k": [1, 2]}, "defined": true}\'',
    ]


def test_count_difference_comes_before_per_index_differences(conn: psycopg.Connection) -> None:
    local = {"steps": [shape_step("a"), shape_step("b", ["a"])]}
    db = {"steps": [shape_step("a", step_type="map"), shape_step("c", ["a"]), shape_step("d")]}
    assert compare(conn, local, db) == [
        "Step count differs: 2 vs 3",
        "Step at index 0: type differs 'single' vs 'map'",
        "Step at index 1: slug differs 'b' vs 'c'",
        "Step at index 2: missing in first shape (second has 'd')",
    ]


def test_dependencies_differ_with_empty_side(conn: psycopg.Connection) -> None:
    local = {"steps": [shape_step("a"), shape_step("b")]}
    db = {"steps": [shape_step("a"), shape_step("b", ["a"])]}
    assert compare(conn, local, db) == ["Step at index 1: dependencies differ [] vs [a]"]


def test_fields_missing_on_one_side_do_not_count(conn: psycopg.Connection) -> None:
    """Old shapes without the mode keys (or other scalar fields) still match."""
    old = shape_step("a")
    for key in ("whenUnmet", "whenExhausted"):
        del old[key]
    assert compare(conn, {"steps": [old]}, {"steps": [shape_step("a", when_unmet="fail")]}) == []
    assert (
        compare(conn, {"steps": [shape_step("a", when_exhausted="skip")]}, {"steps": [old]}) == []
    )
    nameless = shape_step("a", step_type="map")
    del nameless["slug"], nameless["stepType"]
    assert compare(conn, {"steps": [nameless]}, {"steps": [shape_step("zzz")]}) == []


def test_missing_pattern_prints_as_empty(conn: psycopg.Connection) -> None:
    local = shape_step("a")
    del local["requiredInputPattern"]
    assert compare(conn, {"steps": [local]}, {"steps": [shape_step("a")]}) == [
        "Step at index 0: requiredInputPattern differs '' vs '{\"defined\": false}'"
    ]


def test_patterns_compare_as_jsonb(conn: psycopg.Connection) -> None:
    """Key order and whitespace are irrelevant; values are not."""
    same_local = shape_step("a", required={"b": 1, "a": [1, {"c": True}]})
    same_db = shape_step("a", required={"a": [1, {"c": True}], "b": 1})
    assert compare(conn, {"steps": [same_local]}, {"steps": [same_db]}) == []
    assert compare(
        conn,
        {"steps": [shape_step("a", forbidden={"n": 1})]},
        {"steps": [shape_step("a", forbidden={"n": 1.5})]},
    ) == [
        "Step at index 0: forbiddenInputPattern differs"
        ' \'{"value": {"n": 1}, "defined": true}\' vs \'{"value": {"n": 1.5}, "defined": true}\''
    ]


def test_null_or_stepless_shapes_compare_as_empty(conn: psycopg.Connection) -> None:
    assert compare(conn, None, {"steps": []}) == []
    assert compare(conn, {}, {"steps": [shape_step("a")]}) == [
        "Step count differs: 0 vs 1",
        "Step at index 0: missing in first shape (second has 'a')",
    ]


# -- _create_flow_from_shape -------------------------------------------------------------


def test_create_from_shape_round_trips(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow._create_flow_from_shape('f', %s)", (Jsonb(SAMPLE_SHAPE),))
    assert get_shape(conn, "f") == SAMPLE_SHAPE
    assert fetch(conn, "select queue_name from pgmq.list_queues()") == [{"queue_name": "f"}]


def test_create_from_shape_defaults(conn: psycopg.Connection) -> None:
    """Missing options and keys fall back to create_flow/add_step defaults."""
    shape = {
        "steps": [
            {"slug": "a"},
            {
                "slug": "b",
                "dependencies": ["a"],
                "requiredInputPattern": {"defined": False, "value": {"ignored": True}},
                "forbiddenInputPattern": {"defined": True, "value": {"a": {"stop": True}}},
            },
        ]
    }
    conn.execute("select pgflow._create_flow_from_shape('f', %s)", (Jsonb(shape),))
    flow = fetch(conn, "select opt_max_attempts, opt_base_delay, opt_timeout from pgflow.flows")
    assert flow == [{"opt_max_attempts": 3, "opt_base_delay": 5, "opt_timeout": 60}]
    rows = fetch(
        conn,
        "select step_slug, step_type, deps_count, opt_max_attempts, opt_base_delay,"
        " opt_timeout, opt_start_delay, required_input_pattern, forbidden_input_pattern,"
        " when_unmet, when_exhausted from pgflow.steps order by step_index",
    )
    common = {
        "step_type": "single",
        "opt_max_attempts": None,
        "opt_base_delay": None,
        "opt_timeout": None,
        "opt_start_delay": None,
        "required_input_pattern": None,
        "when_unmet": "skip",
        "when_exhausted": "fail",
    }
    assert rows == [
        {**common, "step_slug": "a", "deps_count": 0, "forbidden_input_pattern": None},
        {
            **common,
            "step_slug": "b",
            "deps_count": 1,
            "forbidden_input_pattern": {"a": {"stop": True}},
        },
    ]


def test_create_from_shape_uses_options(conn: psycopg.Connection) -> None:
    shape = {
        "options": {"maxAttempts": 7, "baseDelay": 2, "timeout": 45},
        "steps": [
            {
                **shape_step("a"),
                "options": {"maxAttempts": 1, "baseDelay": 3, "timeout": 9, "startDelay": 4},
            },
            {**shape_step("b", ["a"]), "options": {"timeout": 11}},
        ],
    }
    conn.execute("select pgflow._create_flow_from_shape('f', %s)", (Jsonb(shape),))
    assert fetch(
        conn, "select opt_max_attempts, opt_base_delay, opt_timeout from pgflow.flows"
    ) == [{"opt_max_attempts": 7, "opt_base_delay": 2, "opt_timeout": 45}]
    assert fetch(
        conn,
        "select step_slug, opt_max_attempts, opt_base_delay, opt_timeout, opt_start_delay"
        " from pgflow.steps order by step_index",
    ) == [
        {
            "step_slug": "a",
            "opt_max_attempts": 1,
            "opt_base_delay": 3,
            "opt_timeout": 9,
            "opt_start_delay": 4,
        },
        {
            "step_slug": "b",
            "opt_max_attempts": None,
            "opt_base_delay": None,
            "opt_timeout": 11,
            "opt_start_delay": None,
        },
    ]


def test_create_from_shape_keeps_dependency_order(conn: psycopg.Connection) -> None:
    """Dependencies are added in the order given; a map's deps count is checked by add_step."""
    shape = {
        "steps": [shape_step("z"), shape_step("a"), shape_step("m", ["z", "a"], step_type="map")]
    }
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        conn.execute("select pgflow._create_flow_from_shape('f', %s)", (Jsonb(shape),))
    assert caught.value.diag.message_primary == (
        'Map step "m" can have at most one dependency, but 2 were provided: z, a'
    )
    # the whole call was one statement: nothing of the flow is left
    assert fetch(conn, "select flow_slug from pgflow.flows") == []
    assert fetch(conn, "select queue_name from pgmq.list_queues()") == []


# -- ensure_flow_compiled ----------------------------------------------------------------


def flow_created_at(conn: psycopg.Connection, flow: str) -> Any:
    rows = fetch(conn, "select created_at from pgflow.flows where flow_slug = %s", flow)
    assert len(rows) == 1
    return rows[0]["created_at"]


CHANGED_SHAPE: Shape = {
    "options": {"maxAttempts": 2},
    "steps": [shape_step("fetch"), shape_step("summary", ["fetch"])],
}
CHANGED_DIFFERENCES = [
    "Step count differs: 2 vs 3",
    "Step at index 1: slug differs 'summary' vs 'items'",
    "Step at index 1: type differs 'single' vs 'map'",
    "Step at index 1: whenExhausted differs 'fail' vs 'skip-cascade'",
    "Step at index 2: missing in first shape (second has 'report')",
]


def test_compiles_a_new_flow(conn: psycopg.Connection) -> None:
    shape = {**SAMPLE_SHAPE, "options": {"timeout": 12}}
    assert ensure(conn, "sample", shape) == {"status": "compiled", "differences": []}
    assert get_shape(conn, "sample") == SAMPLE_SHAPE
    assert fetch(conn, "select opt_timeout from pgflow.flows") == [{"opt_timeout": 12}]
    assert fetch(conn, "select queue_name from pgmq.list_queues()") == [{"queue_name": "sample"}]


def test_verifies_an_equal_flow_without_touching_it(conn: psycopg.Connection) -> None:
    define_sample(conn)
    created = flow_created_at(conn, "sample")
    run = start_flow(conn, "sample", {"go": 1})
    messages = queue_messages(conn, "sample")
    # options differ from the stored ones: they are not part of the shape
    shape = {**SAMPLE_SHAPE, "options": {"maxAttempts": 9, "timeout": 99}}
    assert ensure(conn, "sample", shape) == {"status": "verified", "differences": []}
    assert flow_created_at(conn, "sample") == created
    assert fetch(conn, "select opt_max_attempts, opt_timeout from pgflow.flows") == [
        {"opt_max_attempts": 4, "opt_timeout": 30}
    ]
    assert fetch(conn, "select run_id from pgflow.runs") == [{"run_id": run["run_id"]}]
    assert queue_messages(conn, "sample") == messages


@pytest.mark.parametrize("allow_data_loss", [False, None])
def test_reports_a_mismatch_and_changes_nothing(
    conn: psycopg.Connection, allow_data_loss: bool | None
) -> None:
    define_sample(conn)
    created = flow_created_at(conn, "sample")
    run = start_flow(conn, "sample", {"go": 1})
    messages = queue_messages(conn, "sample")
    result = ensure(conn, "sample", CHANGED_SHAPE, allow_data_loss)
    assert result == {"status": "mismatch", "differences": CHANGED_DIFFERENCES}
    assert result["differences"] == compare(conn, CHANGED_SHAPE, get_shape(conn, "sample"))
    assert get_shape(conn, "sample") == SAMPLE_SHAPE
    assert flow_created_at(conn, "sample") == created
    assert fetch(conn, "select run_id from pgflow.runs") == [{"run_id": run["run_id"]}]
    assert queue_messages(conn, "sample") == messages


def assert_recompiled(conn: psycopg.Connection, result: dict[str, Any]) -> None:
    assert result == {"status": "recompiled", "differences": CHANGED_DIFFERENCES}
    assert get_shape(conn, "sample") == {"steps": CHANGED_SHAPE["steps"]}
    assert fetch(conn, "select opt_max_attempts, opt_base_delay from pgflow.flows") == [
        {"opt_max_attempts": 2, "opt_base_delay": 5}
    ]
    # the old runs and their queue went with the old definition; a fresh queue exists
    for table in ("runs", "step_states", "step_tasks"):
        assert fetch(conn, f"select 1 from pgflow.{table}") == []
    assert fetch(conn, "select queue_name from pgmq.list_queues()") == [{"queue_name": "sample"}]
    assert queue_messages(conn, "sample") == []


def test_recompiles_when_data_loss_is_allowed(conn: psycopg.Connection) -> None:
    define_sample(conn)
    start_flow(conn, "sample", {"go": 1})
    assert queue_messages(conn, "sample") != []
    assert_recompiled(conn, ensure(conn, "sample", CHANGED_SHAPE, allow_data_loss=True))


@pytest.mark.parametrize(
    ("setting", "value"),
    [("pgflow.local", "on"), ("app.settings.jwt_secret", LOCAL_JWT_SECRET)],
)
def test_recompiles_in_local_mode(conn: psycopg.Connection, setting: str, value: str) -> None:
    define_sample(conn)
    start_flow(conn, "sample", {"go": 1})
    conn.execute("select set_config(%s, %s, false)", (setting, value))
    assert_recompiled(conn, ensure(conn, "sample", CHANGED_SHAPE))


def test_recompiled_flow_then_verifies(conn: psycopg.Connection) -> None:
    define_sample(conn)
    ensure(conn, "sample", CHANGED_SHAPE, allow_data_loss=True)
    assert ensure(conn, "sample", CHANGED_SHAPE) == {"status": "verified", "differences": []}


def test_second_caller_waits_for_the_lock_then_verifies(conn: psycopg.Connection, db: str) -> None:
    results: list[dict[str, Any]] = []
    with psycopg.connect(db) as first, psycopg.connect(db, autocommit=True) as second:
        first_result = ensure(first, "sample", SAMPLE_SHAPE)  # transaction stays open

        def call_second() -> None:
            results.append(ensure(second, "sample", SAMPLE_SHAPE))

        worker = threading.Thread(target=call_second)
        worker.start()
        try:
            blocked = False
            for _ in range(200):
                row = conn.execute(
                    "select count(*) from pg_locks where pid = %s and locktype = 'advisory'"
                    " and not granted",
                    (second.info.backend_pid,),
                ).fetchone()
                if row is not None and row[0] == 1:
                    blocked = True
                    break
                time.sleep(0.025)
            assert results == []
        finally:
            first.commit()
            worker.join(10)
    assert blocked
    assert first_result == {"status": "compiled", "differences": []}
    assert results == [{"status": "verified", "differences": []}]
    assert fetch(conn, "select flow_slug from pgflow.flows") == [{"flow_slug": "sample"}]
    assert get_shape(conn, "sample") == SAMPLE_SHAPE


def test_concurrent_callers_compile_once(db: str, conn: psycopg.Connection) -> None:
    """Two workers starting the same new flow at once: one compiles, the other verifies."""
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(db, autocommit=True) as own:
                barrier.wait(5)
                results.append(ensure(own, "sample", SAMPLE_SHAPE))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(r["status"] for r in results) == ["compiled", "verified"]
    assert fetch(conn, "select flow_slug from pgflow.flows") == [{"flow_slug": "sample"}]
    assert get_shape(conn, "sample") == SAMPLE_SHAPE
    assert fetch(conn, "select count(*) as n from pgmq.meta") == [{"n": 1}]
