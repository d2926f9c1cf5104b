"""The privilege matrix, generated from the spec: for each role of spec/pgflow.yaml (and a
login role that is a member of none, i.e. PUBLIC) and each function, table, queue and
archive, what a real login role may and may not do against live PostgreSQL. Every refusal
is a 42501 from an actual statement, checked together with the catalog's view."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgweave.install import apply_migrations, install_pgmq
from pgweave_generator.build import load_ir
from pgweave_generator.spec_model import Role
from tests import PROJECT_ROOT
from tests.engine.helpers import fetch, scalar
from tests.engine.logins import SPEC, SPEC_FILE, Connect, attempt

# the spec's functions and the event helpers generated from its events
FUNCTIONS = {f.name for f in load_ir(SPEC_FILE).all_functions}
SCHEMA = SPEC.settings.schema_name
NO_ROLE = Role(doc="PUBLIC: a login role that is a member of no pgflow role.")
ROLES = {**SPEC.roles, "public": NO_ROLE}

TABLE_STATEMENTS = {
    "select": "select from {table} limit 0",
    "insert": "insert into {table} default values",
    "update": "update {table} set {column} = default where false",
    "delete": "delete from {table} where false",
    "truncate": "truncate {table}",
}
# What one might try on a flow's queue through pgmq's API ({msg} is a queued message).
PGMQ_CALLS = [
    "select * from pgmq.read('f', 30, 10)",
    "select * from pgmq.read_with_poll('f', 30, 10, 1, 50)",
    "select * from pgmq.pop('f')",
    "select * from pgmq.send('f', '{{}}')",
    "select pgmq.delete('f', {msg}::bigint)",
    "select pgmq.archive('f', {msg}::bigint)",
    "select * from pgmq.set_vt('f', {msg}::bigint, 0)",
    "select pgmq.purge_queue('f')",
    "select pgmq.drop_queue('f')",
    "select pgmq.create('planted')",
    "select * from pgmq.metrics('f')",  # reads the queue's sequence too
]
# pgmq's read-only calls on its own tables: a role that may read the queues' tables may make them
PGMQ_READS = ["select * from pgmq.list_queues()"]


def denied(error: psycopg.Error | None) -> bool:
    return isinstance(error, psycopg.errors.InsufficientPrivilege)


@dataclass(frozen=True)
class Member:
    """A fresh login role that is a member of one role of the spec (or of none)."""

    name: str
    role: Role
    login: psycopg.Connection
    user: str


@pytest.fixture(params=list(ROLES))
def member(request: pytest.FixtureRequest, connect_as: Connect) -> Member:
    role = ROLES[request.param]
    login = connect_as(None if role is NO_ROLE else request.param)
    return Member(request.param, role, login, scalar(login, "select current_user"))


@pytest.fixture
def world(conn: psycopg.Connection) -> int:
    """A flow with a queued task (its message id is returned) and an archived message."""
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    conn.execute("select pgflow.start_flow('f', '{}')")
    conn.execute("select pgmq.send('f', '{}')")
    conn.execute("select pgmq.archive('f', max(msg_id)) from pgmq.q_f")
    return int(scalar(conn, "select min(msg_id) from pgmq.q_f"))


def untouched(conn: psycopg.Connection, msg_id: int) -> None:
    assert scalar(conn, "select read_ct from pgmq.q_f where msg_id = %s", msg_id) == 0
    assert scalar(conn, "select count(*) from pgmq.a_f") == 1
    assert scalar(conn, "select status from pgflow.step_tasks") == "queued"
    assert scalar(conn, "select status from pgflow.runs") == "started"


def test_functions_a_role_may_execute_are_exactly_its_grants(
    member: Member, conn: psycopg.Connection, world: int
) -> None:
    role, login, user = member.role, member.login, member.user
    functions = fetch(
        conn,
        "select p.proname as name,"
        " format('%%s(%%s)', p.oid::regproc,"
        "  (select string_agg('null::' || format_type(t, null), ', ' order by o)"
        "   from unnest(p.proargtypes) with ordinality as a(t, o))) as call,"
        " has_function_privilege(%s, p.oid, 'execute') as can"
        " from pg_proc as p where p.pronamespace = %s::regnamespace order by 1",
        user,
        SCHEMA,
    )
    assert {f["name"] for f in functions} == FUNCTIONS

    for function in functions:
        expected = function["name"] in role.execute
        assert function["can"] is expected, (member.name, function["name"])
        # Called with NULL arguments: a refusal comes before the body runs; a granted
        # function runs (and may reject the NULLs), always in a rolled-back transaction.
        error = attempt(login, f"select {function['call'].replace('%', '%%')}")
        assert denied(error) is not expected, (member.name, function["call"], error)
    untouched(conn, world)


def test_tables_a_role_may_touch_are_exactly_its_grants(
    member: Member, conn: psycopg.Connection, world: int
) -> None:
    role, login, user = member.role, member.login, member.user
    assert scalar(conn, "select has_schema_privilege(%s, %s, 'create')", user, SCHEMA) is False

    for table, spec_table in SPEC.tables.items():
        column = next(iter(spec_table.columns))
        for privilege, statement in TABLE_STATEMENTS.items():
            expected = privilege in role.tables.get(table, [])
            qualified = f"{SCHEMA}.{table}"
            can = scalar(conn, "select has_table_privilege(%s, %s, %s)", user, qualified, privilege)
            assert can is expected, (member.name, table, privilege)
            error = attempt(login, statement.format(table=qualified, column=column))
            assert denied(error) is not expected, (member.name, table, privilege, error)
    untouched(conn, world)


def test_queues_and_archives_a_role_may_touch_are_exactly_its_grants(
    member: Member, conn: psycopg.Connection, world: int
) -> None:
    role, login, user = member.role, member.login, member.user
    grants = [g for g in role.external if g.schema_name == "pgmq"]
    usage = any(g.usage for g in grants)
    # queue tables are created by flows after the migration: the future privileges apply
    future = {p for g in grants for p in g.future_table_privileges}
    assert scalar(conn, "select has_schema_privilege(%s, 'pgmq', 'usage')", user) is usage

    for table in ("pgmq.q_f", "pgmq.a_f"):
        for privilege, statement in TABLE_STATEMENTS.items():
            expected = usage and privilege in future
            error = attempt(login, statement.format(table=table, column="msg_id"))
            assert denied(error) is not expected, (member.name, table, privilege, error)
    # pgmq's functions run with the caller's rights: those that change a queue need every
    # privilege on it, the read-only ones need SELECT
    writes = usage and {"select", "insert", "update", "delete"} <= future
    for call in PGMQ_CALLS:
        error = attempt(login, call.format(msg=world))
        assert denied(error) is not writes, (member.name, call, error)
    for call in PGMQ_READS:
        error = attempt(login, call)
        assert denied(error) is not (usage and "select" in future), (member.name, call, error)
    untouched(conn, world)


def test_the_spec_grants_reads_only_and_no_internal_function() -> None:
    for name, role in SPEC.roles.items():
        for table, privileges in role.tables.items():
            assert privileges == ["select"], (name, table)
        internal = [f for f in role.execute if SPEC.functions[f].internal or f.startswith("_")]
        assert internal == [], name
        for grant in role.external:  # queues are read at most (the dashboard's queue depth)
            assert set(grant.table_privileges_all) <= {"select"}, name
            assert set(grant.future_table_privileges) <= {"select"}, name


def test_granted_functions_run_with_the_owners_rights_and_no_search_path(
    conn: psycopg.Connection,
) -> None:
    granted = sorted({f for role in SPEC.roles.values() for f in role.execute})
    rows = fetch(
        conn,
        "select p.proname, p.prosecdef, p.proconfig,"
        " p.proowner = n.nspowner as owned_by_schema_owner"
        " from pg_proc as p join pg_namespace as n on n.oid = p.pronamespace"
        " where n.nspname = %s and p.proname = any(%s) order by 1",
        SCHEMA,
        granted,
    )
    assert [r["proname"] for r in rows] == granted
    for row in rows:
        assert row["prosecdef"] is True, row["proname"]
        assert row["proconfig"] == ['search_path=""'], row["proname"]
        assert row["owned_by_schema_owner"] is True, row["proname"]


@pytest.mark.usefixtures("world")
def test_public_has_no_grant_in_any_acl(conn: psycopg.Connection) -> None:
    grants = fetch(
        conn,
        "select p.oid::regprocedure::text as object"
        " from pg_proc as p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) as a"
        " where p.pronamespace = %s::regnamespace and a.grantee = 0"
        " union all"
        " select c.oid::regclass::text"
        " from pg_class as c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) as a"
        " where c.relnamespace in (%s::regnamespace, 'pgmq'::regnamespace) and a.grantee = 0"
        "   and c.relkind = 'r'",
        SCHEMA,
        SCHEMA,
    )
    assert grants == []


def test_upgrading_takes_back_the_queue_grants_of_earlier_migrations(
    empty_db: str, tmp_path: Path
) -> None:
    # 0001/0002 granted workers and clients the queue tables of flows created later
    # (default privileges on pgmq); a flow created then kept those grants on its queue
    released = tmp_path / "migrations"
    released.mkdir()
    for name in ("0001_initial.sql", "0002_batch_final_completions.sql"):
        shutil.copy(PROJECT_ROOT / "generated" / "migrations" / name, released / name)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        install_pgmq(conn)
        apply_migrations(conn, released)
        conn.execute("select pgflow.create_flow('old')")
        assert queue_grantees(conn) == {"pgflow_client", "pgflow_worker"}

        apply_migrations(conn)
        conn.execute("select pgflow.create_flow('new')")

        assert queue_grantees(conn) == QUEUE_READERS
        defaults = fetch(
            conn,
            "select a.grantee::regrole::text as role from pg_default_acl as d,"
            " aclexplode(d.defaclacl) as a where d.defaclnamespace = 'pgmq'::regnamespace"
            "   and a.grantee::regrole::text like 'pgflow\\_%%'",
        )
        assert {r["role"] for r in defaults} == QUEUE_READERS


# The roles the spec lets read the queues' tables (and nothing else on them).
QUEUE_READERS = {
    name
    for name, role in SPEC.roles.items()
    if any(g.schema_name == "pgmq" and g.future_table_privileges for g in role.external)
}


def queue_grantees(conn: psycopg.Connection) -> set[str]:
    """The pgflow roles with any privilege on a queue or archive table."""
    rows = fetch(
        conn,
        "select distinct a.grantee::regrole::text as role"
        " from pg_class as c, aclexplode(c.relacl) as a"
        " where c.relnamespace = 'pgmq'::regnamespace and c.relkind = 'r'"
        "   and a.grantee::regrole::text like 'pgflow\\_%%'",
    )
    return {r["role"] for r in rows}
