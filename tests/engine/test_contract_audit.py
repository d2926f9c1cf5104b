"""Contract audit: a checklist of /work/shared/contract/pgflow-sql-core.md, section by section.

Each test states one statement of the contract (pgflow 0.14.1's SQL core, with "Our deliberate
differences" overriding it) and checks it against the live engine. The emphasis is on what
pgflow's own pgTAP suite and differential tests touch directly and our behaviour suites do
not: exact catalog shape (column order, defaults, constraint and index names), named
arguments, function attributes, one-transaction runs with a constant now(), direct
INSERT/UPDATE of the tables, the realtime table and its triggers, pgmq calls, exact texts.
Behaviour already covered elsewhere is referenced in comments instead of repeated.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from tests.engine.helpers import Row, fetch

LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
TSTZ = "timestamp with time zone"


@pytest.fixture
def tx(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """As pgflow's pgTAP files run: everything in one transaction, rolled back at the end."""
    with conn.transaction(force_rollback=True):
        yield conn


def one(conn: psycopg.Connection, query: str, *params: Any) -> Any:
    """The single value of a one-row, one-column query."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def define_flow(conn: psycopg.Connection, flow: str = "audit") -> None:
    """A flow root -> (left, right) -> leaf, defined with named arguments as pgTAP does."""
    conn.execute(
        "select pgflow.create_flow(flow_slug => %s, max_attempts => 2, base_delay => 1,"
        " timeout => 10)",
        (flow,),
    )
    conn.execute("select pgflow.add_step(flow_slug => %s, step_slug => 'root')", (flow,))
    for step in ("left", "right"):
        conn.execute(
            "select pgflow.add_step(flow_slug => %s, step_slug => %s, deps_slugs => array['root'])",
            (flow, step),
        )
    conn.execute(
        "select pgflow.add_step(flow_slug => %s, step_slug => 'leaf',"
        " deps_slugs => array['left', 'right'])",
        (flow,),
    )


def read_and_start(conn: psycopg.Connection, flow: str, qty: int = 1) -> list[Row]:
    """pgflow's read_and_start helper: ensure_worker, read_with_poll(flow, 1, qty, 1, 50), start_tasks."""
    worker = uuid.UUID("11111111-1111-1111-1111-111111111111")
    conn.execute(
        "insert into pgflow.workers (worker_id, queue_name, function_name, last_heartbeat_at)"
        " values (%s, %s, 'test_worker', now())"
        " on conflict (worker_id) do update set last_heartbeat_at = now()",
        (worker, flow),
    )
    return fetch(
        conn,
        "select * from pgflow.start_tasks(%s,"
        " array(select msg_id from pgmq.read_with_poll(%s, 1, %s, 1, 50)), %s)",
        flow,
        flow,
        qty,
        worker,
    )


# ---------------------------------------------------------------------------------------
# Dependencies: pgmq
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        "pgmq.create(text)",
        "pgmq.list_queues()",
        "pgmq.send_batch(text, jsonb[], integer)",
        "pgmq.archive(text, bigint)",
        "pgmq.archive(text, bigint[])",
        "pgmq.set_vt(text, bigint, integer)",
        "pgmq.drop_queue(text)",
        "pgmq.format_table_name(text, text)",
        "pgmq.read_with_poll(text, integer, integer, integer, integer, jsonb)",
        "pgmq.send(text, jsonb)",
        "pgmq.read(text, integer, integer, jsonb)",
        "pgmq.delete(text, bigint[])",
    ],
)
def test_pgmq_functions_the_core_and_its_tests_call_exist(
    conn: psycopg.Connection, signature: str
) -> None:
    assert one(conn, "select to_regprocedure(%s) is not null", signature) is True


def test_message_body_has_exactly_the_four_keys(tx: psycopg.Connection) -> None:
    define_flow(tx)
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '{}')")
    body = one(tx, "select message from pgmq.q_audit")
    assert body == {
        "flow_slug": "audit",
        "run_id": str(run_id),
        "step_slug": "root",
        "task_index": 0,
    }


def test_queue_tables_have_the_columns_pgflow_tests_read(tx: psycopg.Connection) -> None:
    define_flow(tx)
    for table, extra in (("q_audit", set()), ("a_audit", {"archived_at"})):
        columns = {
            r[0]
            for r in tx.execute(
                "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0",
                (f"pgmq.{table}",),
            ).fetchall()
        }
        assert {"msg_id", "read_ct", "enqueued_at", "vt", "message", "headers"} | extra <= columns


# ---------------------------------------------------------------------------------------
# 2. Schema: columns in pgflow's order with type, NOT NULL and default
# ---------------------------------------------------------------------------------------

COLUMNS: dict[str, list[tuple[str, str, bool, str | None]]] = {
    "flows": [
        ("flow_slug", "text", True, None),
        ("opt_max_attempts", "integer", True, "3"),
        ("opt_base_delay", "integer", True, "1"),
        ("opt_timeout", "integer", True, "60"),
        ("created_at", TSTZ, True, "now()"),
    ],
    "steps": [
        ("flow_slug", "text", True, None),
        ("step_slug", "text", True, None),
        ("step_type", "text", True, "'single'::text"),
        ("step_index", "integer", True, "0"),
        ("deps_count", "integer", True, "0"),
        ("opt_max_attempts", "integer", False, None),
        ("opt_base_delay", "integer", False, None),
        ("opt_timeout", "integer", False, None),
        ("created_at", TSTZ, True, "now()"),
        ("opt_start_delay", "integer", False, None),
        ("required_input_pattern", "jsonb", False, None),
        ("forbidden_input_pattern", "jsonb", False, None),
        ("when_unmet", "text", True, "'skip'::text"),
        ("when_exhausted", "text", True, "'fail'::text"),
    ],
    "deps": [
        ("flow_slug", "text", True, None),
        ("dep_slug", "text", True, None),
        ("step_slug", "text", True, None),
        ("created_at", TSTZ, True, "now()"),
    ],
    "workers": [
        ("worker_id", "uuid", True, None),
        ("queue_name", "text", True, None),
        ("function_name", "text", True, None),
        ("started_at", TSTZ, True, "now()"),
        ("deprecated_at", TSTZ, False, None),
        ("last_heartbeat_at", TSTZ, True, "now()"),
        ("stopped_at", TSTZ, False, None),
    ],
    "runs": [
        ("run_id", "uuid", True, "gen_random_uuid()"),
        ("flow_slug", "text", True, None),
        ("status", "text", True, "'started'::text"),
        ("input", "jsonb", True, None),
        ("output", "jsonb", False, None),
        ("remaining_steps", "integer", True, "0"),
        ("started_at", TSTZ, True, "now()"),
        ("completed_at", TSTZ, False, None),
        ("failed_at", TSTZ, False, None),
    ],
    "step_states": [
        ("flow_slug", "text", True, None),
        ("run_id", "uuid", True, None),
        ("step_slug", "text", True, None),
        ("status", "text", True, "'created'::text"),
        ("remaining_tasks", "integer", False, None),
        ("remaining_deps", "integer", True, "0"),
        ("created_at", TSTZ, True, "now()"),
        ("started_at", TSTZ, False, None),
        ("completed_at", TSTZ, False, None),
        ("failed_at", TSTZ, False, None),
        ("error_message", "text", False, None),
        ("initial_tasks", "integer", False, None),
        ("output", "jsonb", False, None),
        ("skip_reason", "text", False, None),
        ("skipped_at", TSTZ, False, None),
    ],
    "step_tasks": [
        ("flow_slug", "text", True, None),
        ("run_id", "uuid", True, None),
        ("step_slug", "text", True, None),
        ("message_id", "bigint", False, None),
        ("task_index", "integer", True, "0"),
        ("status", "text", True, "'queued'::text"),
        ("attempts_count", "integer", True, "0"),
        ("error_message", "text", False, None),
        ("output", "jsonb", False, None),
        ("queued_at", TSTZ, True, "now()"),
        ("completed_at", TSTZ, False, None),
        ("failed_at", TSTZ, False, None),
        ("started_at", TSTZ, False, None),
        ("last_worker_id", "uuid", False, None),
        ("requeued_count", "integer", True, "0"),
        ("last_requeued_at", TSTZ, False, None),
        ("permanently_stalled_at", TSTZ, False, None),
    ],
}

