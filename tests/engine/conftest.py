"""Fixtures of the engine tests that need more than a connection."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.engine.logins import Connect, Logins


@pytest.fixture
def logins(conn: psycopg.Connection, db: str) -> Iterator[Logins]:
    """Fresh login roles (members of a pgflow role, or of none), dropped at the end."""
    made = Logins(conn, db)
    yield made
    made.drop()


@pytest.fixture
def connect_as(logins: Logins) -> Connect:
    """Connections as fresh login roles, members of a pgflow role (or of none for None)."""
    return logins.connect
