"""Real login roles for privilege tests: members of the spec's roles (or of none)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pgweave_generator.loader import load_spec
from tests import PROJECT_ROOT

Connect = Callable[[str | None], psycopg.Connection]
SPEC_FILE = PROJECT_ROOT / "spec" / "pgflow.yaml"
SPEC = load_spec(SPEC_FILE).spec
"""The engine's spec: the roles these logins are members of."""


class Logins:
    """Fresh login roles made by a superuser connection, dropped again by :meth:`drop`."""

    def __init__(self, conn: psycopg.Connection, db: str) -> None:
        self.conn = conn
        self.db = db
        self.names: list[str] = []
        self.connections: list[psycopg.Connection] = []

    def dsn(self, member_of: str | None) -> str:
        """The DSN of a new login role, a member of ``member_of`` (or of nothing)."""
        name = f"login_{uuid.uuid4().hex[:12]}"
        password = uuid.uuid4().hex
        self.conn.execute(f"create role {name} login password '{password}'")
        if member_of is not None:
            self.conn.execute(f"grant {member_of} to {name}")
        self.names.append(name)
        return make_conninfo(self.db, user=name, password=password)

    def connect(self, member_of: str | None) -> psycopg.Connection:
        """An autocommit connection as a new login role (see :meth:`dsn`)."""
        login = psycopg.connect(self.dsn(member_of), autocommit=True)
        self.connections.append(login)
        return login

    def drop(self) -> None:
        """Close the connections and drop the login roles with what they own."""
        for login in self.connections:
            login.close()
        for name in self.names:
            self.conn.execute(f"drop owned by {name}")
            self.conn.execute(f"drop role {name}")


def attempt(conn: psycopg.Connection, query: str, *params: Any) -> psycopg.Error | None:
    """Run a statement in a transaction that is always rolled back; its error, if any."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(query, params)
    except psycopg.Error as error:
        return error
    return None


def refused(conn: psycopg.Connection, query: str, *params: Any) -> None:
    """The statement fails with 42501 (permission denied) and changes nothing."""
    error = attempt(conn, query, *params)
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), (query, error)
