"""Least privilege: login roles that are members of pgflow_worker, pgflow_client and
pgflow_admin can each do their job end to end (also on queues created after the
migration) and get 42501 outside it; PUBLIC gets nothing; security definer functions
have a fixed search_path and never call objects other roles could plant; slug injection
fails without side effects."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from tests.engine.helpers import Row, fetch, scalar, shape_step, start_tasks

Connect = Callable[[str | None], psycopg.Connection]


SHAPE = {"steps": [shape_step("first"), shape_step("second", ["first"])]}


@pytest.fixture
def connect_as(conn: psycopg.Connection, db: str) -> Iterator[Connect]:
    """Open autocommit connections as fresh login roles, members of a pgflow role (or of
    none for ``None``). The login roles are dropped again at the end."""
    created: list[tuple[str, psycopg.Connection]] = []

    def connect(member_of: str | None) -> psycopg.Connection:
        name = f"login_{uuid.uuid4().hex[:12]}"
        password = uuid.uuid4().hex
        conn.execute(f"create role {name} login password '{password}'")
        if member_of is not None:
            conn.execute(f"grant {member_of} to {name}")
        login = psycopg.connect(make_conninfo(db, user=name, password=password), autocommit=True)
        created.append((name, login))
        return login

    yield connect
    for name, login in created:
        login.close()
        conn.execute(f"drop owned by {name}")
        conn.execute(f"drop role {name}")


def refused(conn: psycopg.Connection, query: str, *params: Any) -> None:
    """The statement fails with 42501 (permission denied)."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(query, params)


def read_and_start_as(worker: psycopg.Connection, flow: str, worker_id: uuid.UUID) -> list[Row]:
    """What a worker does: (re)register, read its queue, start the tasks it got."""
    worker.execute("select pgflow.register_worker(%s, %s, 'py')", (worker_id, flow))
    ids = [
        r[0]
        for r in worker.execute(
            "select msg_id from pgmq.read_with_poll(%s, 30, 10, 1, 50)", (flow,)
        ).fetchall()
    ]
    return start_tasks(worker, flow, ids, worker_id)


def test_roles_are_nologin_groups(conn: psycopg.Connection) -> None:
    rows = fetch(
        conn,
        "select rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
        " from pg_roles where rolname like 'pgflow\\_%%' order by 1",
    )
    assert [r["rolname"] for r in rows] == [
        "pgflow_admin",
        "pgflow_client",
        "pgflow_dashboard",
        "pgflow_worker",
    ]
    for row in rows:
        assert not any(v for k, v in row.items() if k != "rolname")


def test_admin_worker_and_client_run_a_flow_end_to_end(connect_as: Connect) -> None:
    admin = connect_as("pgflow_admin")
    worker = connect_as("pgflow_worker")
    client = connect_as("pgflow_client")

    # admin defines the flow: its queue is created after the migration
    admin.execute("select pgflow.create_flow('pipeline', max_attempts => 2, base_delay => 1)")
    admin.execute("select pgflow.add_step('pipeline', 'first')")
    admin.execute("select pgflow.add_step('pipeline', 'second', array['first'])")

    # the worker starts up: registers, verifies its flow, heartbeats
    worker_id = uuid.uuid4()
    worker.execute("select pgflow.register_worker(%s, 'pipeline', 'py')", (worker_id,))
    verified = scalar(worker, "select pgflow.ensure_flow_compiled('pipeline', %s)", Jsonb(SHAPE))
    assert verified == {"status": "verified", "differences": []}
    assert scalar(worker, "select pgflow.worker_heartbeat(%s)", worker_id) is True

    # the client starts a run
    started = scalar(
        client, "select pgflow.start_flow_with_states('pipeline', %s)", Jsonb({"n": 1})
    )
    run_id = started["run"]["run_id"]
    assert [s["status"] for s in started["steps"]] == ["started", "created"]

    # worker: first completes, which queues second (a send by the worker)
    [first] = read_and_start_as(worker, "pipeline", worker_id)
    assert (first["step_slug"], first["input"], first["flow_input"]) == ("first", {}, {"n": 1})
    worker.execute(
        "select pgflow.complete_task(%s, 'first', 0, %s)", (run_id, Jsonb({"doubled": 2}))
    )
    # second fails once (retry with backoff via pgmq.set_vt), then completes
    [second] = read_and_start_as(worker, "pipeline", worker_id)
    assert second["input"] == {"first": {"doubled": 2}}
    assert second["flow_input"] is None
    # dependent steps load the flow input lazily
    assert scalar(worker, "select input from pgflow.runs where run_id = %s", run_id) == {"n": 1}
    worker.execute("select pgflow.fail_task(%s, 'second', 0, 'flaky')", (run_id,))
    worker.execute(
        "update pgmq.q_pipeline set vt = clock_timestamp() where msg_id = %s", (second["msg_id"],)
    )
    [retry] = read_and_start_as(worker, "pipeline", worker_id)
    worker.execute("select pgflow.complete_task(%s, 'second', 0, %s)", (run_id, Jsonb("done")))
    assert retry["msg_id"] == second["msg_id"]

    # maintenance and shutdown
    assert scalar(worker, "select pgflow.requeue_stalled_tasks()") == 0
    worker.execute("select pgflow.mark_worker_stopped(%s)", (worker_id,))

    # the client follows the run
    run = scalar(client, "select pgflow.get_run_with_states(%s)", run_id)
    assert run["run"]["status"] == "completed"
    assert run["run"]["output"] == {"second": "done"}
    assert scalar(client, "select status from pgflow.runs where run_id = %s", run_id) == "completed"
    assert scalar(client, "select count(*) from pgflow.step_states where status = 'completed'") == 2

    # the admin reads everything and prunes it
    assert scalar(admin, "select count(*) from pgflow.step_tasks where run_id = %s", run_id) == 2
    assert scalar(admin, "select stopped_at is not null from pgflow.workers") is True
    admin.execute("select pgflow.prune_data_older_than('0 seconds')")
    assert scalar(admin, "select count(*) from pgflow.runs") == 0


