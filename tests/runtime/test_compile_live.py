"""Compiled SQL and shapes against the live engine: what the DSL says is what the database stores."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgweave.compile import compile_statements, flow_shape
from pgweave.dsl import Flow


def h(value: Any) -> Any:
    return value


FLOW = (
    Flow[Any]("shapes", max_attempts=4, base_delay=2, timeout=9)
    .step("b", h, if_={"go": True}, when_unmet="skip-cascade")
    .step("a", h, start_delay=1, timeout=20, when_exhausted="skip")
    .map("m", h, array="a", if_not={"x": [1, "it's"]}, when_unmet="fail")
    .step("z", h, depends_on=["m", "b", "a"], max_attempts=1, base_delay=7)
)


def stored_shape(conn: psycopg.Connection, slug: str) -> Any:
    row = conn.execute("select pgflow._get_flow_shape(%s)", (slug,)).fetchone()
    assert row is not None
    return row[0]


def stored_options(conn: psycopg.Connection, slug: str) -> list[tuple[Any, ...]]:
    flow = conn.execute(
        "select opt_max_attempts, opt_base_delay, opt_timeout from pgflow.flows where flow_slug = %s",
        (slug,),
    ).fetchall()
    steps = conn.execute(
        "select step_slug, step_index, step_type, deps_count, opt_max_attempts, opt_base_delay,"
        " opt_timeout, opt_start_delay from pgflow.steps where flow_slug = %s order by step_index",
        (slug,),
    ).fetchall()
    return flow + steps


def test_compiled_sql_creates_the_flow_the_dsl_describes(conn: psycopg.Connection) -> None:
    for statement in compile_statements(FLOW):
        conn.execute(statement.encode())
    assert stored_shape(conn, "shapes") == flow_shape(FLOW)
    assert stored_options(conn, "shapes") == [
        (4, 2, 9),
        ("b", 0, "single", 0, None, None, None, None),
        ("a", 1, "single", 0, None, None, 20, 1),
        ("m", 2, "map", 1, None, None, None, None),
        ("z", 3, "single", 3, 1, 7, None, None),
    ]
    compared = conn.execute(
        "select pgflow._compare_flow_shapes(%s, pgflow._get_flow_shape('shapes'))",
        (Jsonb(flow_shape(FLOW, with_options=True)),),
    ).fetchone()
    assert compared == ([],)
    # applying the statements again changes nothing (create_flow/add_step are idempotent)
    for statement in compile_statements(FLOW):
        conn.execute(statement.encode())
    assert stored_shape(conn, "shapes") == flow_shape(FLOW)


def test_ensure_flow_compiled_with_the_shape_creates_the_same_flow(
    conn: psycopg.Connection,
) -> None:
    row = conn.execute(
        "select pgflow.ensure_flow_compiled('shapes', %s)",
        (Jsonb(flow_shape(FLOW, with_options=True)),),
    ).fetchone()
    assert row == ({"status": "compiled", "differences": []},)
    assert stored_shape(conn, "shapes") == flow_shape(FLOW)
    assert stored_options(conn, "shapes")[0] == (4, 2, 9)
    assert stored_options(conn, "shapes")[2] == ("a", 1, "single", 0, None, None, 20, 1)
    again = conn.execute(
        "select pgflow.ensure_flow_compiled('shapes', %s)", (Jsonb(flow_shape(FLOW)),)
    ).fetchone()
    assert again == ({"status": "verified", "differences": []},)
    changed = Flow[Any]("shapes").step("b", h)
    mismatch = conn.execute(
        "select pgflow.ensure_flow_compiled('shapes', %s)", (Jsonb(flow_shape(changed)),)
    ).fetchone()
    assert mismatch is not None
    assert mismatch[0]["status"] == "mismatch"
    assert "Step count differs: 1 vs 4" in mismatch[0]["differences"]
