"""Fixtures for the generated client's round trips: clients over a connection and a pool."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from pgweave_client import PgflowClient, errors
from pgweave_client._base import Arg
from pgweave_generator.build import load_ir
from pgweave_generator.render.python_models import public_functions
from tests import PROJECT_ROOT


def public_function_names() -> set[str]:
    """The functions the spec marks public: each must have a round trip."""
    schema = load_ir(PROJECT_ROOT / "spec" / "pgflow.yaml")
    return {f.name for f in public_functions(schema)}


class RecordingClient(PgflowClient):
    """A client that records which SQL functions it called."""

    def __init__(self, source: psycopg.Connection[Any] | ConnectionPool[Any]) -> None:
        super().__init__(source)
        self.called: set[str] = set()

    def _call(
        self,
        function: str,
        args: Sequence[Arg],
        declared: Sequence[type[errors.PgflowError]],
        *,
        from_clause: bool,
        count: bool = False,
    ) -> list[dict[str, Any]]:
        self.called.add(function)
        return super()._call(function, args, declared, from_clause=from_clause, count=count)


CALLED: set[str] = set()
"""Every SQL function some recording client called in this test session (per process)."""


@pytest.fixture(params=["connection", "pool"])
def client(request: pytest.FixtureRequest, db: str) -> Iterator[RecordingClient]:
    """The sync client over an autocommit connection, then over a connection pool."""
    if request.param == "connection":
        with psycopg.connect(db, autocommit=True) as conn:
            client = RecordingClient(conn)
            yield client
    else:
        with ConnectionPool(db, min_size=1, max_size=2) as pool:
            client = RecordingClient(pool)
            yield client
    CALLED.update(client.called)


def read_message_ids(conn: psycopg.Connection[Any], queue: str, qty: int = 10) -> list[int]:
    """Read (and hide for 30 s) up to ``qty`` messages of a flow's queue, as a worker would."""
    rows = conn.execute("select msg_id from pgmq.read(%s, 30, %s)", (queue, qty)).fetchall()
    return [int(row[0]) for row in rows]