def test_client_can_call_start_flow_directly(connect_as: Connect, conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'm', step_type => 'map')")
    client = connect_as("pgflow_client")

    run_id = scalar(client, "select run_id from pgflow.start_flow('f', %s)", Jsonb([1, 2, 3]))

    assert scalar(conn, "select count(*) from pgmq.q_f") == 3
    assert scalar(client, "select status from pgflow.runs where run_id = %s", run_id) == "started"
    # an empty array completes the run at once, in the same call
    done = scalar(client, "select pgflow.start_flow_with_states('f', %s)", Jsonb([]))
    assert done["run"]["status"] == "completed"


def test_worker_compiles_a_new_flow_and_the_client_can_use_its_queue(
    connect_as: Connect,
) -> None:
    worker = connect_as("pgflow_worker")
    client = connect_as("pgflow_client")

    compiled = scalar(worker, "select pgflow.ensure_flow_compiled('fresh', %s)", Jsonb(SHAPE))
    assert compiled["status"] == "compiled"
    # the queue belongs to the migration owner, not to the worker's login role
    owner = scalar(worker, "select tableowner from pg_tables where tablename = 'q_fresh'")
    assert owner == scalar(
        worker, "select nspowner::regrole::text from pg_namespace where nspname = 'pgflow'"
    )

    run = scalar(client, "select pgflow.start_flow_with_states('fresh', '{}')")
    [task] = read_and_start_as(worker, "fresh", uuid.uuid4())
    assert task["run_id"] == uuid.UUID(run["run"]["run_id"])

    # a changed shape is a mismatch for the worker unless it allows data loss
    changed = {"steps": [*SHAPE["steps"], shape_step("third")]}
    mismatch = scalar(worker, "select pgflow.ensure_flow_compiled('fresh', %s)", Jsonb(changed))
    assert mismatch["status"] == "mismatch"
    recompiled = scalar(
        worker, "select pgflow.ensure_flow_compiled('fresh', %s, true)", Jsonb(changed)
    )
    assert recompiled["status"] == "recompiled"
    assert scalar(client, "select count(*) from pgflow.runs") == 0
    assert scalar(client, "select count(*) from pgflow.steps where flow_slug = 'fresh'") == 3
    # the recreated queue is usable too
    client.execute("select pgflow.start_flow_with_states('fresh', '{}')")
    assert len(read_and_start_as(worker, "fresh", uuid.uuid4())) == 2


