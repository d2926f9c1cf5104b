"""Least privilege by rights fixed in the definer: login roles that are members of
pgflow_worker, pgflow_client and pgflow_admin can each do their job end to end (also on
queues created after the migration) through the engine's functions only; the attacks a
client or a worker could try on tables, internal functions and queues are refused (the
full matrix is in test_privileges); security definer functions never resolve objects
other roles could plant; slug injection fails without side effects."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.engine.helpers import Row, fetch, scalar, shape_step, start_tasks
from tests.engine.logins import SPEC, Connect, refused

SHAPE = {"steps": [shape_step("first"), shape_step("second", ["first"])]}


def two_steps(conn: psycopg.Connection) -> None:
    """The flow f: a, then b."""
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    conn.execute("select pgflow.add_step('f', 'b', array['a'])")


def read_and_start_as(worker: psycopg.Connection, flow: str, worker_id: uuid.UUID) -> list[Row]:
    """What a worker does: (re)register, poll its flow's queue, start the tasks it got."""
    worker.execute("select pgflow.register_worker(%s, %s, 'py')", (worker_id, flow))
    ids = [r[0] for r in worker.execute("select pgflow.poll_messages(%s, 30, 10, 1, 50)", (flow,))]
    return start_tasks(worker, flow, ids, worker_id)


def test_roles_are_nologin_groups(conn: psycopg.Connection) -> None:
    # only the spec's roles: roles are cluster-wide, and other tests make their own
    rows = fetch(
        conn,
        "select rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
        " from pg_roles where rolname = any(%s) order by 1",
        sorted(SPEC.roles),
    )
    assert [r["rolname"] for r in rows] == [
        "pgflow_admin",
        "pgflow_client",
        "pgflow_dashboard",
        "pgflow_worker",
    ]
    for row in rows:
        assert not any(v for k, v in row.items() if k != "rolname")


def test_admin_worker_and_client_run_a_flow_end_to_end(
    connect_as: Connect, conn: psycopg.Connection
) -> None:
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

    # worker: first completes, which queues second (a send by the engine)
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
    conn.execute(
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


def test_worker_batch_protocol_works_without_queue_access(
    connect_as: Connect, conn: psycopg.Connection
) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'm', step_type => 'map')")
    worker = connect_as("pgflow_worker")
    run_id = scalar(conn, "select run_id from pgflow.start_flow('f', %s)", Jsonb([1, 2, 3]))

    worker_id = uuid.uuid4()
    worker.execute("select pgflow.register_worker(%s, 'f', 'py')", (worker_id,))
    tasks = fetch(worker, "select * from pgflow.read_and_start_tasks('f', %s, 10, 30)", worker_id)
    assert sorted(t["task_index"] for t in tasks) == [0, 1, 2]
    worker.execute(
        "select count(*) from pgflow.complete_tasks(%s, %s, %s, %s)",
        ([run_id] * 3, ["m"] * 3, [0, 1, 2], [Jsonb(i) for i in (10, 20, 30)]),
    )
    assert scalar(conn, "select output from pgflow.runs where run_id = %s", run_id) == {
        "m": [10, 20, 30]
    }
    # every message was archived by the engine, as its owner
    assert scalar(conn, "select count(*) from pgmq.q_f") == 0
    assert scalar(conn, "select count(*) from pgmq.a_f") == 3


@pytest.mark.parametrize(
    "read",
    [
        "select pgflow.poll_messages('not_a_flow', 30, 10, 0, 50)",
        "select * from pgflow.read_and_start_tasks('not_a_flow', gen_random_uuid(), 10)",
    ],
)
def test_workers_read_only_the_queues_of_flows(
    connect_as: Connect, conn: psycopg.Connection, read: str
) -> None:
    conn.execute("select pgmq.create('not_a_flow')")
    conn.execute("select pgmq.send('not_a_flow', '{}')")
    worker = connect_as("pgflow_worker")

    with pytest.raises(psycopg.errors.UndefinedTable, match=r'"pgmq\.q_not_a_flow" does not exist'):
        worker.execute(read)
    assert scalar(conn, "select read_ct from pgmq.q_not_a_flow") == 0


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


