"""Flow definition: is_valid_slug, calculate_retry_delay, is_local, create_flow and add_step.

Checked against the contract's sections 2.1, 3.1 and 5: exact constraint names, SQLSTATEs
and texts, idempotency, defaults and the flow's pgmq queue.
"""

from __future__ import annotations

import math
import threading
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.engine.helpers import fetch, pgmq_tables, queues, scalar

LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
INJECTION_SLUG = 'x"; drop table y; --'


# -- is_valid_slug -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "valid"),
    [
        ("a", True),
        ("_", True),
        ("_1", True),
        ("snake_case_9", True),
        ("CamelCase", True),
        ("Run", True),
        ("runs", True),
        ("run_", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("run", False),
        ("", False),
        (None, False),
        ("1abc", False),
        ("9", False),
        ("a-b", False),
        ("a b", False),
        (" a", False),
        ("a.b", False),
        ("a\n", False),
        ("café", False),
        ("a$", False),
        (INJECTION_SLUG, False),
    ],
)
def test_is_valid_slug(conn: psycopg.Connection, slug: str | None, valid: bool) -> None:
    assert scalar(conn, "select pgflow.is_valid_slug(%s)", slug) is valid


def test_is_valid_slug_is_immutable_and_search_path_free(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "select provolatile, proconfig from pg_proc"
        " where oid = 'pgflow.is_valid_slug(text)'::regprocedure"
    ).fetchone()
    assert row == ("i", ['search_path=""'])


# -- calculate_retry_delay ---------------------------------------------------------------


def reference_delay(base: Decimal, attempts: int) -> int:
    """pgflow's floor(base * 2^attempts), capped at 3600 (exact, for moderate exponents)."""
    return min(math.floor(Fraction(base) * Fraction(2) ** attempts), 3600)


@pytest.mark.parametrize("base", [Decimal(0), Decimal(1), Decimal(2), Decimal(5), Decimal("1.5")])
def test_retry_delay_matches_formula_below_the_cap(conn: psycopg.Connection, base: Decimal) -> None:
    rows = conn.execute(
        "select a, pgflow.calculate_retry_delay(%s, a) from generate_series(-6, 40) as a",
        (base,),
    ).fetchall()
    assert rows == [(a, reference_delay(base, a)) for a in range(-6, 41)]


@pytest.mark.parametrize(
    ("base", "attempts", "expected"),
    [
        (1, 0, 1),
        (5, 1, 10),
        (5, 2, 20),
        (5, 3, 40),
        (1, 11, 2048),
        (3600, 0, 3600),
        (1, 12, 3600),
        (5, 10, 3600),
        (3601, 0, 3600),
    ],
)
def test_retry_delay_values_and_cap(
    conn: psycopg.Connection, base: int, attempts: int, expected: int
) -> None:
    assert scalar(conn, "select pgflow.calculate_retry_delay(%s, %s)", base, attempts) == expected


@pytest.mark.parametrize(
    ("base", "attempts", "expected"),
    [
        # pgflow overflows int from here on (base 5: attempts >= 29; base 1: >= 31)
        (5, 29, 3600),
        (1, 31, 3600),
        (1, 1000, 3600),
        (5, 2_147_483_647, 3600),
        (2_147_483_647, 2_147_483_647, 3600),
        (Decimal("0.000001"), 2_147_483_647, 3600),
        (0, 2_147_483_647, 0),
        # negative attempts shrink the delay; huge negative ones never underflow or hang
        (3, -1, 1),
        (2_147_483_647, -2_147_483_648, 0),
        (5, -2_147_483_648, 0),
        # a negative base makes no sense; it never yields a negative delay
        (-5, 3, 0),
        (-2_147_483_647, 2_147_483_647, 0),
    ],
)
def test_retry_delay_never_overflows(
    conn: psycopg.Connection, base: int | Decimal, attempts: int, expected: int
) -> None:
    assert scalar(conn, "select pgflow.calculate_retry_delay(%s, %s)", base, attempts) == expected