# Run control (issue 13) adds columns after the contract's; a pgflow caller that never calls
# the run-control functions finds them NULL.
RUN_CONTROL_COLUMNS: dict[str, list[tuple[str, str, bool, str | None]]] = {
    "flows": [("paused_at", "timestamp with time zone", False, None)],
    "runs": [
        ("cancelled_at", "timestamp with time zone", False, None),
        ("cancel_reason", "text", False, None),
        ("paused_at", "timestamp with time zone", False, None),
        ("restart_of_run_id", "uuid", False, None),
        ("idempotency_key", "text", False, None),
    ],
    "step_tasks": [("error_type", "text", False, None), ("error_traceback", "text", False, None)],
}

COLUMN_QUERY = """
select a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
from pg_attribute as a
left join pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum
where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
order by a.attnum
"""


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_table_columns_in_order(conn: psycopg.Connection, table: str) -> None:
    rows = conn.execute(COLUMN_QUERY, (f"pgflow.{table}",)).fetchall()
    assert rows == COLUMNS[table] + RUN_CONTROL_COLUMNS.get(table, [])


def test_only_the_contract_tables_exist(conn: psycopg.Connection) -> None:
    # difference 1: no worker_functions
    tables = {
        r[0]
        for r in conn.execute(
            "select relname from pg_class where relnamespace = 'pgflow'::regnamespace"
            " and relkind in ('r', 'p', 'v', 'm')"
        ).fetchall()
    }
    assert tables == set(COLUMNS)


def test_step_task_record_type(conn: psycopg.Connection) -> None:
    rows = conn.execute(COLUMN_QUERY, ("pgflow.step_task_record",)).fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("flow_slug", "text"),
        ("run_id", "uuid"),
        ("step_slug", "text"),
        ("input", "jsonb"),
        ("msg_id", "bigint"),
        ("task_index", "integer"),
        ("flow_input", "jsonb"),
    ]


def test_no_enums_domains_or_user_triggers(conn: psycopg.Connection) -> None:
    # Statuses are text with CHECKs; direct UPDATEs in pgTAP must only meet the CHECKs.
    assert (
        one(
            conn,
            "select count(*) from pg_type where typnamespace = 'pgflow'::regnamespace"
            " and typtype in ('e', 'd')",
        )
        == 0
    )
    assert (
        one(
            conn,
            "select count(*) from pg_trigger as t join pg_class as c on c.oid = t.tgrelid"
            " where c.relnamespace = 'pgflow'::regnamespace and not t.tgisinternal",
        )
        == 0
    )


CONSTRAINTS: dict[str, set[str]] = {
    "flows": {
        "flows_pkey",
        "slug_is_valid",
        "opt_max_attempts_is_nonnegative",
        "opt_base_delay_is_nonnegative",
        "opt_timeout_is_positive",
    },
    "steps": {
        "steps_pkey",
        "steps_flow_slug_step_index_key",
        "steps_flow_slug_fkey",
        "steps_deps_count_check",
        "steps_step_slug_check",
        "steps_step_type_check",
        "opt_max_attempts_is_nonnegative",
        "opt_base_delay_is_nonnegative",
        "opt_timeout_is_positive",
        "opt_start_delay_is_nonnegative",
        "required_input_pattern_is_object",
        "forbidden_input_pattern_is_object",
        "when_unmet_is_valid",
        "when_exhausted_is_valid",
    },
    "deps": {
        "deps_pkey",
        "deps_flow_slug_fkey",
        "deps_flow_slug_dep_slug_fkey",
        "deps_flow_slug_step_slug_fkey",
        "deps_check",
    },
    "workers": {"workers_pkey"},
    "runs": {
        "runs_pkey",
        "runs_flow_slug_fkey",
        "runs_remaining_steps_check",
        "completed_at_or_failed_at",
        "completed_at_is_after_started_at",
        "failed_at_is_after_started_at",
        "status_is_valid",
    },
    "step_states": {
        "step_states_pkey",
        "step_states_flow_slug_fkey",
        "step_states_run_id_fkey",
        "step_states_flow_slug_step_slug_fkey",
        "step_states_remaining_deps_check",
        "step_states_initial_tasks_check",
        "status_is_valid",
        "status_and_remaining_tasks_match",
        "remaining_tasks_state_consistency",
        "initial_tasks_known_when_started",
        "output_only_for_completed_or_null",
        "skip_reason_matches_status",
        "completed_at_or_failed_at_or_skipped_at",
        "started_at_is_after_created_at",
        "completed_at_is_after_started_at",
        "failed_at_is_after_started_at",
        "skipped_at_is_after_created_at",
    },
    "step_tasks": {
        "step_tasks_pkey",
        # step_tasks_flow_slug_fkey and step_tasks_run_id_fkey are left out on purpose
        # (README differences: implied by the next one, checked per inserted task).
        "step_tasks_run_id_step_slug_fkey",
        "step_tasks_last_worker_id_fkey",
        "valid_status",
        "output_valid_only_for_completed",
        "attempts_count_nonnegative",
        "completed_at_or_failed_at",
        "completed_at_is_after_queued_at",
        "failed_at_is_after_queued_at",
        "started_at_is_after_queued_at",
        "completed_at_is_after_started_at",
        "failed_at_is_after_started_at",
    },
}


@pytest.mark.parametrize("table", sorted(CONSTRAINTS))
def test_constraint_names(conn: psycopg.Connection, table: str) -> None:
    names = {
        r[0]
        for r in conn.execute(
            "select conname from pg_constraint where conrelid = %s::regclass",
            (f"pgflow.{table}",),
        ).fetchall()
    }
    added = {
        "runs": {
            "runs_restart_of_run_id_fkey",
            "cancelled_at_is_after_started_at",
        }
    }
    assert names == CONSTRAINTS[table] | added.get(table, set())


FOREIGN_KEYS = {
    ("steps", "steps_flow_slug_fkey"): "FOREIGN KEY (flow_slug) REFERENCES pgflow.flows(flow_slug)",
    ("deps", "deps_flow_slug_fkey"): "FOREIGN KEY (flow_slug) REFERENCES pgflow.flows(flow_slug)",
    ("deps", "deps_flow_slug_dep_slug_fkey"): (
        "FOREIGN KEY (flow_slug, dep_slug) REFERENCES pgflow.steps(flow_slug, step_slug)"
    ),
    ("deps", "deps_flow_slug_step_slug_fkey"): (
        "FOREIGN KEY (flow_slug, step_slug) REFERENCES pgflow.steps(flow_slug, step_slug)"
    ),
    ("runs", "runs_flow_slug_fkey"): "FOREIGN KEY (flow_slug) REFERENCES pgflow.flows(flow_slug)",
    ("step_states", "step_states_flow_slug_fkey"): (
        "FOREIGN KEY (flow_slug) REFERENCES pgflow.flows(flow_slug)"
    ),
    (
        "step_states",
        "step_states_run_id_fkey",
    ): "FOREIGN KEY (run_id) REFERENCES pgflow.runs(run_id)",
    ("step_states", "step_states_flow_slug_step_slug_fkey"): (
        "FOREIGN KEY (flow_slug, step_slug) REFERENCES pgflow.steps(flow_slug, step_slug)"
    ),
    ("step_tasks", "step_tasks_run_id_step_slug_fkey"): (
        "FOREIGN KEY (run_id, step_slug) REFERENCES pgflow.step_states(run_id, step_slug)"
    ),
    ("step_tasks", "step_tasks_last_worker_id_fkey"): (
        "FOREIGN KEY (last_worker_id) REFERENCES pgflow.workers(worker_id) ON DELETE SET NULL"
    ),
}


def test_foreign_keys(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "select conrelid::regclass::text, conname, pg_get_constraintdef(oid) from pg_constraint"
        " where connamespace = 'pgflow'::regnamespace and contype = 'f'"
    ).fetchall()
    added = {
        ("runs", "runs_restart_of_run_id_fkey"): (
            "FOREIGN KEY (restart_of_run_id) REFERENCES pgflow.runs(run_id) ON DELETE SET NULL"
        )
    }
    assert {(t.removeprefix("pgflow."), n): d for t, n, d in rows} == FOREIGN_KEYS | added


