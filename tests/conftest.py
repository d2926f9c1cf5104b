"""Live PostgreSQL for the tests.

By default a throwaway cluster is started (the embedded default; as the ``postgres`` user
when running as root) and removed at the end of the session, also on failure. Set
``PGFLOW_TEST_DSN`` to use an existing server instead (its user must be able to create
databases). Each test gets its own database, cloned from a template that already holds
pgmq and the generated migrations, so tests are isolated and cheap.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgweave.embedded import EmbeddedPostgres
from pgweave.install import apply_migrations, install_pgmq


class Server:
    """Where test databases are created: an embedded cluster or an existing server."""

    def __init__(self, base_dsn: str) -> None:
        self.base_dsn = base_dsn

    def dsn(self, dbname: str) -> str:
        """DSN of database ``dbname`` on this server."""
        return make_conninfo(self.base_dsn, dbname=dbname)

    def admin(self) -> psycopg.Connection:
        """An autocommit connection for CREATE/DROP DATABASE."""
        return psycopg.connect(self.base_dsn, autocommit=True)

    def create_database(self, template: str | None = None) -> str:
        """Create a uniquely named database (optionally from a template); returns its name."""
        name = f"pgweave_test_{uuid.uuid4().hex[:12]}"
        clause = f" template {template}" if template else ""
        with self.admin() as conn:
            conn.execute(f"create database {name}{clause}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop a test database, disconnecting whoever still uses it."""
        with self.admin() as conn:
            conn.execute(f"drop database if exists {name} with (force)")

    @contextmanager
    def database(self, template: str | None = None) -> Iterator[str]:
        """A new database (optionally from a template) that is dropped afterwards; its name."""
        name = self.create_database(template)
        try:
            yield name
        finally:
            self.drop_database(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The session's PostgreSQL server."""
    external = os.environ.get("PGFLOW_TEST_DSN")
    if external:
        yield Server(external)
        return
    cluster = EmbeddedPostgres()
    cluster.start()
    try:
        yield Server(cluster.dsn("postgres"))
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def template_db(pg_server: Server) -> Iterator[str]:
    """A database with pgmq and all generated migrations, used as template for each test."""
    with pg_server.database() as name:
        with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
            install_pgmq(conn)
            apply_migrations(conn)
        yield name


@pytest.fixture
def db(pg_server: Server, template_db: str) -> Iterator[str]:
    """DSN of a fresh database holding pgmq and the engine (dropped after the test)."""
    with pg_server.database(template_db) as name:
        yield pg_server.dsn(name)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's fresh engine database."""
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


@pytest.fixture
def empty_db(pg_server: Server) -> Iterator[str]:
    """DSN of a fresh empty database (no pgmq, no engine)."""
    with pg_server.database() as name:
        yield pg_server.dsn(name)
