"""The worker's one retry helper, with real connection failures and real SQL errors."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from pgweave.worker.retry import Backoff, is_transient, with_retries
from tests.runtime.processes import refused_dsn


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(first=0.5, cap=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_lost_connection_is_retried_until_the_attempts_are_used_up() -> None:
    calls: list[int] = []
    dsn = refused_dsn()

    async def connect() -> None:
        calls.append(1)
        await psycopg.AsyncConnection.connect(dsn)

    with pytest.raises(psycopg.OperationalError) as caught:
        asyncio.run(with_retries(connect, attempts=3, backoff=Backoff(first=0.01)))
    assert is_transient(caught.value)
    assert len(calls) == 3


def test_a_call_that_works_again_returns_its_result(db: str) -> None:
    dsns = [refused_dsn(), db]

    async def query() -> object:
        async with await psycopg.AsyncConnection.connect(dsns.pop(0)) as conn:
            row = await (await conn.execute("select 42")).fetchone()
            return row[0] if row else None

    assert asyncio.run(with_retries(query, backoff=Backoff(first=0.01))) == 42
    assert dsns == []


def test_an_error_of_the_call_itself_is_not_retried(db: str) -> None:
    calls: list[int] = []

    async def divide() -> None:
        calls.append(1)
        async with await psycopg.AsyncConnection.connect(db) as conn:
            await conn.execute("select 1 / 0")

    with pytest.raises(psycopg.errors.DivisionByZero) as caught:
        asyncio.run(with_retries(divide, attempts=3, backoff=Backoff(first=0.01)))
    assert not is_transient(caught.value)
    assert calls == [1]


def test_attempts_must_be_positive() -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(ValueError, match="attempts must be >= 1"):
        asyncio.run(with_retries(nothing, attempts=0))