# (table, index) -> (columns, partial predicate as PostgreSQL prints it)
INDEXES: dict[tuple[str, str], tuple[str, str | None]] = {
    ("flows", "flows_pkey"): ("flow_slug", None),
    ("steps", "steps_pkey"): ("flow_slug, step_slug", None),
    ("steps", "steps_flow_slug_step_index_key"): ("flow_slug, step_index", None),
    ("deps", "deps_pkey"): ("flow_slug, dep_slug, step_slug", None),
    ("deps", "idx_deps_by_flow_step"): ("flow_slug, step_slug", None),
    ("deps", "idx_deps_by_flow_dep"): ("flow_slug, dep_slug", None),
    ("workers", "workers_pkey"): ("worker_id", None),
    ("workers", "idx_workers_queue_name"): ("queue_name", None),
    ("workers", "idx_workers_heartbeat"): ("last_heartbeat_at", None),
    ("runs", "runs_pkey"): ("run_id", None),
    ("runs", "idx_runs_flow_slug"): ("flow_slug", None),
    ("runs", "idx_runs_status"): ("status", None),
    # pgweave's additions (not in pgflow): newest-first keyset listing for the dashboard
    ("runs", "idx_runs_started_at"): ("started_at, run_id", None),
    ("runs", "idx_runs_flow_started_at"): ("flow_slug, started_at, run_id", None),
    ("step_states", "step_states_pkey"): ("run_id, step_slug", None),
    ("step_states", "idx_step_states_ready"): (
        "run_id, status, remaining_deps",
        "((status = 'created'::text) AND (remaining_deps = 0))",
    ),
    ("step_states", "idx_step_states_failed"): ("run_id, step_slug", "(status = 'failed'::text)"),
    ("step_states", "idx_step_states_skipped"): ("run_id, step_slug", "(status = 'skipped'::text)"),
    ("step_states", "idx_step_states_flow_slug"): ("flow_slug", None),
    ("step_states", "idx_step_states_run_id"): ("run_id", None),
    ("step_tasks", "step_tasks_pkey"): ("run_id, step_slug, task_index", None),
    ("step_tasks", "idx_step_tasks_message_id"): ("message_id", None),
    ("step_tasks", "idx_step_tasks_queued"): ("run_id, step_slug", "(status = 'queued'::text)"),
    ("step_tasks", "idx_step_tasks_completed"): (
        "run_id, step_slug",
        "(status = 'completed'::text)",
    ),
    ("step_tasks", "idx_step_tasks_failed"): ("run_id, step_slug", "(status = 'failed'::text)"),
    ("step_tasks", "idx_step_tasks_flow_run_step"): ("flow_slug, run_id, step_slug", None),
    ("step_tasks", "idx_step_tasks_started"): ("started_at", "(status = 'started'::text)"),
    ("step_tasks", "idx_step_tasks_queued_msg"): ("message_id", "(status = 'queued'::text)"),
    ("step_tasks", "idx_step_tasks_last_worker"): ("last_worker_id", "(status = 'started'::text)"),
}


def test_indexes(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "select c.relname, i.relname, pg_get_indexdef(i.oid), pg_get_expr(x.indpred, x.indrelid)"
        " from pg_index as x join pg_class as i on i.oid = x.indexrelid"
        " join pg_class as c on c.oid = x.indrelid"
        " where c.relnamespace = 'pgflow'::regnamespace"
    ).fetchall()
    actual = {}
    for table, index, definition, predicate in rows:
        columns = definition.split(" USING btree (", 1)[1].split(")", 1)[0]
        actual[(table, index)] = (columns, predicate)
    added = {
        ("runs", "idx_runs_idempotency_key"): (
            "idempotency_key",
            "(idempotency_key IS NOT NULL)",
        ),
        ("runs", "idx_runs_restart_of_run_id"): (
            "restart_of_run_id",
            "(restart_of_run_id IS NOT NULL)",
        ),
        # README difference 11: removing a worker finds its tasks by index
        ("step_tasks", "idx_step_tasks_last_worker_id"): ("last_worker_id", None),
    }
    assert actual == INDEXES | added


# Direct writes, as pgTAP makes them, fail with exactly the named constraint (section 5).
VIOLATIONS = [
    ("insert into pgflow.flows (flow_slug) values ('run')", "slug_is_valid", "23514"),
    ("insert into pgflow.flows (flow_slug, opt_max_attempts) values ('x', -1)",
     "opt_max_attempts_is_nonnegative", "23514"),
    ("insert into pgflow.flows (flow_slug, opt_base_delay) values ('x', -1)",
     "opt_base_delay_is_nonnegative", "23514"),
    ("insert into pgflow.flows (flow_slug, opt_timeout) values ('x', 0)",
     "opt_timeout_is_positive", "23514"),
    ("insert into pgflow.steps (flow_slug, step_slug, step_index) values ('nope', 's', 0)",
     "steps_flow_slug_fkey", "23503"),
    ("insert into pgflow.steps (flow_slug, step_slug, step_index) values ('audit', '1x', 9)",
     "steps_step_slug_check", "23514"),
    ("insert into pgflow.steps (flow_slug, step_slug, step_index) values ('audit', 'z', 0)",
     "steps_flow_slug_step_index_key", "23505"),
    ("insert into pgflow.steps (flow_slug, step_slug, step_index, deps_count)"
     " values ('audit', 'z', 9, -1)", "steps_deps_count_check", "23514"),
    ("insert into pgflow.steps (flow_slug, step_slug, step_index, opt_start_delay)"
     " values ('audit', 'z', 9, -1)", "opt_start_delay_is_nonnegative", "23514"),
    ("insert into pgflow.deps (flow_slug, dep_slug, step_slug) values ('audit', 'root', 'root')",
     "deps_check", "23514"),
    ("insert into pgflow.deps (flow_slug, dep_slug, step_slug) values ('audit', 'nope', 'root')",
     "deps_flow_slug_dep_slug_fkey", "23503"),
    ("insert into pgflow.deps (flow_slug, dep_slug, step_slug) values ('audit', 'root', 'nope')",
     "deps_flow_slug_step_slug_fkey", "23503"),
    ("update pgflow.runs set status = 'paused'", "status_is_valid", "23514"),
    ("update pgflow.runs set remaining_steps = -1", "runs_remaining_steps_check", "23514"),
    ("update pgflow.runs set completed_at = now(), failed_at = now()",
     "completed_at_or_failed_at", "23514"),
    ("update pgflow.runs set completed_at = started_at - interval '1 s'",
     "completed_at_is_after_started_at", "23514"),
    ("update pgflow.runs set failed_at = started_at - interval '1 s'",
     "failed_at_is_after_started_at", "23514"),
    ("update pgflow.step_states set status = 'done'", "status_is_valid", "23514"),
    ("update pgflow.step_states set remaining_deps = -1", "step_states_remaining_deps_check",
     "23514"),
    ("update pgflow.step_states set initial_tasks = -1", "step_states_initial_tasks_check",
     "23514"),
    ("update pgflow.step_states set status = 'completed', remaining_tasks = 1"
     " where step_slug = 'root'", "status_and_remaining_tasks_match", "23514"),
    ("update pgflow.step_states set remaining_tasks = 1 where status = 'created'",
     "remaining_tasks_state_consistency", "23514"),
    ("update pgflow.step_states set status = 'started', initial_tasks = null"
     " where step_slug = 'leaf'", "initial_tasks_known_when_started", "23514"),
    ("update pgflow.step_states set output = '1' where step_slug = 'root'",
     "output_only_for_completed_or_null", "23514"),
    ("update pgflow.step_states set status = 'skipped', remaining_tasks = null"
     " where step_slug = 'leaf'", "skip_reason_matches_status", "23514"),
    ("update pgflow.step_states set skip_reason = 'condition_unmet' where step_slug = 'leaf'",
     "skip_reason_matches_status", "23514"),
    ("update pgflow.step_states set completed_at = now(), skipped_at = now()"
     " where step_slug = 'leaf'", "completed_at_or_failed_at_or_skipped_at", "23514"),
    ("update pgflow.step_states set started_at = created_at - interval '1 s'",
     "started_at_is_after_created_at", "23514"),
    ("update pgflow.step_states set skipped_at = created_at - interval '1 s'",
     "skipped_at_is_after_created_at", "23514"),
    ("update pgflow.step_states set failed_at = started_at - interval '1 s'"
     " where step_slug = 'root'", "failed_at_is_after_started_at", "23514"),
    ("update pgflow.step_tasks set status = 'running'", "valid_status", "23514"),
    ("update pgflow.step_tasks set output = '1'", "output_valid_only_for_completed", "23514"),
    ("update pgflow.step_tasks set attempts_count = -1", "attempts_count_nonnegative", "23514"),
    ("update pgflow.step_tasks set completed_at = now(), failed_at = now()",
     "completed_at_or_failed_at", "23514"),
    ("update pgflow.step_tasks set started_at = queued_at - interval '1 s'",
     "started_at_is_after_queued_at", "23514"),
    ("update pgflow.step_tasks set completed_at = queued_at - interval '1 s'",
     "completed_at_is_after_queued_at", "23514"),
    ("update pgflow.step_tasks set failed_at = queued_at - interval '1 s'",
     "failed_at_is_after_queued_at", "23514"),
    ("update pgflow.step_tasks set started_at = queued_at + interval '1 h',"
     " completed_at = queued_at + interval '1 s'", "completed_at_is_after_started_at", "23514"),
    ("update pgflow.step_tasks set started_at = queued_at + interval '1 h',"
     " failed_at = queued_at + interval '1 s'", "failed_at_is_after_started_at", "23514"),
]  # fmt: skip


