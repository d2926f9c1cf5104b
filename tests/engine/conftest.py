"""Fixtures of the engine tests that need more than a connection."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.engine.event_catalogue import check_event
from tests.engine.logins import Connect, Logins


@pytest.fixture(autouse=True)
def events_match_the_catalogue(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test with a database: every event the realtime stub still holds (the
    ones a test took were checked then) matches the events catalogue."""
    if "db" not in request.fixturenames:
        yield
        return
    dsn: str = request.getfixturevalue("db")  # set up inside: torn down after this check
    yield
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set lock_timeout = '5s'")
        if conn.execute("select to_regclass('realtime.messages')").fetchone() == (None,):
            return
        rows = conn.execute("select event, topic, payload from realtime.messages order by seq")
        for event, topic, payload in rows.fetchall():
            check_event(event, topic, payload)


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
