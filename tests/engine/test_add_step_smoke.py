"""add_step basics (placeholder module; the engine issue grows the full suite)."""

import psycopg
import pytest


def test_add_step_creates_steps_in_order(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    conn.execute("select pgflow.add_step('f', 'b', array['a'])")
    rows = conn.execute(
        "select step_slug, step_index, deps_count from pgflow.steps order by step_index"
    ).fetchall()
    assert rows == [("a", 0, 0), ("b", 1, 1)]


def test_map_step_with_two_deps_is_refused(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    conn.execute("select pgflow.add_step('f', 'b')")
    with pytest.raises(
        psycopg.errors.RaiseException,
        match='Map step "m" can have at most one dependency, but 2 were provided: a, b',
    ):
        conn.execute("select pgflow.add_step('f', 'm', array['a', 'b'], step_type => 'map')")