@pytest.mark.parametrize(("statement", "constraint", "sqlstate"), VIOLATIONS)
def test_direct_write_fails_with_the_named_constraint(
    conn: psycopg.Connection, statement: str, constraint: str, sqlstate: str
) -> None:
    define_flow(conn)
    conn.execute("select pgflow.start_flow('audit', '{}')")
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    assert caught.value.sqlstate == sqlstate
    assert caught.value.diag.constraint_name == constraint


def test_postgres_own_constraint_texts(conn: psycopg.Connection) -> None:
    define_flow(conn)
    expected = [
        (
            "select pgflow.add_step('audit', 'bad-slug')",
            'new row for relation "steps" violates check constraint "steps_step_slug_check"',
        ),
        (
            "select pgflow.add_step('audit', 'x', array['nope'])",
            'insert or update on table "deps" violates foreign key constraint'
            ' "deps_flow_slug_dep_slug_fkey"',
        ),
        (
            "insert into pgflow.steps (flow_slug, step_slug, step_index) values ('audit', 'z', 0)",
            'duplicate key value violates unique constraint "steps_flow_slug_step_index_key"',
        ),
    ]
    for statement, text in expected:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(statement)
        assert caught.value.diag.message_primary == text


def test_checks_allow_the_boundaries_pgtap_writes(tx: psycopg.Connection) -> None:
    # Equal timestamps (constant now() in a transaction), NULL options and NULL patterns
    # pass; a NULL started_at never trips the *_is_after_started_at checks.
    define_flow(tx)
    tx.execute(
        "insert into pgflow.steps (flow_slug, step_slug, step_index, step_type, opt_max_attempts,"
        " opt_base_delay, opt_timeout, opt_start_delay) values ('audit', 'extra', 10, 'single',"
        " 0, 0, 1, 0)"
    )
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '{}')")
    tx.execute(
        "update pgflow.step_tasks set status = 'completed', completed_at = queued_at,"
        " started_at = null, output = '1' where run_id = %s",
        (run_id,),
    )
    tx.execute(
        "update pgflow.step_states set status = 'completed', remaining_tasks = 0,"
        " started_at = created_at, completed_at = created_at, output = '{}'"
        " where run_id = %s and step_slug = 'root'",
        (run_id,),
    )
    tx.execute(
        "update pgflow.runs set status = 'completed', completed_at = started_at,"
        " remaining_steps = 0 where run_id = %s",
        (run_id,),
    )


# ---------------------------------------------------------------------------------------
# 3. Functions: names, argument names/order/defaults, results, language, volatility,
#    security (difference 6: every function a role may call is definer, e.g. create_flow,
#    add_step, start_flow, start_tasks, complete_task, fail_task); every function has
#    search_path ''.
# ---------------------------------------------------------------------------------------