def test_retry_delay_of_null_is_null(conn: psycopg.Connection) -> None:
    assert scalar(conn, "select pgflow.calculate_retry_delay(null, 3)") is None
    assert scalar(conn, "select pgflow.calculate_retry_delay(5, null)") is None


def test_retry_delay_is_immutable_and_parallel_safe(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "select provolatile, proparallel, prorettype::regtype::text from pg_proc"
        " where oid = 'pgflow.calculate_retry_delay(numeric, integer)'::regprocedure"
    ).fetchone()
    assert row == ("i", "s", "integer")


# -- is_local ----------------------------------------------------------------------------


def is_local(conn: psycopg.Connection) -> bool:
    value = scalar(conn, "select pgflow.is_local()")
    assert isinstance(value, bool)
    return value


def test_is_local_is_false_when_nothing_is_set(conn: psycopg.Connection) -> None:
    assert is_local(conn) is False


@pytest.mark.parametrize(
    ("secret", "expected"),
    [(LOCAL_JWT_SECRET, True), ("", False), ("some-production-secret", False)],
)
def test_is_local_follows_the_supabase_jwt_secret(
    conn: psycopg.Connection, secret: str, expected: bool
) -> None:
    conn.execute("select set_config('app.settings.jwt_secret', %s, false)", (secret,))
    assert is_local(conn) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("on", True), ("ON", True), ("true", True), ("off", False), ("false", False), ("", False)],
)
def test_is_local_follows_pgflow_local(
    conn: psycopg.Connection, value: str, expected: bool
) -> None:
    conn.execute("select set_config('pgflow.local', %s, false)", (value,))
    assert is_local(conn) is expected


def test_is_local_either_setting_suffices(conn: psycopg.Connection) -> None:
    conn.execute("select set_config('app.settings.jwt_secret', 'prod', false)")
    conn.execute("select set_config('pgflow.local', 'on', false)")
    assert is_local(conn) is True
    conn.execute("select set_config('pgflow.local', 'off', false)")
    assert is_local(conn) is False


def test_is_local_transaction_scoped_toggle(conn: psycopg.Connection) -> None:
    """pgflow's tests flip it with set_config(..., true): it reverts at transaction end."""
    with conn.transaction():
        conn.execute("select set_config('app.settings.jwt_secret', %s, true)", (LOCAL_JWT_SECRET,))
        assert is_local(conn) is True
    assert is_local(conn) is False


def test_is_local_from_a_database_setting(conn: psycopg.Connection, db: str) -> None:
    """Plain PostgreSQL: `alter database ... set pgflow.local = on` for a developer database."""
    dbname = scalar(conn, "select current_database()")
    conn.execute(f'alter database "{dbname}" set pgflow.local = on')
    with psycopg.connect(db, autocommit=True) as fresh:
        assert is_local(fresh) is True
    conn.execute(f'alter database "{dbname}" reset pgflow.local')
    with psycopg.connect(db, autocommit=True) as fresh:
        assert is_local(fresh) is False


# -- create_flow -------------------------------------------------------------------------


def flow_row(conn: psycopg.Connection, slug: str) -> dict[str, Any]:
    rows = fetch(conn, "select * from pgflow.flows where flow_slug = %s", slug)
    assert len(rows) == 1
    return rows[0]


def test_create_flow_defaults_and_returned_row(conn: psycopg.Connection) -> None:
    returned = fetch(conn, "select * from pgflow.create_flow('orders')")
    stored = flow_row(conn, "orders")
    assert returned == [stored]
    assert (stored["opt_max_attempts"], stored["opt_base_delay"], stored["opt_timeout"]) == (
        3,
        5,
        60,
    )


