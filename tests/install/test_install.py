"""pgmq installation and migration apply/record/refuse behaviour on live PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from pgweave.install import InstallError, apply_migrations, install_pgmq, pgmq_state
from pgweave_generator.pipeline import generate_files, write
from tests import PROJECT_ROOT
from tests.generator.conftest import MINI

MIGRATIONS_DIR = PROJECT_ROOT / "generated" / "migrations"


def test_install_pgmq_from_pypi_sql_then_noop(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert pgmq_state(conn) == "missing"
        first = install_pgmq(conn)
        assert first in ("sql", "extension")
        assert install_pgmq(conn) == f"already-{first}"
        conn.execute("select pgmq.create('probe')")
        conn.execute("""select pgmq.send('probe', '{"x": 1}')""")
        row = conn.execute("select message, headers from pgmq.read('probe', 10, 1)").fetchone()
        assert row == ({"x": 1}, None)


def test_migration_without_pgmq_fails_clearly_and_leaves_nothing(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException) as caught:
            apply_migrations(conn)
        assert "pgweave needs pgmq >= 1.5, which is not installed in this database" in str(
            caught.value
        )
        assert caught.value.diag.message_hint is not None
        assert "pgweave install-pgmq" in caught.value.diag.message_hint
        assert conn.execute("select to_regnamespace('pgflow')").fetchone() == (None,)
        assert conn.execute("select to_regclass('pgweave.schema_migrations')").fetchone() == (None,)


def test_migration_run_as_plain_script_without_pgmq_creates_nothing(empty_db: str) -> None:
    """Applied outside our runner (e.g. psql -f), the precondition stops it before anything."""
    sql = (MIGRATIONS_DIR / "0001_initial.sql").read_text()
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(
            psycopg.errors.RaiseException, match=r"pgmq >= 1\.5, which is not installed"
        ):
            conn.execute(sql.encode())
        assert conn.execute("select to_regnamespace('pgflow')").fetchone() == (None,)


def test_pgmq_older_than_1_5_is_refused(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "create schema pgmq; create type pgmq.message_record as (msg_id bigint, message jsonb)"
        )
        with pytest.raises(psycopg.errors.RaiseException, match="installed pgmq is older"):
            apply_migrations(conn)
        assert conn.execute("select to_regnamespace('pgflow')").fetchone() == (None,)


def test_migrations_apply_once_and_are_recorded(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        install_pgmq(conn)
        files = sorted(p.name for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
        assert files[:2] == ["0001_initial.sql", "0002_batch_final_completions.sql"]
        assert apply_migrations(conn) == files
        assert apply_migrations(conn) == []
        rows = conn.execute(
            "select version, name from pgweave.schema_migrations order by version"
        ).fetchall()
        assert rows == [(f[:4], f[5:-4]) for f in files]
        tables = {
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'pgflow'"
            ).fetchall()
        }
        assert tables == {"flows", "steps", "deps", "workers", "runs", "step_states", "step_tasks"}


def test_edited_applied_migration_is_refused(empty_db: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        install_pgmq(conn)
        apply_migrations(conn, migrations)
        target = migrations / "0001_initial.sql"
        target.write_text(target.read_text() + "\n-- edited\n")
        with pytest.raises(InstallError, match="was applied but its file has changed since"):
            apply_migrations(conn, migrations)


def assert_check_violation(conn: psycopg.Connection, statement: str, constraint: str) -> None:
    """The statement fails on the CHECK constraint ``constraint``."""
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        conn.execute(statement)
    assert caught.value.diag.constraint_name == constraint


def test_any_spec_generates_a_migration_that_applies(empty_db: str, tmp_path: Path) -> None:
    """The mini spec (every section of the format) applies and behaves as specified."""
    out = tmp_path / "generated"
    write(generate_files(MINI / "spec.yaml", out), out)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        install_pgmq(conn)
        apply_migrations(conn, out / "migrations")
        conn.execute(
            "insert into shop.customers (customer_id, name) values ('00000000-0000-0000-0000-000000000001', 'Ann')"
        )
        order = conn.execute(
            "select status from shop.place_order(1, '00000000-0000-0000-0000-000000000001')"
        ).fetchone()
        assert order == ("placed",)
        assert conn.execute("select status from shop.ship_order(1)").fetchone() == ("shipped",)
        with pytest.raises(psycopg.errors.RaiseException, match="Order not found: 2"):
            conn.execute("select * from shop.ship_order(2)")
        assert_check_violation(conn, "update shop.orders set status = 'lost'", "status_is_valid")
        assert_check_violation(
            conn, "update shop.orders set cancelled_at = now()", "shipped_at_or_cancelled_at"
        )
        assert_check_violation(
            conn,
            "update shop.orders set shipped_at = placed_at - interval '1 day'",
            "shipped_at_is_after_placed_at",
        )
        assert_check_violation(
            conn, "insert into shop.customers (name) values ('')", "customers_name_check"
        )
        grants = conn.execute(
            "select privilege_type from information_schema.role_table_grants"
            " where grantee = 'shop_clerk' and table_name = 'customers'"
        ).fetchall()
        assert grants == [("SELECT",)]
        public_exec = conn.execute(
            "select has_function_privilege('public', 'shop.ship_order(bigint)', 'execute')"
        ).fetchone()
        assert public_exec == (False,)