def test_worker_compiles_a_new_flow_but_only_an_admin_recompiles_it(
    connect_as: Connect,
) -> None:
    worker = connect_as("pgflow_worker")
    client = connect_as("pgflow_client")
    admin = connect_as("pgflow_admin")

    compiled = scalar(worker, "select pgflow.ensure_flow_compiled('fresh', %s)", Jsonb(SHAPE))
    assert compiled["status"] == "compiled"
    # the queue belongs to the migration owner, not to the worker's login role
    owner = scalar(admin, "select tableowner from pg_tables where tablename = 'q_fresh'")
    assert owner == scalar(
        admin, "select nspowner::regrole::text from pg_namespace where nspname = 'pgflow'"
    )

    run = scalar(client, "select pgflow.start_flow_with_states('fresh', '{}')")
    [task] = read_and_start_as(worker, "fresh", uuid.uuid4())
    assert task["run_id"] == uuid.UUID(run["run"]["run_id"])

    # a changed shape is a mismatch for the worker, and allowing data loss is refused
    changed = {"steps": [*SHAPE["steps"], shape_step("third")]}
    mismatch = scalar(worker, "select pgflow.ensure_flow_compiled('fresh', %s)", Jsonb(changed))
    assert mismatch["status"] == "mismatch"
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege,
        match=r"^Recompiling flow fresh deletes its runs: allow_data_loss needs the pgflow_admin",
    ):
        worker.execute("select pgflow.ensure_flow_compiled('fresh', %s, true)", (Jsonb(changed),))
    assert scalar(client, "select count(*) from pgflow.runs") == 1
    assert scalar(client, "select count(*) from pgflow.steps where flow_slug = 'fresh'") == 2

    # the admin may
    recompiled = scalar(
        admin, "select pgflow.ensure_flow_compiled('fresh', %s, true)", Jsonb(changed)
    )
    assert recompiled["status"] == "recompiled"
    assert scalar(client, "select count(*) from pgflow.runs") == 0
    assert scalar(client, "select count(*) from pgflow.steps where flow_slug = 'fresh'") == 3
    # the recreated queue is usable too, and the worker now verifies the new shape
    client.execute("select pgflow.start_flow_with_states('fresh', '{}')")
    assert len(read_and_start_as(worker, "fresh", uuid.uuid4())) == 2
    verified = scalar(worker, "select pgflow.ensure_flow_compiled('fresh', %s)", Jsonb(changed))
    assert verified["status"] == "verified"


def test_client_cannot_forge_outcomes_or_touch_queues(
    connect_as: Connect, conn: psycopg.Connection
) -> None:
    two_steps(conn)
    client = connect_as("pgflow_client")
    run_id = scalar(client, "select run_id from pgflow.start_flow('f', '{}')")
    [msg_id] = [r[0] for r in conn.execute("select msg_id from pgmq.q_f")]
    before = fetch(conn, "select * from pgflow.step_tasks order by 1, 2, 3")

    # forging a task's completion, through the engine or the tables
    refused(client, "select pgflow.complete_task(%s, 'a', 0, '\"forged\"')", run_id)
    refused(client, "select pgflow.complete_tasks(%s, '{a}', '{0}', '{1}')", [run_id])
    refused(client, "select pgflow.fail_task(%s, 'a', 0, 'x')", run_id)
    refused(
        client,
        "update pgflow.step_tasks set status = 'completed', output = '1',"
        " completed_at = now() where run_id = %s",
        run_id,
    )
    refused(
        client,
        "update pgflow.step_states set status = 'completed', remaining_tasks = 0,"
        " output = '1', completed_at = now() where run_id = %s",
        run_id,
    )
    refused(
        client,
        "insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, status)"
        " values ('f', %s, 'b', 0, 'queued')",
        run_id,
    )
    # marking the run completed with a forged output
    refused(
        client,
        "update pgflow.runs set status = 'completed', output = '{\"b\": \"forged\"}',"
        " remaining_steps = 0, completed_at = now() where run_id = %s",
        run_id,
    )
    refused(
        client, "insert into pgflow.runs (flow_slug, status, input) values ('f', 'started', '{}')"
    )
    refused(client, "delete from pgflow.runs")
    # internal functions: cancelling, skipping, completing behind the engine's back
    refused(client, "select pgflow._cancel_run_tasks(%s)", run_id)
    refused(client, "select pgflow._cascade_force_skip_steps(%s, 'a', 'x')", run_id)
    refused(client, "select pgflow.maybe_complete_run(%s)", run_id)
    refused(client, "select pgflow.start_ready_steps(%s)", run_id)
    refused(client, "select pgflow._archive_task_message(%s, 'a', 0)", run_id)
    # taking, reading or deleting the queue's messages, and the archive
    refused(client, "select * from pgmq.q_f")
    refused(client, "select * from pgmq.a_f")
    refused(client, "select * from pgmq.read('f', 30, 1)")
    refused(client, "select pgmq.delete('f', %s::bigint)", msg_id)
    refused(client, "select pgmq.archive('f', %s::bigint)", msg_id)
    refused(client, "delete from pgmq.q_f")
    refused(client, "select pgflow.poll_messages('f', 30, 1, 0, 50)")
    refused(client, "select pgflow.start_tasks('f', %s, %s)", [msg_id], uuid.uuid4())
    refused(client, "select * from pgflow.read_and_start_tasks('f', %s, 1)", uuid.uuid4())
    # and defining or deleting flows
    refused(client, "select pgflow.ensure_flow_compiled('f', '{\"steps\": []}', true)")
    refused(client, "select pgflow.delete_flow_and_data('f')")
    refused(client, "select pgflow.add_step('f', 'c')")

    assert fetch(conn, "select * from pgflow.step_tasks order by 1, 2, 3") == before
    assert scalar(conn, "select status from pgflow.runs") == "started"
    assert scalar(conn, "select read_ct from pgmq.q_f") == 0
    assert scalar(conn, "select count(*) from pgmq.a_f") == 0


