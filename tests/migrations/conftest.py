"""Fixtures for migration tests: a spec copy with its own output dir, and fresh databases."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgweave.cli import main
from pgweave.install import apply_migrations, install_pgmq
from pgweave_generator.ir import SchemaIR
from pgweave_generator.render.sql import render_initial_migration
from pgweave_generator.snapshot import load_history
from tests import PROJECT_ROOT
from tests.conftest import Server
from tests.migrations.catalog import catalog_differences, dump_catalog

MINI = PROJECT_ROOT / "tests" / "generator" / "fixtures" / "mini"
REAL = PROJECT_ROOT / "spec"


class Workspace:
    """A writable spec copy plus a generated/ dir, driven through the real CLI."""

    def __init__(self, root: Path, source: Path, spec_name: str) -> None:
        self.root = root
        shutil.copytree(source, root / "spec")
        self.spec = root / "spec" / spec_name
        self.out = root / "generated"

    def edit(self, old: str, new: str, file: str | None = None) -> None:
        """Replace exactly one occurrence of ``old`` in the spec (or another spec file)."""
        path = self.spec if file is None else self.root / "spec" / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} must occur exactly once in {path.name}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    def append(self, file: str, text: str) -> None:
        """Append text to a spec file."""
        path = self.root / "spec" / file
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")

    def write(self, file: str, text: str) -> None:
        """Create or overwrite a spec file (e.g. a function body)."""
        (self.root / "spec" / file).write_text(text, encoding="utf-8")

    def cli(self, *args: str) -> tuple[int, str]:
        """Run ``pgweave ARGS --spec … --out …``; returns (exit code, output)."""
        result = CliRunner().invoke(main, [*args, "--spec", str(self.spec), "--out", str(self.out)])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    def new(self, name: str, *flags: str) -> str:
        """``migration new NAME``, which must succeed; returns the migration's SQL."""
        code, output = self.cli("migration", "new", name, *flags)
        assert code == 0, output
        history = load_history(self.out)
        return (self.out / history[-1].migration_path).read_text(encoding="utf-8")

    @property
    def migrations(self) -> Path:
        """The generated migrations directory."""
        return self.out / "migrations"

    def snapshot(self, number: int = -1) -> SchemaIR:
        """The schema recorded by a snapshot (default: the last)."""
        history = load_history(self.out)
        return (history[number - 1] if number > 0 else history[number]).schema


@pytest.fixture
def mini_ws(tmp_path: Path) -> Workspace:
    """A copy of the mini spec with an empty output dir."""
    return Workspace(tmp_path, MINI, "spec.yaml")


@pytest.fixture
def real_ws(tmp_path: Path) -> Workspace:
    """A copy of the project's spec (spec/pgflow.yaml and its bodies)."""
    return Workspace(tmp_path, REAL, "pgflow.yaml")


@pytest.fixture(scope="session")
def pgmq_template(pg_server: Server) -> Iterator[str]:
    """A database holding only pgmq, cloned for each fresh database."""
    with pg_server.database() as name:
        with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
            install_pgmq(conn)
        yield name


FreshDb = Callable[[], str]


@pytest.fixture
def fresh_db(pg_server: Server, pgmq_template: str) -> Iterator[FreshDb]:
    """Factory of fresh databases holding pgmq (all dropped after the test)."""
    with ExitStack() as databases:

        def make() -> str:
            return pg_server.dsn(databases.enter_context(pg_server.database(pgmq_template)))

        yield make


def install_snapshot(dsn: str, schema: SchemaIR) -> None:
    """Apply the snapshot's full creation (its migration 0001) to an empty database."""
    sql = render_initial_migration(schema, "snapshot").content
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.encode())


def assert_same_catalog(upgraded: str, fresh: str, schema: SchemaIR) -> dict[str, Any]:
    """The two databases hold the same schema (and privileges); returns the dump."""
    roles = tuple(sorted({r.name for r in schema.roles}))
    with psycopg.connect(upgraded) as a, psycopg.connect(fresh) as b:
        left = dump_catalog(a, schema.schema, roles)
        right = dump_catalog(b, schema.schema, roles)
    problems = catalog_differences(left, right)
    assert not problems, "\n".join(problems[:40])
    return left


def upgrade(dsn: str, ws: Workspace) -> list[str]:
    """Apply the workspace's pending migrations to a database; returns their names."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return apply_migrations(conn, ws.migrations)
