"""A spec edit of the example → ``migration new`` → upgrading a database that holds orders
equals a fresh install of the new spec (catalog comparison of tests/migrations)."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
from click.testing import CliRunner

from pgweave.cli import main
from pgweave.install import apply_migrations
from pgweave_generator.snapshot import load_history
from tests.conftest import Server
from tests.examples.conftest import GENERATED, ORDERS
from tests.migrations.conftest import assert_same_catalog, install_snapshot


def test_spec_edit_then_migration_new_upgrades_like_a_fresh_install(
    tmp_path: Path, pg_server: Server
) -> None:
    root = tmp_path / "orders"
    shutil.copytree(ORDERS, root, ignore=shutil.ignore_patterns("build"))
    spec, out = root / "spec.yaml", root / "generated"

    def cli(*args: str) -> int:
        return CliRunner().invoke(main, [*args, "--spec", str(spec), "--out", str(out)]).exit_code

    text = spec.read_text(encoding="utf-8")
    column = "      cancelled_at: timestamptz\n"
    assert text.count(column) == 1
    spec.write_text(
        text.replace(
            column,
            column + "      gift_note: {type: text, check: length(gift_note) <= 200,"
            " doc: A note for the recipient.}\n",
        ),
        encoding="utf-8",
    )
    assert cli("check") == 1
    assert cli("migration", "new", "gift_note") == 0
    assert cli("check") == 0
    sql = (out / "migrations" / "0002_gift_note.sql").read_text(encoding="utf-8")
    assert "alter table fulfilment.orders add column gift_note text;" in sql
    new_schema = load_history(out)[-1].schema
    with pg_server.database() as upgraded, pg_server.database() as fresh:
        with psycopg.connect(pg_server.dsn(upgraded), autocommit=True) as conn:
            assert apply_migrations(conn, GENERATED / "migrations") == ["0001_initial.sql"]
            conn.execute(
                "select fulfilment.add_product('tea', 'Green tea', 450, 5),"
                " fulfilment.register_customer('ada@example.com', 'Ada')"
            )
            assert apply_migrations(conn, out / "migrations") == ["0002_gift_note.sql"]
            assert conn.execute("select count(*) from fulfilment.customers").fetchone() == (1,)
        install_snapshot(pg_server.dsn(fresh), new_schema)
        assert_same_catalog(pg_server.dsn(upgraded), pg_server.dsn(fresh), new_schema)