N = "DEFAULT NULL::integer"
FUNCTIONS: dict[str, tuple[str, str, str, str, bool]] = {
    "is_local": ("", "boolean", "sql", "s", False),
    "is_valid_slug": ("slug text", "boolean", "plpgsql", "i", False),
    "calculate_retry_delay": (
        "base_delay numeric, attempts_count integer", "integer", "sql", "i", False),
    "create_flow": (
        f"flow_slug text, max_attempts integer {N}, base_delay integer {N}, timeout integer {N}",
        "pgflow.flows", "sql", "v", True),
    "add_step": (
        "flow_slug text, step_slug text, deps_slugs text[] DEFAULT '{}'::text[],"
        f" max_attempts integer {N}, base_delay integer {N}, timeout integer {N},"
        f" start_delay integer {N}, step_type text DEFAULT 'single'::text,"
        " required_input_pattern jsonb DEFAULT NULL::jsonb,"
        " forbidden_input_pattern jsonb DEFAULT NULL::jsonb,"
        " when_unmet text DEFAULT 'skip'::text, when_exhausted text DEFAULT 'fail'::text",
        "pgflow.steps", "plpgsql", "v", True),
    "start_flow": (
        "flow_slug text, input jsonb, run_id uuid DEFAULT NULL::uuid",
        "SETOF pgflow.runs", "plpgsql", "v", True),
    "start_flow_with_states": (
        "flow_slug text, input jsonb, run_id uuid DEFAULT NULL::uuid",
        "jsonb", "plpgsql", "v", True),
    "get_run_with_states": ("run_id uuid", "jsonb", "sql", "v", True),
    "cascade_resolve_conditions": ("run_id uuid", "boolean", "plpgsql", "v", False),
    "cascade_complete_taskless_steps": ("run_id uuid", "integer", "plpgsql", "v", False),
    "start_ready_steps": ("run_id uuid", "void", "plpgsql", "v", False),
    "start_tasks": (
        "flow_slug text, msg_ids bigint[], worker_id uuid",
        "SETOF pgflow.step_task_record", "sql", "v", True),
    "set_vt_batch": (
        "queue_name text, msg_ids bigint[], vt_offsets integer[]",
        f"TABLE(msg_id bigint, read_ct integer, enqueued_at {TSTZ}, vt {TSTZ}, message jsonb,"
        " headers jsonb)",
        "plpgsql", "v", False),
    "complete_task": (
        "run_id uuid, step_slug text, task_index integer, output jsonb",
        "SETOF pgflow.step_tasks", "plpgsql", "v", True),
    "fail_task": (
        "run_id uuid, step_slug text, task_index integer, error_message text",
        "SETOF pgflow.step_tasks", "plpgsql", "v", True),
    "maybe_complete_run": ("run_id uuid", "void", "plpgsql", "v", False),
    "_cascade_force_skip_steps": (
        "run_id uuid, step_slug text, skip_reason text", "integer", "plpgsql", "v", False),
    "_archive_task_message": (
        "p_run_id uuid, p_step_slug text, p_task_index integer", "void", "sql", "v", False),
    "_get_flow_shape": ("p_flow_slug text", "jsonb", "sql", "s", False),
    "_compare_flow_shapes": ("p_local jsonb, p_db jsonb", "text[]", "plpgsql", "s", False),
    "_create_flow_from_shape": ("p_flow_slug text, p_shape jsonb", "void", "plpgsql", "v", False),
    "ensure_flow_compiled": (
        "flow_slug text, shape jsonb, allow_data_loss boolean DEFAULT false",
        "jsonb", "plpgsql", "v", True),
    "delete_flow_and_data": ("p_flow_slug text", "void", "plpgsql", "v", True),
    "poll_for_tasks": (
        "queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5,"
        " poll_interval_ms integer DEFAULT 100",
        "SETOF pgflow.step_task_record", "plpgsql", "v", False),
    "mark_worker_stopped": ("worker_id uuid", "void", "sql", "v", True),
    "requeue_stalled_tasks": ("", "integer", "plpgsql", "v", True),
    "setup_requeue_stalled_tasks_cron": (
        "cron_interval text DEFAULT '15 seconds'::text", "text", "plpgsql", "v", True),
    # installed by us (difference 5); pgflow's tests CREATE OR REPLACE it with this signature
    "prune_data_older_than": ("retention_interval interval", "void", "plpgsql", "v", True),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_signature_and_attributes(conn: psycopg.Connection, name: str) -> None:
    rows = conn.execute(
        "select pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), l.lanname,"
        " p.provolatile, p.prosecdef, p.proconfig"
        " from pg_proc as p join pg_language as l on l.oid = p.prolang"
        " where p.pronamespace = 'pgflow'::regnamespace and p.proname = %s",
        (name,),
    ).fetchall()
    assert len(rows) == 1, "exactly one overload"
    *attributes, config = rows[0]
    assert tuple(attributes) == FUNCTIONS[name]
    assert config == ['search_path=""']


def test_parallel_safety_where_the_contract_says_so(conn: psycopg.Connection) -> None:
    for name in ("is_local", "calculate_retry_delay"):
        parallel = one(
            conn,
            "select proparallel from pg_proc where pronamespace = 'pgflow'::regnamespace"
            " and proname = %s",
            name,
        )
        assert parallel == "s"


@pytest.mark.parametrize(
    "name",
    [
        # difference 1: no Supabase platform pieces
        "ensure_workers",
        "track_worker_function",
        "cleanup_ensure_workers_logs",
        "setup_ensure_workers_cron",
        # removed by pgflow 0.8.0
        "read_with_poll",
    ],
)
def test_functions_absent(conn: psycopg.Connection, name: str) -> None:
    assert (
        one(
            conn,
            "select count(*) from pg_proc where pronamespace = 'pgflow'::regnamespace"
            " and proname = %s",
            name,
        )
        == 0
    )


def test_every_named_argument_call_resolves(tx: psycopg.Connection) -> None:
    # pgTAP calls with named arguments exactly as listed in section 3.
    tx.execute(
        "select pgflow.create_flow(flow_slug => 'named', max_attempts => 1, base_delay => 2,"
        " timeout => 3)"
    )
    tx.execute(
        "select pgflow.add_step(flow_slug => 'named', step_slug => 'a', deps_slugs => '{}',"
        " max_attempts => 1, base_delay => 1, timeout => 5, start_delay => 0,"
        " step_type => 'single', required_input_pattern => null,"
        " forbidden_input_pattern => '{\"x\": 1}', when_unmet => 'skip',"
        " when_exhausted => 'fail')"
    )
    run_id = one(
        tx,
        "select run_id from pgflow.start_flow(flow_slug => 'named', input => '{}',"
        " run_id => '00000000-0000-0000-0000-000000000001')",
    )
    assert str(run_id) == "00000000-0000-0000-0000-000000000001"
    for call in (
        "pgflow.cascade_resolve_conditions(run_id => %(r)s)",
        "pgflow.cascade_complete_taskless_steps(run_id => %(r)s)",
        "pgflow.start_ready_steps(run_id => %(r)s)",
        "pgflow.maybe_complete_run(run_id => %(r)s)",
        "pgflow.get_run_with_states(run_id => %(r)s)",
        "pgflow._archive_task_message(p_run_id => %(r)s, p_step_slug => 'a', p_task_index => 0)",
        "pgflow.complete_task(run_id => %(r)s, step_slug => 'a', task_index => 0, output => '1')",
        "pgflow.fail_task(run_id => %(r)s, step_slug => 'a', task_index => 0,"
        " error_message => 'e')",
        "pgflow._cascade_force_skip_steps(run_id => %(r)s, step_slug => 'a',"
        " skip_reason => 'condition_unmet')",
        "pgflow.start_tasks(flow_slug => 'named', msg_ids => '{}', worker_id => %(r)s)",
        "pgflow.set_vt_batch(queue_name => 'named', msg_ids => '{}', vt_offsets => '{}')",
        "pgflow.poll_for_tasks(queue_name => 'named', vt => 1, qty => 1,"
        " max_poll_seconds => 0, poll_interval_ms => 10)",
        "pgflow.calculate_retry_delay(base_delay => 1, attempts_count => 1)",
        "pgflow.is_valid_slug(slug => 'a')",
        "pgflow._get_flow_shape(p_flow_slug => 'named')",
        "pgflow._compare_flow_shapes(p_local => '{}', p_db => '{}')",
        "pgflow._create_flow_from_shape(p_flow_slug => 'shaped', p_shape => '{\"steps\": []}')",
        "pgflow.ensure_flow_compiled(flow_slug => 'shaped', shape => '{\"steps\": []}',"
        " allow_data_loss => false)",
        "pgflow.start_flow_with_states(flow_slug => 'named', input => '{}', run_id => null)",
        "pgflow.mark_worker_stopped(worker_id => %(r)s)",
        "pgflow.delete_flow_and_data(p_flow_slug => 'shaped')",
        "pgflow.prune_data_older_than(retention_interval => interval '1 day')",
    ):
        tx.execute(f"select {call}", {"r": run_id})


def test_setup_requeue_cron_takes_cron_interval(conn: psycopg.Connection) -> None:
    # Without pg_cron it refuses clearly; the named argument resolves either way.
    with pytest.raises(errors.RaiseException, match="pg_cron is not installed"):
        conn.execute("select pgflow.setup_requeue_stalled_tasks_cron(cron_interval => '5 seconds')")


# ---------------------------------------------------------------------------------------
# 3.1 Semantics (the rest is in test_definition, test_start_flow, test_start_tasks,
#     test_complete_task, test_fail_task, test_cascades, test_maps, test_flow_shapes,
#     test_requeue, test_set_vt_batch, test_delete_flow)
# ---------------------------------------------------------------------------------------


def test_is_local_toggled_with_set_config_is_local(tx: psycopg.Connection) -> None:
    assert one(tx, "select pgflow.is_local()") is False
    tx.execute("select set_config('app.settings.jwt_secret', %s, true)", (LOCAL_JWT_SECRET,))
    assert one(tx, "select pgflow.is_local()") is True
    tx.execute("select set_config('app.settings.jwt_secret', '', true)")
    assert one(tx, "select pgflow.is_local()") is False
    tx.execute("select set_config('app.settings.jwt_secret', 'another-secret', true)")
    assert one(tx, "select pgflow.is_local()") is False
    # difference 1: the plain-PostgreSQL switch
    tx.execute("select set_config('pgflow.local', 'on', true)")
    assert one(tx, "select pgflow.is_local()") is True


def test_create_flow_defaults_and_returns_existing_row_unchanged(tx: psycopg.Connection) -> None:
    first = fetch(tx, "select * from pgflow.create_flow('cf')")[0]
    assert (first["opt_max_attempts"], first["opt_base_delay"], first["opt_timeout"]) == (3, 5, 60)
    again = fetch(tx, "select * from pgflow.create_flow('cf', 9, 9, 9)")[0]
    assert again == first
    assert one(tx, "select count(*) from pgmq.list_queues() where queue_name = 'cf'") == 1


def test_add_step_is_idempotent_and_returns_existing_row(tx: psycopg.Connection) -> None:
    tx.execute("select pgflow.create_flow('as')")
    first = fetch(tx, "select * from pgflow.add_step('as', 'a', max_attempts => 7)")[0]
    again = fetch(
        tx,
        "select * from pgflow.add_step('as', 'a', step_type => 'map', max_attempts => 1,"
        " when_unmet => 'fail')",
    )[0]
    assert again == first
    assert (first["step_index"], first["deps_count"], first["step_type"]) == (0, 0, "single")
    second = fetch(tx, "select * from pgflow.add_step('as', 'b', deps_slugs => null)")[0]
    assert (second["step_index"], second["deps_count"]) == (1, 0)


ADD_STEP_ERRORS = [
    ("pgflow.add_step(flow_slug => 'nope', step_slug => 'a')", "steps_flow_slug_fkey", "23503"),
    (
        "pgflow.add_step(flow_slug => 'audit', step_slug => 'x', deps_slugs => array['nope'])",
        "deps_flow_slug_dep_slug_fkey",
        "23503",
    ),
    (
        "pgflow.add_step(flow_slug => 'audit', step_slug => 'x', deps_slugs => array['x'])",
        "deps_check",
        "23514",
    ),
    ("pgflow.add_step(flow_slug => 'audit', step_slug => 'run')", "steps_step_slug_check", "23514"),
    (
        "pgflow.add_step(flow_slug => 'audit', step_slug => 'x', step_type => 'loop')",
        "steps_step_type_check",
        "23514",
    ),
    (
        "pgflow.add_step(flow_slug => 'audit', step_slug => 'x', when_unmet => 'ignore')",
        "when_unmet_is_valid",
        "23514",
    ),
    (
        "pgflow.add_step(flow_slug => 'audit', step_slug => 'x', when_exhausted => 'retry')",
        "when_exhausted_is_valid",
        "23514",
    ),
    (
        "pgflow.add_step(flow_slug => 'audit', step_slug => 'x',"
        " required_input_pattern => '[1]')",
        "required_input_pattern_is_object",
        "23514",
    ),
    (
        "pgflow.add_step(flow_slug => 'audit', step_slug => 'x',"
        " forbidden_input_pattern => '\"s\"')",
        "forbidden_input_pattern_is_object",
        "23514",
    ),
    (
        "pgflow.add_step(flow_slug => 'audit', step_slug => 'x', start_delay => -1)",
        "opt_start_delay_is_nonnegative",
        "23514",
    ),
    (
        "pgflow.add_step(flow_slug => 'audit', step_slug => 'x', timeout => 0)",
        "opt_timeout_is_positive",
        "23514",
    ),
    ("pgflow.create_flow(flow_slug => 'bad-slug')", "slug_is_valid", "23514"),
    ("pgflow.create_flow(flow_slug => 'ok', max_attempts => -1)",
     "opt_max_attempts_is_nonnegative", "23514"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "constraint", "sqlstate"), ADD_STEP_ERRORS)
def test_definition_errors_are_postgres_constraint_errors(
    conn: psycopg.Connection, call: str, constraint: str, sqlstate: str
) -> None:
    # no pre-validation with texts of our own (3.1 add_step, create_flow)
    define_flow(conn)
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(f"select {call}")
    assert caught.value.sqlstate == sqlstate
    assert caught.value.diag.constraint_name == constraint
    # an invalid flow never reached pgmq
    assert one(conn, "select count(*) from pgmq.list_queues()") == 1


def test_add_step_map_with_two_deps_raises_before_anything_else(tx: psycopg.Connection) -> None:
    # even for an unknown flow: the map check comes first
    with pytest.raises(errors.RaiseException) as caught:
        tx.execute("select pgflow.add_step('nope', 'm', array['a', 'b'], step_type => 'map')")
    assert caught.value.diag.message_primary == (
        'Map step "m" can have at most one dependency, but 2 were provided: a, b'
    )
    assert caught.value.sqlstate == "P0001"


def test_get_run_with_states_shape(tx: psycopg.Connection) -> None:
    define_flow(tx)
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '{\"k\": 1}')")
    result = one(tx, "select pgflow.get_run_with_states(%s)", run_id)
    assert set(result) == {"run", "steps"}
    assert set(result["run"]) == {c[0] for c in COLUMNS["runs"] + RUN_CONTROL_COLUMNS["runs"]}
    assert len(result["steps"]) == 4
    for step in result["steps"]:
        assert set(step) == {c[0] for c in COLUMNS["step_states"]}
    assert one(tx, "select pgflow.get_run_with_states(gen_random_uuid())") is None