def test_create_flow_null_options_become_defaults(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f', null, null, null)")
    stored = flow_row(conn, "f")
    assert (stored["opt_max_attempts"], stored["opt_base_delay"], stored["opt_timeout"]) == (
        3,
        5,
        60,
    )


def test_create_flow_stores_options_by_name(conn: psycopg.Connection) -> None:
    row = fetch(
        conn,
        "select * from pgflow.create_flow(flow_slug => 'f', max_attempts => 0,"
        " base_delay => 0, timeout => 1)",
    )[0]
    assert (row["opt_max_attempts"], row["opt_base_delay"], row["opt_timeout"]) == (0, 0, 1)
    assert row == flow_row(conn, "f")


def test_create_flow_creates_the_queue(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('orders')")
    assert queues(conn) == ["orders"]
    assert {"q_orders", "a_orders"} <= pgmq_tables(conn)
    msg_id = scalar(conn, "select pgmq.send('orders', '{\"x\": 1}'::jsonb)")
    assert fetch(conn, "select msg_id, message from pgmq.q_orders") == [
        {"msg_id": msg_id, "message": {"x": 1}}
    ]


def test_create_flow_is_idempotent_and_keeps_options(conn: psycopg.Connection) -> None:
    first = fetch(conn, "select * from pgflow.create_flow('f', 2, 3, 4)")[0]
    conn.execute("select pgmq.send('f', '{\"keep\": true}'::jsonb)")
    second = fetch(conn, "select * from pgflow.create_flow('f', 7, 8, 9)")[0]
    third = fetch(conn, "select * from pgflow.create_flow('f')")[0]
    assert first == second == third == flow_row(conn, "f")
    assert (first["opt_max_attempts"], first["opt_base_delay"], first["opt_timeout"]) == (2, 3, 4)
    assert queues(conn) == ["f"]
    # the queue was not recreated: its message is still there
    assert [m["message"] for m in fetch(conn, "select message from pgmq.q_f")] == [{"keep": True}]


def test_create_flow_reuses_an_existing_queue(conn: psycopg.Connection) -> None:
    conn.execute("select pgmq.create('f')")
    conn.execute("select pgmq.send('f', '{\"early\": 1}'::jsonb)")
    conn.execute("select pgflow.create_flow('f')")
    assert queues(conn) == ["f"]
    assert scalar(conn, "select count(*) from pgmq.meta where queue_name = 'f'") == 1
    assert [m["message"] for m in fetch(conn, "select message from pgmq.q_f")] == [{"early": 1}]


@pytest.mark.parametrize(
    "slug", ["", "1flow", "run", "has-dash", "x" * 129, INJECTION_SLUG, "a;b", "a$b"]
)
def test_create_flow_invalid_slug_fails_before_any_queue(
    conn: psycopg.Connection, slug: str
) -> None:
    tables_before = pgmq_tables(conn)
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        conn.execute("select pgflow.create_flow(%s)", (slug,))
    assert caught.value.sqlstate == "23514"
    assert caught.value.diag.constraint_name == "slug_is_valid"
    assert caught.value.diag.message_primary == (
        'new row for relation "flows" violates check constraint "slug_is_valid"'
    )
    assert queues(conn) == []
    assert scalar(conn, "select count(*) from pgmq.meta") == 0
    assert pgmq_tables(conn) == tables_before
    assert scalar(conn, "select count(*) from pgflow.flows") == 0


def test_create_flow_injection_slug_touches_nothing(conn: psycopg.Connection) -> None:
    conn.execute("create table public.y (id int)")
    conn.execute("select pgflow.create_flow('y')")
    tables_before = pgmq_tables(conn)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("select pgflow.create_flow(%s)", (INJECTION_SLUG,))
    assert scalar(conn, "select to_regclass('public.y') is not null") is True
    assert pgmq_tables(conn) == tables_before
    assert queues(conn) == ["y"]


def test_create_flow_is_atomic_when_the_name_is_too_long_for_pgmq(
    conn: psycopg.Connection,
) -> None:
    """A valid slug too long for pgmq (47 chars max) leaves neither a flow nor a queue
    (see test_hardening for the exact message)."""
    slug = "f" * 48
    assert scalar(conn, "select pgflow.is_valid_slug(%s)", slug) is True
    tables_before = pgmq_tables(conn)
    with pytest.raises(psycopg.errors.RaiseException, match="queue names allow at most 47"):
        conn.execute("select pgflow.create_flow(%s)", (slug,))
    assert scalar(conn, "select count(*) from pgflow.flows") == 0
    assert queues(conn) == []
    assert pgmq_tables(conn) == tables_before


@pytest.mark.parametrize(
    ("args", "constraint"),
    [
        ("max_attempts => -1", "opt_max_attempts_is_nonnegative"),
        ("base_delay => -1", "opt_base_delay_is_nonnegative"),
        ("timeout => 0", "opt_timeout_is_positive"),
        ("timeout => -5", "opt_timeout_is_positive"),
    ],
)
def test_create_flow_option_checks(conn: psycopg.Connection, args: str, constraint: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        conn.execute(f"select pgflow.create_flow(flow_slug => 'f', {args})")
    assert caught.value.diag.constraint_name == constraint
    assert caught.value.diag.message_primary == (
        f'new row for relation "flows" violates check constraint "{constraint}"'
    )
    assert queues(conn) == []
    assert scalar(conn, "select count(*) from pgflow.flows") == 0


# -- add_step ----------------------------------------------------------------------------


def steps(conn: psycopg.Connection, flow: str = "f") -> list[dict[str, Any]]:
    return fetch(conn, "select * from pgflow.steps where flow_slug = %s order by step_index", flow)


def deps(conn: psycopg.Connection, flow: str = "f") -> list[tuple[str, str]]:
    rows = conn.execute(
        "select dep_slug, step_slug from pgflow.deps where flow_slug = %s order by 2, 1", (flow,)
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def test_add_step_defaults(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    returned = fetch(conn, "select * from pgflow.add_step('f', 'a')")
    assert returned == steps(conn)
    row = returned[0]
    assert {k: v for k, v in row.items() if k != "created_at"} == {
        "flow_slug": "f",
        "step_slug": "a",
        "step_type": "single",
        "step_index": 0,
        "deps_count": 0,
        "opt_max_attempts": None,
        "opt_base_delay": None,
        "opt_timeout": None,
        "opt_start_delay": None,
        "required_input_pattern": None,
        "forbidden_input_pattern": None,
        "when_unmet": "skip",
        "when_exhausted": "fail",
    }
    assert deps(conn) == []


def test_add_step_stores_every_option(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'src')")
    row = fetch(
        conn,
        "select * from pgflow.add_step(flow_slug => 'f', step_slug => 'items',"
        " deps_slugs => array['src'], max_attempts => 4, base_delay => 2, timeout => 30,"
        " start_delay => 10, step_type => 'map', required_input_pattern => %s,"
        " forbidden_input_pattern => %s, when_unmet => 'skip-cascade',"
        " when_exhausted => 'skip')",
        Jsonb({"src": {"status": "active"}}),
        Jsonb({"src": {"blocked": True}}),
    )[0]
    assert row == steps(conn)[1]
    assert (
        row["step_type"],
        row["step_index"],
        row["deps_count"],
        row["opt_max_attempts"],
        row["opt_base_delay"],
        row["opt_timeout"],
        row["opt_start_delay"],
        row["required_input_pattern"],
        row["forbidden_input_pattern"],
        row["when_unmet"],
        row["when_exhausted"],
    ) == (
        "map",
        1,
        1,
        4,
        2,
        30,
        10,
        {"src": {"status": "active"}},
        {"src": {"blocked": True}},
        "skip-cascade",
        "skip",
    )
    assert deps(conn) == [("src", "items")]


@pytest.mark.parametrize("mode", ["fail", "skip", "skip-cascade"])
def test_add_step_accepts_every_mode(conn: psycopg.Connection, mode: str) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute(
        "select pgflow.add_step('f', 'a', when_unmet => %s, when_exhausted => %s)", (mode, mode)
    )
    assert [(s["when_unmet"], s["when_exhausted"]) for s in steps(conn)] == [(mode, mode)]


def test_add_step_index_order_deps_and_counts(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    conn.execute("select pgflow.add_step('f', 'b')")
    conn.execute("select pgflow.add_step('f', 'c', array['b', 'a'])")
    conn.execute("select pgflow.add_step('f', 'd', array['c'])")
    # another flow's steps number independently
    conn.execute("select pgflow.create_flow('g')")
    conn.execute("select pgflow.add_step('g', 'a')")
    assert [(s["step_slug"], s["step_index"], s["deps_count"]) for s in steps(conn)] == [
        ("a", 0, 0),
        ("b", 1, 0),
        ("c", 2, 2),
        ("d", 3, 1),
    ]
    assert [(s["step_slug"], s["step_index"]) for s in steps(conn, "g")] == [("a", 0)]
    assert deps(conn) == [("a", "c"), ("b", "c"), ("c", "d")]


def test_add_step_null_type_and_deps(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a', deps_slugs => null, step_type => null)")
    assert [(s["step_type"], s["deps_count"]) for s in steps(conn)] == [("single", 0)]
    assert deps(conn) == []


def test_add_step_is_idempotent_and_returns_the_existing_row(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    first = fetch(
        conn,
        "select * from pgflow.add_step('f', 'b', array['a'], max_attempts => 2, timeout => 9)",
    )[0]
    again = fetch(
        conn,
        "select * from pgflow.add_step('f', 'b', array['a'], max_attempts => 7, base_delay => 1,"
        " timeout => 99, start_delay => 3, step_type => 'map',"
        " required_input_pattern => '{\"a\": 1}', when_unmet => 'fail',"
        " when_exhausted => 'skip')",
    )[0]
    assert again == first
    assert steps(conn)[1] == first
    assert len(steps(conn)) == 2
    assert deps(conn) == [("a", "b")]
    # re-adding does not consume an index
    conn.execute("select pgflow.add_step('f', 'c')")
    assert [(s["step_slug"], s["step_index"]) for s in steps(conn)] == [
        ("a", 0),
        ("b", 1),
        ("c", 2),
    ]


def test_map_step_rules(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'root_map', step_type => 'map')")
    conn.execute("select pgflow.add_step('f', 'child_map', array['root_map'], step_type => 'map')")
    assert [(s["step_slug"], s["step_type"], s["deps_count"]) for s in steps(conn)] == [
        ("root_map", "map", 0),
        ("child_map", "map", 1),
    ]


@pytest.mark.parametrize(
    ("deps_sql", "count", "listed"),
    [("array['a', 'b']", 2, "a, b"), ("array['b', 'a', 'c']", 3, "b, a, c")],
)
def test_map_step_with_several_deps_is_refused(
    conn: psycopg.Connection, deps_sql: str, count: int, listed: str
) -> None:
    conn.execute("select pgflow.create_flow('f')")
    for slug in "abc":
        conn.execute("select pgflow.add_step('f', %s)", (slug,))
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        conn.execute(f"select pgflow.add_step('f', 'm', {deps_sql}, step_type => 'map')")
    assert caught.value.sqlstate == "P0001"
    assert caught.value.diag.message_primary == (
        f'Map step "m" can have at most one dependency, but {count} were provided: {listed}'
    )
    assert [s["step_slug"] for s in steps(conn)] == ["a", "b", "c"]


def test_map_dependency_error_comes_before_anything_else(conn: psycopg.Connection) -> None:
    """Even with an unknown flow and unknown deps the map rule is reported first."""
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        conn.execute(
            "select pgflow.add_step('nope', 'bad-slug', array['x', 'y'], step_type => 'map')"
        )
    assert caught.value.diag.message_primary == (
        'Map step "bad-slug" can have at most one dependency, but 2 were provided: x, y'
    )


ADD_STEP_ERRORS = [
    # (call after flow 'f' with step 'a' exists, SQLSTATE, constraint, table)
    ("pgflow.add_step('missing', 'a')", "23503", "steps_flow_slug_fkey", "steps"),
    ("pgflow.add_step('f', 'b', array['ghost'])", "23503", "deps_flow_slug_dep_slug_fkey", "deps"),
    ("pgflow.add_step('f', 'b', array['b'])", "23514", "deps_check", "deps"),
    ("pgflow.add_step('f', 'bad-slug')", "23514", "steps_step_slug_check", "steps"),
    ("pgflow.add_step('f', 'run')", "23514", "steps_step_slug_check", "steps"),
    ("pgflow.add_step('f', '')", "23514", "steps_step_slug_check", "steps"),
    ("pgflow.add_step('f', 'b', step_type => 'loop')", "23514", "steps_step_type_check", "steps"),
    ("pgflow.add_step('f', 'b', when_unmet => 'never')", "23514", "when_unmet_is_valid", "steps"),
    (
        "pgflow.add_step('f', 'b', when_exhausted => 'retry')",
        "23514",
        "when_exhausted_is_valid",
        "steps",
    ),
    (
        "pgflow.add_step('f', 'b', required_input_pattern => '[1]')",
        "23514",
        "required_input_pattern_is_object",
        "steps",
    ),
    (
        "pgflow.add_step('f', 'b', forbidden_input_pattern => '\"x\"')",
        "23514",
        "forbidden_input_pattern_is_object",
        "steps",
    ),
    (
        "pgflow.add_step('f', 'b', start_delay => -1)",
        "23514",
        "opt_start_delay_is_nonnegative",
        "steps",
    ),
    (
        "pgflow.add_step('f', 'b', max_attempts => -1)",
        "23514",
        "opt_max_attempts_is_nonnegative",
        "steps",
    ),
    (
        "pgflow.add_step('f', 'b', base_delay => -1)",
        "23514",
        "opt_base_delay_is_nonnegative",
        "steps",
    ),
    ("pgflow.add_step('f', 'b', timeout => 0)", "23514", "opt_timeout_is_positive", "steps"),
]


@pytest.mark.parametrize(("call", "sqlstate", "constraint", "table"), ADD_STEP_ERRORS)
def test_add_step_constraint_errors(
    conn: psycopg.Connection, call: str, sqlstate: str, constraint: str, table: str
) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    before_steps, before_deps = steps(conn), deps(conn)
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        conn.execute(f"select {call}")
    error = caught.value
    assert error.sqlstate == sqlstate
    assert error.diag.constraint_name == constraint
    if sqlstate == "23514":
        expected = f'new row for relation "{table}" violates check constraint "{constraint}"'
    else:
        expected = (
            f'insert or update on table "{table}" violates foreign key constraint "{constraint}"'
        )
    assert error.diag.message_primary == expected
    # the whole call is undone: no step row is left behind by a failing deps insert
    assert steps(conn) == before_steps
    assert deps(conn) == before_deps


def test_duplicate_step_index_is_refused(conn: psycopg.Connection) -> None:
    """pgflow's tests insert steps directly; (flow_slug, step_index) stays unique."""
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        conn.execute(
            "insert into pgflow.steps (flow_slug, step_slug, step_index) values ('f', 'b', 0)"
        )
    assert caught.value.sqlstate == "23505"
    assert caught.value.diag.constraint_name == "steps_flow_slug_step_index_key"
    assert caught.value.diag.message_primary == (
        'duplicate key value violates unique constraint "steps_flow_slug_step_index_key"'
    )


def wait_until_blocked(conn: psycopg.Connection, pid: int) -> bool:
    """Whether backend ``pid`` gets blocked by a lock within a few seconds."""
    for _ in range(200):
        if scalar(conn, "select cardinality(pg_blocking_pids(%s)) > 0", pid):
            return True
        time.sleep(0.025)
    return False


def test_concurrent_add_step_collides_on_step_index(conn: psycopg.Connection, db: str) -> None:
    """Two uncoordinated definers of one flow: the second waits, then gets the unique error."""
    conn.execute("select pgflow.create_flow('f')")
    errors: list[BaseException] = []
    with psycopg.connect(db) as first, psycopg.connect(db, autocommit=True) as second:
        first.execute("select pgflow.add_step('f', 'a')")  # open transaction holds index 0

        def add_b() -> None:
            try:
                second.execute("select pgflow.add_step('f', 'b')")
            except psycopg.Error as exc:
                errors.append(exc)

        worker = threading.Thread(target=add_b)
        worker.start()
        try:
            blocked = wait_until_blocked(conn, second.info.backend_pid)
        finally:
            first.commit()
            worker.join(10)
    assert blocked
    assert len(errors) == 1
    assert isinstance(errors[0], psycopg.errors.UniqueViolation)
    assert errors[0].diag.constraint_name == "steps_flow_slug_step_index_key"
    assert [s["step_slug"] for s in steps(conn)] == ["a"]