def test_worker_is_refused_outside_its_job(connect_as: Connect, conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    worker = connect_as("pgflow_worker")

    refused(worker, "select pgflow.start_flow('f', '{}')")
    refused(worker, "select pgflow.start_flow_with_states('f', '{}')")
    refused(worker, "select pgflow.create_flow('other')")
    refused(worker, "select pgflow.add_step('f', 'b')")
    refused(worker, "select pgflow.delete_flow_and_data('f')")
    refused(worker, "select pgflow.prune_data_older_than('1 day')")
    refused(worker, "select pgflow.setup_requeue_stalled_tasks_cron()")
    refused(worker, "select pgflow._create_flow_from_shape('x', '{\"steps\": []}')")
    refused(worker, "insert into pgflow.flows (flow_slug) values ('x')")
    refused(worker, "update pgflow.steps set opt_timeout = 1")
    refused(worker, "delete from pgflow.runs")
    refused(worker, "delete from pgflow.workers")
    refused(
        worker, "insert into pgflow.runs (flow_slug, status, input) values ('f', 'started', '{}')"
    )
    refused(worker, "select pgmq.create('planted')")
    refused(worker, "select pgmq.drop_queue('f')")
    assert scalar(conn, "select count(*) from pgflow.flows") == 1
    assert scalar(conn, "select count(*) from pgflow.runs") == 0


def test_client_is_refused_outside_its_job(connect_as: Connect, conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    client = connect_as("pgflow_client")
    run_id = scalar(client, "select run_id from pgflow.start_flow('f', '{}')")
    [msg_id] = [r[0] for r in conn.execute("select msg_id from pgmq.q_f")]

    # it cannot take or settle tasks
    refused(client, "select * from pgmq.read_with_poll('f', 30, 1, 1, 50)")
    refused(client, "select * from pgmq.read('f', 30, 1)")
    refused(client, "select pgflow.start_tasks('f', %s, %s)", [msg_id], uuid.uuid4())
    refused(client, "select pgflow.complete_task(%s, 'a', 0, '1')", run_id)
    refused(client, "select pgflow.fail_task(%s, 'a', 0, 'x')", run_id)
    refused(client, "select pgflow.requeue_stalled_tasks()")
    refused(client, "select pgflow.register_worker(%s, 'f', 'x')", uuid.uuid4())
    refused(client, "select pgflow.worker_heartbeat(%s)", uuid.uuid4())
    refused(client, "select * from pgflow.workers")
    # nor define or delete anything
    refused(client, "select pgflow.create_flow('other')")
    refused(client, "select pgflow.add_step('f', 'b')")
    refused(client, "select pgflow.ensure_flow_compiled('f', '{\"steps\": []}')")
    refused(client, "select pgflow.delete_flow_and_data('f')")
    refused(client, "select pgflow.prune_data_older_than('1 day')")
    refused(client, "delete from pgflow.runs")
    refused(client, "update pgflow.flows set opt_timeout = 1")
    refused(client, "update pgmq.q_f set vt = now()")
    task = scalar(conn, "select status from pgflow.step_tasks where run_id = %s", run_id)
    assert task == "queued"
    assert scalar(conn, "select read_ct from pgmq.q_f") == 0


def test_admin_is_refused_outside_its_job(connect_as: Connect, conn: psycopg.Connection) -> None:
    admin = connect_as("pgflow_admin")
    admin.execute("select pgflow.create_flow('f')")
    admin.execute("select pgflow.add_step('f', 'a')")

    refused(admin, "select pgflow.start_flow('f', '{}')")
    refused(admin, "select pgflow.start_flow_with_states('f', '{}')")
    refused(admin, "select pgflow.complete_task(%s, 'a', 0, '1')", uuid.uuid4())
    refused(admin, "select pgflow.start_tasks('f', '{1}', %s)", uuid.uuid4())
    refused(admin, "select pgflow.register_worker(%s, 'f', 'x')", uuid.uuid4())
    refused(admin, "select * from pgmq.read('f', 30, 1)")
    refused(admin, "update pgflow.runs set status = 'failed'")
    refused(admin, "delete from pgflow.flows")
    refused(admin, "insert into pgflow.flows (flow_slug) values ('x')")
    assert scalar(conn, "select count(*) from pgflow.flows") == 1


def test_public_can_do_nothing(connect_as: Connect, conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    nobody = connect_as(None)
    role = scalar(nobody, "select current_user")

    privileges = fetch(
        conn,
        "select p.oid::regprocedure::text as function,"
        " has_function_privilege(%s, p.oid, 'execute') as can"
        " from pg_proc as p where p.pronamespace = 'pgflow'::regnamespace",
        role,
    )
    assert len(privileges) >= 30
    assert [p["function"] for p in privileges if p["can"]] == []
    tables = fetch(
        conn,
        "select c.relname, has_table_privilege(%s, c.oid,"
        " 'select, insert, update, delete, truncate, references, trigger') as can"
        " from pg_class as c where c.relnamespace = 'pgflow'::regnamespace and c.relkind = 'r'",
        role,
    )
    assert len(tables) == 7
    assert [t["relname"] for t in tables if t["can"]] == []
    assert scalar(conn, "select has_schema_privilege(%s, 'pgflow', 'usage')", role) is False
    assert scalar(conn, "select has_schema_privilege(%s, 'pgflow', 'create')", role) is False
    assert scalar(conn, "select has_schema_privilege(%s, 'pgmq', 'usage')", role) is False
    # no EXECUTE granted to PUBLIC on any pgflow function, by ACL
    public_grants = fetch(
        conn,
        "select p.oid::regprocedure::text as function"
        " from pg_proc as p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) as a"
        " where p.pronamespace = 'pgflow'::regnamespace and a.grantee = 0",
    )
    assert public_grants == []

    refused(nobody, "select pgflow.start_flow('f', '{}')")
    refused(nobody, "select pgflow.get_run_with_states(gen_random_uuid())")
    refused(nobody, "select pgflow.requeue_stalled_tasks()")
    refused(nobody, "select * from pgflow.runs")
    refused(nobody, "select * from pgmq.q_f")
    refused(nobody, "select * from pgmq.read('f', 30, 1)")


def test_security_definer_functions_have_a_fixed_safe_search_path(
    conn: psycopg.Connection,
) -> None:
    functions = fetch(
        conn,
        "select p.proname, p.prosecdef,"
        " (select substr(c, length('search_path=') + 1) from unnest(p.proconfig) as c"
        "  where c like 'search_path=%%') as search_path"
        " from pg_proc as p where p.pronamespace = 'pgflow'::regnamespace order by 1",
    )
    definers = {f["proname"]: f["search_path"] for f in functions if f["prosecdef"]}
    assert {
        "create_flow",
        "delete_flow_and_data",
        "ensure_flow_compiled",
        "get_run_with_states",
        "prune_data_older_than",
        "requeue_stalled_tasks",
        "setup_requeue_stalled_tasks_cron",
        "start_flow_with_states",
    } <= set(definers)
    for name, path in definers.items():
        assert path is not None, f"{name} is security definer without a fixed search_path"
        schemas = [s.strip().strip('"') for s in path.split(",") if s.strip() not in ("", '""')]
        # nothing a caller could create objects in: no public, no $user, pg_temp only last
        assert "public" not in schemas, name
        assert "$user" not in schemas, name
        assert "pg_temp" not in schemas[:-1], name
    # project convention: every engine function fixes its search_path
    assert [f["proname"] for f in functions if f["search_path"] is None] == []


def test_definer_functions_ignore_the_callers_search_path(
    connect_as: Connect, conn: psycopg.Connection
) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    database = scalar(conn, "select current_database()")
    conn.execute(f"grant create on database {database} to pgflow_worker")
    try:
        worker = connect_as("pgflow_worker")
        run_id = scalar(conn, "select run_id from pgflow.start_flow('f', '{}')")
        read_and_start_as(worker, "f", uuid.uuid4())
        conn.execute(
            "update pgflow.step_tasks set queued_at = queued_at - interval '1 hour',"
            " started_at = started_at - interval '1 hour'"
        )
        # the worker plants a now() that would make nothing look stalled...
        worker.execute("create schema trap")
        worker.execute(
            "create function trap.now() returns timestamptz language sql"
            " as $$ select timestamptz '2000-01-01' $$"
        )
        worker.execute("set search_path = trap, pg_catalog")
        assert scalar(worker, "select now()").year == 2000

        # ...but requeue_stalled_tasks, running as its owner, does not resolve it
        assert scalar(worker, "select pgflow.requeue_stalled_tasks()") == 1
        status = scalar(conn, "select status from pgflow.step_tasks where run_id = %s", run_id)
        assert status == "queued"
    finally:
        conn.execute("drop schema if exists trap cascade")
        conn.execute(f"revoke create on database {database} from pgflow_worker")


def test_cron_setup_never_calls_a_planted_cron_schema(
    connect_as: Connect, conn: psycopg.Connection
) -> None:
    database = scalar(conn, "select current_database()")
    conn.execute(f"grant create on database {database} to pgflow_client")
    try:
        client = connect_as("pgflow_client")
        # without pg_cron, a role that may create schemas plants cron.schedule...
        client.execute("create schema cron")
        client.execute("create table cron.called (who text)")
        client.execute(
            "create function cron.schedule(a text, b text, c text) returns bigint"
            " language sql as $$ insert into cron.called values (current_user) returning 1 $$"
        )
        client.execute(
            "create function cron.unschedule(a text) returns boolean"
            " language sql as $$ insert into cron.called values (current_user) returning true $$"
        )
        admin = connect_as("pgflow_admin")

        # ...which the security definer setup refuses to run with its owner's rights
        with pytest.raises(psycopg.errors.RaiseException, match="pg_cron is not installed"):
            admin.execute("select pgflow.setup_requeue_stalled_tasks_cron()")
        assert scalar(conn, "select count(*) from cron.called") == 0
    finally:
        conn.execute("drop schema if exists cron cascade")
        conn.execute(f"revoke create on database {database} from pgflow_client")


INJECTIONS = [
    "x'; drop table pgflow.runs; --",
    'x"; drop table pgflow.runs; --',
    "x; select 1",
    "run",
    "",
    "a" * 129,
    "with space",
    "dollar$body$",
]


def snapshot(conn: psycopg.Connection) -> tuple[Any, ...]:
    return (
        fetch(conn, "select flow_slug from pgflow.flows order by 1"),
        fetch(conn, "select flow_slug, step_slug from pgflow.steps order by 1, 2"),
        fetch(conn, "select queue_name from pgmq.list_queues() order by 1"),
        fetch(
            conn,
            "select relname from pg_class where relnamespace = 'pgmq'::regnamespace order by 1",
        ),
        fetch(
            conn,
            "select relname from pg_class where relnamespace = 'pgflow'::regnamespace order by 1",
        ),
    )


@pytest.mark.parametrize("slug", INJECTIONS)
def test_slug_injection_fails_without_side_effects(
    connect_as: Connect, conn: psycopg.Connection, slug: str
) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    admin = connect_as("pgflow_admin")
    worker = connect_as("pgflow_worker")
    client = connect_as("pgflow_client")
    before = snapshot(conn)

    attempts = [
        (admin, "select pgflow.create_flow(%s)", (slug,)),
        (admin, "select pgflow.add_step('f', %s)", (slug,)),
        (admin, "select pgflow.add_step('f', 'b', array[%s])", (slug,)),
        (worker, "select pgflow.ensure_flow_compiled(%s, %s)", (slug, Jsonb(SHAPE))),
        (
            worker,
            "select pgflow.ensure_flow_compiled('f', %s, true)",
            (Jsonb({"steps": [{"slug": slug, "stepType": "single", "dependencies": []}]}),),
        ),
        (client, "select pgflow.start_flow(%s, '{}')", (slug,)),
        (client, "select pgflow.start_flow_with_states(%s, '{}')", (slug,)),
    ]
    for who, query, params in attempts:
        with pytest.raises(psycopg.errors.DatabaseError) as raised:
            who.execute(query, params)
        # refused by the slug check, a foreign key or pgmq's own name check, never a
        # privilege or syntax error from executing part of the slug
        assert raised.value.sqlstate in {"23514", "23503", "P0001"}, (query, raised.value)
        assert snapshot(conn) == before, query
    assert scalar(conn, "select to_regclass('pgflow.runs') is not null") is True


def test_flow_slug_too_long_for_pgmq_leaves_no_flow_behind(
    connect_as: Connect, conn: psycopg.Connection
) -> None:
    slug = "a" * 60  # a valid slug, but longer than pgmq allows for a queue name
    admin = connect_as("pgflow_admin")
    worker = connect_as("pgflow_worker")
    before = snapshot(conn)

    with pytest.raises(psycopg.errors.RaiseException, match="queue name is too long"):
        admin.execute("select pgflow.create_flow(%s)", (slug,))
    with pytest.raises(psycopg.errors.RaiseException, match="queue name is too long"):
        worker.execute("select pgflow.ensure_flow_compiled(%s, %s)", (slug, Jsonb(SHAPE)))

    assert snapshot(conn) == before