def test_get_run_with_states_of_a_run_without_steps(tx: psycopg.Connection) -> None:
    tx.execute("select pgflow.create_flow('empty')")
    result = one(tx, "select pgflow.start_flow_with_states('empty', '{}')")
    assert result["steps"] == []
    assert result["run"]["status"] == "completed"


def test_get_run_with_states_sees_a_run_started_in_the_same_statement(
    tx: psycopg.Connection,
) -> None:
    # volatile, as in pgflow: a stable function would read the statement's first snapshot
    define_flow(tx)
    result = one(
        tx, "select pgflow.get_run_with_states(r.run_id) from pgflow.start_flow('audit', '{}') as r"
    )
    assert result is not None
    assert result["run"]["status"] == "started"


def test_start_tasks_record_columns_in_order(tx: psycopg.Connection) -> None:
    define_flow(tx)
    tx.execute("select pgflow.start_flow('audit', '{\"k\": 1}')")
    tx.execute(
        "insert into pgflow.workers (worker_id, queue_name, function_name)"
        " values ('11111111-1111-1111-1111-111111111111', 'audit', 'test_worker')"
    )
    with tx.cursor() as cur:
        cur.execute(
            "select * from pgflow.start_tasks('audit',"
            " array(select msg_id from pgmq.read('audit', 10, 10)),"
            " '11111111-1111-1111-1111-111111111111')"
        )
        assert cur.description is not None
        assert [c.name for c in cur.description] == [
            "flow_slug",
            "run_id",
            "step_slug",
            "input",
            "msg_id",
            "task_index",
            "flow_input",
        ]
        row = cur.fetchone()
    assert row is not None
    # root single: input {} and the flow input
    assert (row[3], row[6]) == ({}, {"k": 1})


def test_poll_for_tasks_is_a_notice_only_stub(tx: psycopg.Connection) -> None:
    define_flow(tx)
    tx.execute("select pgflow.start_flow('audit', '{}')")
    notices: list[str] = []
    tx.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    assert fetch(tx, "select * from pgflow.poll_for_tasks('audit', 1, 10)") == []
    assert len(notices) == 1
    assert "deprecated" in notices[0]
    # nothing was read
    assert one(tx, "select max(read_ct) from pgmq.q_audit") == 0


def test_set_vt_batch_texts_and_missing_queue(tx: psycopg.Connection) -> None:
    assert fetch(tx, "select * from pgflow.set_vt_batch('nope', null, '{1}')") == []
    with pytest.raises(errors.RaiseException) as caught:
        tx.execute("select * from pgflow.set_vt_batch('nope', '{1, 2}', '{1}')")
    assert (
        caught.value.diag.message_primary == "msg_ids length (2) must equal vt_offsets length (1)"
    )


def test_set_vt_batch_on_a_missing_queue_raises_pgmq_42p01(conn: psycopg.Connection) -> None:
    with pytest.raises(errors.UndefinedTable) as caught:
        conn.execute("select * from pgflow.set_vt_batch('nope', '{}', '{}')")
    assert caught.value.diag.message_primary == 'relation "pgmq.q_nope" does not exist'


def test_force_skip_of_unknown_run_text(conn: psycopg.Connection) -> None:
    run_id = uuid.uuid4()
    with pytest.raises(errors.RaiseException) as caught:
        conn.execute(
            "select pgflow._cascade_force_skip_steps(%s, 'a', 'condition_unmet')", (run_id,)
        )
    assert caught.value.diag.message_primary == f"Run not found: {run_id}"


@pytest.mark.parametrize(
    ("flow_input", "text"),
    [
        (None, "Flow rm has root map steps but input is NULL"),
        ("null", "Flow rm has root map steps but input is not an array (got null)"),
        ('{"a": 1}', "Flow rm has root map steps but input is not an array (got object)"),
        ('"s"', "Flow rm has root map steps but input is not an array (got string)"),
        ("1", "Flow rm has root map steps but input is not an array (got number)"),
        ("true", "Flow rm has root map steps but input is not an array (got boolean)"),
    ],
)
def test_root_map_input_texts(conn: psycopg.Connection, flow_input: str | None, text: str) -> None:
    conn.execute("select pgflow.create_flow('rm')")
    conn.execute("select pgflow.add_step('rm', 'm', step_type => 'map')")
    with pytest.raises(errors.RaiseException) as caught:
        conn.execute("select pgflow.start_flow('rm', %s::jsonb)", (flow_input,))
    assert caught.value.diag.message_primary == text
    assert caught.value.sqlstate == "P0001"


