"""Install pgmq and apply the generated migrations to a database."""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable

import psycopg

MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
MIN_PGMQ = (1, 5)
LOCK_KEY = 0x70677765  # advisory lock serialising concurrent installers ("pgwe")


class InstallError(RuntimeError):
    """pgmq or a migration could not be installed."""


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def pgmq_state(conn: psycopg.Connection) -> str:
    """'extension', 'sql' (installed from SQL) or 'missing'."""
    row = conn.execute(
        "select exists (select 1 from pg_extension where extname = 'pgmq'),"
        " to_regtype('pgmq.message_record') is not null"
    ).fetchone()
    assert row is not None
    if row[0]:
        return "extension"
    return "sql" if row[1] else "missing"


def install_pgmq(conn: psycopg.Connection) -> str:
    """Install pgmq unless present: ``create extension`` when available, else the PyPI SQL.

    Returns how pgmq is (now) installed: 'extension', 'sql', or 'already-<state>'.
    """
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        state = pgmq_state(conn)
        if state != "missing":
            return f"already-{state}"
        available = conn.execute(
            "select default_version from pg_available_extensions where name = 'pgmq'"
        ).fetchone()
        if available is not None and _version_tuple(str(available[0])) >= MIN_PGMQ:
            conn.execute("create extension pgmq")
            return "extension"
        sql = importlib.resources.files("pgmq").joinpath("sql/pgmq.sql").read_text(encoding="utf-8")
        conn.execute(sql.encode())
        return "sql"


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: str
    name: str
    path: Traversable

    @property
    def sql(self) -> str:
        """The migration's SQL text."""
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, recorded when applied to detect later edits."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def engine_migrations() -> Traversable:
    """The engine's migrations, shipped as package data (``generated/migrations`` in the repo)."""
    return importlib.resources.files("pgweave_migrations")


def list_migrations(directory: Traversable | None = None) -> list[Migration]:
    """The migrations of a directory (default: the engine's) in version order."""
    directory = engine_migrations() if directory is None else directory
    found = []
    sql_files = (p for p in directory.iterdir() if p.is_file() and p.name.endswith(".sql"))
    for path in sorted(sql_files, key=lambda p: p.name):
        match = MIGRATION_NAME.match(path.name)
        if match is None:
            raise InstallError(
                f"unexpected file {path.name} in {directory}: migrations are named NNNN_name.sql"
                "; rename or remove it"
            )
        found.append(Migration(match.group(1), match.group(2), path))
    if not found:
        raise InstallError(
            f"no migrations found in {directory}: reinstall pgweave (its wheel ships them)"
        )
    return found


def apply_migrations(conn: psycopg.Connection, directory: Traversable | None = None) -> list[str]:
    """Apply the migrations not yet applied (default: the engine's), each in its own transaction;
    returns their names.

    Applied migrations are recorded in ``pgweave.schema_migrations`` with a checksum; a
    recorded migration whose file changed since is an error.
    """
    applied: list[str] = []
    for migration in list_migrations(directory):
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            conn.execute(
                "create schema if not exists pgweave;"
                " create table if not exists pgweave.schema_migrations ("
                " version text primary key, name text not null, checksum text not null,"
                " applied_at timestamptz not null default now())"
            )
            row = conn.execute(
                "select checksum from pgweave.schema_migrations where version = %s",
                (migration.version,),
            ).fetchone()
            if row is not None:
                if row[0] != migration.checksum:
                    raise InstallError(
                        f"migration {migration.path.name} was applied but its file has changed "
                        "since; an applied migration must stay as it was: restore the file (or "
                        "install the pgweave version that applied it) and record changes as a "
                        "new migration"
                    )
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "insert into pgweave.schema_migrations (version, name, checksum) values (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied.append(migration.path.name)
    return applied