def test_worker_cannot_forge_runs_touch_queues_or_destroy_data(
    connect_as: Connect, conn: psycopg.Connection
) -> None:
    two_steps(conn)
    worker = connect_as("pgflow_worker")
    run_id = scalar(conn, "select run_id from pgflow.start_flow('f', '{}')")
    [msg_id] = [r[0] for r in conn.execute("select msg_id from pgmq.q_f")]

    refused(
        worker,
        "update pgflow.runs set status = 'completed', output = '{}', remaining_steps = 0,"
        " completed_at = now() where run_id = %s",
        run_id,
    )
    refused(worker, "update pgflow.step_tasks set status = 'completed' where run_id = %s", run_id)
    refused(worker, "delete from pgflow.workers")
    refused(worker, "insert into pgflow.flows (flow_slug) values ('x')")
    refused(worker, "select pgflow._cancel_run_tasks(%s)", run_id)
    refused(worker, "select pgflow._cascade_force_skip_steps(%s, 'a', 'x')", run_id)
    refused(worker, "select pgflow._create_flow_from_shape('x', '{\"steps\": []}')")
    refused(worker, "select pgmq.delete('f', %s::bigint)", msg_id)
    refused(worker, "select * from pgmq.read_with_poll('f', 30, 1, 0, 50)")
    refused(worker, "select * from pgmq.a_f")
    refused(worker, "select pgmq.drop_queue('f')")
    refused(worker, "select pgmq.create('planted')")
    refused(worker, "select pgflow.delete_flow_and_data('f')")
    refused(worker, "select pgflow.prune_data_older_than('0 seconds')")
    refused(worker, "select pgflow.start_flow('f', '{}')")
    refused(worker, "select pgflow.create_flow('other')")

    assert scalar(conn, "select status from pgflow.runs") == "started"
    assert scalar(conn, "select read_ct from pgmq.q_f") == 0
    assert scalar(conn, "select count(*) from pgflow.flows") == 1


def test_admin_defines_and_maintains_but_runs_nothing(
    connect_as: Connect, conn: psycopg.Connection
) -> None:
    admin = connect_as("pgflow_admin")
    admin.execute("select pgflow.create_flow('f')")
    admin.execute("select pgflow.add_step('f', 'a')")

    refused(admin, "select pgflow.start_flow('f', '{}')")
    refused(admin, "select pgflow.complete_task(%s, 'a', 0, '1')", uuid.uuid4())
    refused(admin, "select pgflow.start_tasks('f', '{1}', %s)", uuid.uuid4())
    refused(admin, "select pgflow.poll_messages('f', 30, 1, 0, 50)")
    refused(admin, "select * from pgmq.read('f', 30, 1)")
    refused(admin, "update pgflow.runs set status = 'failed'")
    refused(admin, "delete from pgflow.flows")
    refused(admin, "insert into pgflow.steps (flow_slug, step_slug) values ('f', 'b')")
    refused(admin, "select pgflow._cancel_run_tasks(%s)", uuid.uuid4())
    assert scalar(conn, "select count(*) from pgflow.steps") == 1
    admin.execute("select pgflow.delete_flow_and_data('f')")
    assert scalar(conn, "select count(*) from pgflow.flows") == 0
    assert scalar(conn, "select count(*) from pgmq.list_queues()") == 0


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
    # project convention: every engine function fixes its search_path, except the generated
    # event helpers, which must stay inlinable (a SET clause stops inlining): SQL, invoker,
    # and executable by nobody but their owner, so only engine functions can call them
    unfixed = fetch(
        conn,
        "select p.proname, l.lanname, p.prosecdef,"
        " (select coalesce(array_agg(a.grantee::regrole::text), '{}') from aclexplode("
        "   coalesce(p.proacl, acldefault('f', p.proowner))) as a"
        "  where a.privilege_type = 'EXECUTE' and a.grantee <> p.proowner) as executors"
        " from pg_proc as p join pg_language as l on l.oid = p.prolang"
        " where p.pronamespace = 'pgflow'::regnamespace"
        "   and not exists (select 1 from unnest(p.proconfig) as c where c like 'search_path=%%')"
        " order by 1",
    )
    assert unfixed, "the event helpers are expected here"
    for f in unfixed:
        assert f["proname"].startswith(("_emit_", "_event_")), f["proname"]
        assert (f["lanname"], f["prosecdef"], f["executors"]) == ("sql", False, []), f


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
            admin,
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

    with pytest.raises(psycopg.errors.RaiseException, match="queue names allow at most 47"):
        admin.execute("select pgflow.create_flow(%s)", (slug,))
    with pytest.raises(psycopg.errors.RaiseException, match="queue names allow at most 47"):
        worker.execute("select pgflow.ensure_flow_compiled(%s, %s)", (slug, Jsonb(SHAPE)))

    assert snapshot(conn) == before