def test_unknown_flow_and_null_input_fail_on_the_runs_constraints(conn: psycopg.Connection) -> None:
    with pytest.raises(errors.ForeignKeyViolation) as fk:
        conn.execute("select pgflow.start_flow('nope', '{}')")
    assert fk.value.diag.constraint_name == "runs_flow_slug_fkey"
    conn.execute("select pgflow.create_flow('plain')")
    with pytest.raises(errors.NotNullViolation) as nn:
        conn.execute("select pgflow.start_flow('plain', null)")
    assert nn.value.diag.column_name == "input"


def test_taskless_single_step_completes_with_null_output(tx: psycopg.Connection) -> None:
    # cascade_complete_taskless_steps called directly after a direct UPDATE (pgTAP style):
    # a single step completes with output NULL, started_at = completed_at, no task.
    define_flow(tx)
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '{}')")
    tx.execute(
        "update pgflow.step_states set remaining_deps = 0, initial_tasks = 0"
        " where run_id = %s and step_slug = 'left'",
        (run_id,),
    )
    assert one(tx, "select pgflow.cascade_complete_taskless_steps(%s)", run_id) == 1
    state = fetch(
        tx, "select * from pgflow.step_states where run_id = %s and step_slug = 'left'", run_id
    )[0]
    assert (state["status"], state["output"], state["remaining_tasks"]) == ("completed", None, 0)
    assert state["started_at"] == state["completed_at"]
    assert (
        one(
            tx,
            "select remaining_deps from pgflow.step_states where run_id = %s"
            " and step_slug = 'leaf'",
            run_id,
        )
        == 1
    )
    assert one(tx, "select remaining_steps from pgflow.runs where run_id = %s", run_id) == 3
    assert one(tx, "select count(*) from pgflow.step_tasks where step_slug = 'left'") == 0


# ---------------------------------------------------------------------------------------
# 3.3 Map and retry rules (the rest is in test_maps and test_retries)
# ---------------------------------------------------------------------------------------


def test_start_delay_applies_to_the_first_send_only(tx: psycopg.Connection) -> None:
    tx.execute("select pgflow.create_flow('sd', max_attempts => 3, base_delay => 1)")
    tx.execute("select pgflow.add_step('sd', 'a', start_delay => 100)")
    run_id = one(tx, "select run_id from pgflow.start_flow('sd', '{}')")
    first = one(tx, "select floor(extract(epoch from vt - enqueued_at))::int from pgmq.q_sd")
    assert first == 100
    tx.execute("update pgmq.q_sd set vt = now()")
    [task] = read_and_start(tx, "sd")
    assert task["step_slug"] == "a"
    tx.execute("select pgflow.fail_task(%s, 'a', 0, 'a FAILED')", (run_id,))
    retry = one(tx, "select floor(extract(epoch from vt - enqueued_at))::int from pgmq.q_sd")
    # backoff 2 x base_delay, not the start delay
    assert retry == one(tx, "select pgflow.calculate_retry_delay(1, 1)") == 2


# ---------------------------------------------------------------------------------------
# 3.2 Events through realtime.send (pgTAP's realtime.messages, no extra columns)
# ---------------------------------------------------------------------------------------

REALTIME = """
create schema realtime;
create table realtime.messages (
  id uuid not null default gen_random_uuid(),
  topic text not null,
  extension text not null default 'broadcast',
  payload jsonb,
  event text,
  private boolean default true,
  inserted_at timestamp not null default now(),
  updated_at timestamp not null default now()
);
create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
returns void language plpgsql as $$
begin
  insert into realtime.messages (payload, event, topic, private, extension)
  values (payload, event, topic, private, 'broadcast');
end
$$;
create table realtime.trigger_log (n bigserial, event text);
create function realtime.log_insert() returns trigger language plpgsql as $$
begin
  insert into realtime.trigger_log (event) values (new.event);
  return new;
end
$$;
create trigger log_insert after insert on realtime.messages
  for each row execute function realtime.log_insert();
"""


def test_one_realtime_send_per_event_in_contract_order(tx: psycopg.Connection) -> None:
    tx.execute(REALTIME.encode())
    define_flow(tx)
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '{}')")
    [root] = read_and_start(tx, "audit")
    tx.execute("select pgflow.complete_task(%s, 'root', 0, '{\"ok\": true}')", (run_id,))
    for task in read_and_start(tx, "audit", qty=2):
        tx.execute("select pgflow.complete_task(%s, %s, 0, '1')", (run_id, task["step_slug"]))
    [leaf] = read_and_start(tx, "audit")
    tx.execute("select pgflow.complete_task(%s, 'leaf', 0, '\"done\"')", (run_id,))
    assert root["step_slug"] == "root"
    assert leaf["step_slug"] == "leaf"

    logged = [r[0] for r in tx.execute("select event from realtime.trigger_log order by n")]
    # the AFTER INSERT trigger saw each event exactly once, in the order it was sent
    assert logged == [
        "run:started",
        "step:root:started",
        "step:root:completed",
        "step:left:started",
        "step:right:started",
        "step:left:completed",
        "step:right:completed",
        "step:leaf:started",
        "step:leaf:completed",
        "run:completed",
    ]
    rows = fetch(tx, "select topic, private, extension, event, payload from realtime.messages")
    assert {(r["topic"], r["private"], r["extension"]) for r in rows} == {
        (f"pgflow:run:{run_id}", False, "broadcast")
    }
    # all inserted_at equal inside the transaction
    assert one(tx, "select count(distinct inserted_at) from realtime.messages") == 1
    # pgflow's helpers read these payload keys
    for row in rows:
        assert row["payload"]["run_id"] == str(run_id)
        event_type = row["payload"]["event_type"]
        assert row["event"] in (
            event_type,
            event_type.replace(":", f":{row['payload'].get('step_slug')}:"),
        )
    output = one(
        tx,
        "select payload -> 'output' from realtime.messages where event = 'run:completed'",
    )
    assert output == {"leaf": "done"}


# ---------------------------------------------------------------------------------------
# 4. What pgflow's pgTAP suite touches directly
# ---------------------------------------------------------------------------------------

RESET_DB = """
delete from pgflow.step_tasks;
delete from pgflow.step_states;
delete from pgflow.runs;
delete from pgflow.deps;
delete from pgflow.steps;
delete from pgflow.flows;
select pgmq.drop_queue(queue_name) from pgmq.list_queues();
"""


def test_reset_db_deletes_in_pgflows_order(tx: psycopg.Connection) -> None:
    define_flow(tx)
    tx.execute("select pgflow.start_flow('audit', '{}')")
    read_and_start(tx, "audit")
    tx.execute(RESET_DB.encode())
    for table in COLUMNS:
        if table != "workers":
            assert one(tx, f"select count(*) from pgflow.{table}") == 0
    assert one(tx, "select count(*) from pgmq.list_queues()") == 0
    # and the engine works again from scratch in the same transaction
    define_flow(tx)
    tx.execute("select pgflow.start_flow('audit', '{}')")


def test_direct_inserts_of_steps_and_workers(tx: psycopg.Connection) -> None:
    tx.execute("select pgflow.create_flow('direct')")
    tx.execute(
        "insert into pgflow.steps (flow_slug, step_slug, step_index) values ('direct', 'a', 0)"
    )
    tx.execute(
        "insert into pgflow.workers (worker_id, queue_name, function_name, last_heartbeat_at)"
        " values ('11111111-1111-1111-1111-111111111111', 'direct', 'test_worker', now())"
        " on conflict (worker_id) do update set last_heartbeat_at = now()"
    )
    run = fetch(tx, "select * from pgflow.start_flow('direct', '{}')")[0]
    assert run["remaining_steps"] == 1
    assert [t["step_slug"] for t in read_and_start(tx, "direct")] == ["a"]


