"""Fixtures for the order-fulfilment example (examples/orders): a database it is installed in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgweave.install import apply_migrations

ORDERS = Path(__file__).resolve().parents[2] / "examples" / "orders"
SPEC = ORDERS / "spec.yaml"
GENERATED = ORDERS / "generated"


@pytest.fixture
def orders_conn(empty_db: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database (no pgmq) holding the example's schema."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        applied = apply_migrations(conn, GENERATED / "migrations")
        assert applied == ["0001_initial.sql"]
        yield conn