def test_a_whole_run_with_a_retry_in_one_transaction(tx: psycopg.Connection) -> None:
    # now() is constant: every timestamp is equal and all >= checks must pass.
    define_flow(tx)
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '\"in\"')")
    [root] = read_and_start(tx, "audit")
    assert root["flow_input"] == "in"
    # poll_and_fail: attempt 1 of 2 fails -> queued again with backoff 2 x base_delay
    task = fetch(tx, "select * from pgflow.fail_task(%s, 'root', 0, 'root FAILED')", run_id)[0]
    assert (task["status"], task["attempts_count"], task["error_message"]) == (
        "queued",
        1,
        "root FAILED",
    )
    # assert_retry_delay: vt - enqueued_at in whole seconds vs calculate_retry_delay
    delay = one(
        tx,
        "select floor(extract(epoch from (q.vt - q.enqueued_at)))::int"
        " from pgmq.q_audit as q join pgflow.step_tasks as t on t.message_id = q.msg_id"
        " where t.run_id = %s and t.step_slug = 'root'",
        run_id,
    )
    assert delay == one(tx, "select pgflow.calculate_retry_delay(1, 1)") == 2
    # reset_message_visibility
    tx.execute(
        sql.SQL("update pgmq.{} set vt = now()").format(
            sql.Identifier(one(tx, "select pgmq.format_table_name('audit', 'q')"))
        )
    )
    [root] = read_and_start(tx, "audit")
    # poll_and_complete: {"input": <task input>}
    tx.execute(
        "select pgflow.complete_task(%s, 'root', 0, jsonb_build_object('input', %s::jsonb))",
        (run_id, Jsonb(root["input"])),
    )
    for task in read_and_start(tx, "audit", qty=5):
        tx.execute(
            "select pgflow.complete_task(%s, %s, %s, '{}')",
            (run_id, task["step_slug"], task["task_index"]),
        )
    [leaf] = read_and_start(tx, "audit")
    assert leaf["input"] == {"left": {}, "right": {}}
    assert leaf["flow_input"] is None
    tx.execute("select pgflow.complete_task(%s, 'leaf', 0, 'null')", (run_id,))
    run = fetch(tx, "select * from pgflow.runs where run_id = %s", run_id)[0]
    assert run["status"] == "completed"
    assert run["completed_at"] == run["started_at"]
    assert run["output"] == {"leaf": None}


def test_set_flow_timestamps_style_direct_updates(tx: psycopg.Connection) -> None:
    # set_completed/failed/running_flow_timestamps move runs days back and set statuses
    define_flow(tx)
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '{}')")
    read_and_start(tx, "audit")
    tx.execute(
        "update pgflow.runs set status = 'failed', started_at = now() - interval '10 days',"
        " failed_at = now() - interval '10 days' where run_id = %s",
        (run_id,),
    )
    tx.execute(
        "update pgflow.step_states set created_at = now() - interval '10 days',"
        " started_at = now() - interval '10 days' where run_id = %s and status = 'started'",
        (run_id,),
    )
    tx.execute(
        "update pgflow.step_states set status = 'failed', failed_at = now() - interval '9 days'"
        " where run_id = %s and status = 'started'",
        (run_id,),
    )
    tx.execute(
        "update pgflow.step_tasks set status = 'failed', queued_at = now() - interval '10 days',"
        " started_at = now() - interval '10 days', failed_at = now() - interval '9 days',"
        " attempts_count = 3, message_id = null where run_id = %s",
        (run_id,),
    )
    tx.execute("select pgflow.prune_data_older_than(interval '7 days')")
    assert one(tx, "select count(*) from pgflow.runs") == 0


def test_helpers_read_queue_tables_via_format_table_name(tx: psycopg.Connection) -> None:
    define_flow(tx)
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '{}')")
    table = one(tx, "select pgmq.format_table_name('audit', 'q')")
    assert table == "q_audit"
    timing = fetch(
        tx,
        sql.SQL(
            "select q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers"
            " from pgmq.{} as q join pgflow.step_tasks as t on t.message_id = q.msg_id"
            " where t.run_id = %s"
        )
        .format(sql.Identifier(table))
        .as_string(tx),
        run_id,
    )
    assert len(timing) == 1
    assert timing[0]["read_ct"] == 0


def test_pgmq_calls_pgtap_makes_on_an_engine_queue(tx: psycopg.Connection) -> None:
    define_flow(tx)
    extra = one(tx, "select pgmq.send('audit', '{\"x\": 1}')")
    tx.execute("select pgflow.start_flow('audit', '{}')")
    read = fetch(tx, "select * from pgmq.read('audit', 0, 10)")
    assert {r["msg_id"] for r in read} >= {extra}
    assert one(tx, "select count(*) from pgmq.set_vt('audit', %s, 0)", extra) == 1
    assert one(tx, "select count(*) from pgmq.delete('audit', array[%s]::bigint[])", extra) == 1
    polled = fetch(tx, "select * from pgmq.read_with_poll('audit', 1, 5, 1, 50)")
    assert len(polled) == 1
    assert one(tx, "select pgmq.archive('audit', %s::bigint)", polled[0]["msg_id"]) is True


def test_internal_functions_called_directly(tx: psycopg.Connection) -> None:
    # start_ready_steps on a run whose ready step was put back to 'created' by hand
    define_flow(tx)
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '{}')")
    assert one(tx, "select pgflow.cascade_complete_taskless_steps(%s)", run_id) == 0
    assert one(tx, "select pgflow.cascade_resolve_conditions(%s)", run_id) is True
    tx.execute("select pgflow.start_ready_steps(%s)", (run_id,))
    tx.execute("select pgflow.maybe_complete_run(%s)", (run_id,))
    assert one(tx, "select count(*) from pgflow.step_tasks where run_id = %s", run_id) == 1
    assert (
        one(tx, "select pgflow._cascade_force_skip_steps(%s, 'left', 'condition_unmet')", run_id)
        == 2
    )
    assert (
        one(tx, "select pgflow._cascade_force_skip_steps(%s, 'left', 'condition_unmet')", run_id)
        == 0
    )
    assert one(tx, "select remaining_steps from pgflow.runs where run_id = %s", run_id) == 2


def test_prune_can_be_replaced_by_pgflows_own_copy(tx: psycopg.Connection) -> None:
    tx.execute(
        "create or replace function pgflow.prune_data_older_than(retention_interval interval)"
        " returns void language plpgsql as $$ begin perform 1; end $$"
    )
    tx.execute("select pgflow.prune_data_older_than(interval '1 day')")


def test_worker_rows_are_set_null_on_delete(tx: psycopg.Connection) -> None:
    define_flow(tx)
    run_id = one(tx, "select run_id from pgflow.start_flow('audit', '{}')")
    read_and_start(tx, "audit")
    tx.execute("delete from pgflow.workers")
    assert one(tx, "select last_worker_id from pgflow.step_tasks where run_id = %s", run_id) is None


# ---------------------------------------------------------------------------------------
# 5. Exact texts (the remaining ones are asserted in test_cascades: the two safety limits,
#    Condition not met; test_complete_task/test_maps: the TYPE_VIOLATION texts)
# ---------------------------------------------------------------------------------------


def test_type_violation_texts(tx: psycopg.Connection) -> None:
    tx.execute("select pgflow.create_flow('tv')")
    tx.execute("select pgflow.add_step('tv', 'src')")
    tx.execute("select pgflow.add_step('tv', 'm', array['src'], step_type => 'map')")
    run_id = one(tx, "select run_id from pgflow.start_flow('tv', '{}')")
    read_and_start(tx, "tv")
    task = fetch(tx, "select * from pgflow.complete_task(%s, 'src', 0, '{\"a\": 1}')", run_id)[0]
    assert task["status"] == "failed"
    assert task["error_message"] == "[TYPE_VIOLATION] Produced object instead of array"
    step = fetch(
        tx, "select * from pgflow.step_states where run_id = %s and step_slug = 'src'", run_id
    )[0]
    assert step["error_message"] == (
        "[TYPE_VIOLATION] Map step m expects array input but dependency src produced object"
    )
    assert one(tx, "select status from pgflow.runs where run_id = %s", run_id) == "failed"


def test_condition_not_met_text(tx: psycopg.Connection) -> None:
    tx.execute("select pgflow.create_flow('cnm')")
    tx.execute(
        "select pgflow.add_step('cnm', 'a', required_input_pattern => '{\"go\": true}',"
        " when_unmet => 'fail')"
    )
    run = fetch(tx, "select * from pgflow.start_flow('cnm', '{}')")[0]
    assert run["status"] == "failed"
    assert (
        one(tx, "select error_message from pgflow.step_states where run_id = %s", run["run_id"])
        == "Condition not met"
    )
