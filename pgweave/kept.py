"""The connections a client keeps between its calls: a small psycopg pool, opened lazily.

Constructing a client connects nowhere. Its first call connects directly, so a wrong DSN or
a server that is down fails at once with libpq's own error (and a command line that makes
one call opens no pool). From the second call on, calls borrow an autocommit connection
from a pool of ``min_size`` to ``max_size`` connections that is checked before each use: a
connection broken by a crash, a failover or ``pg_terminate_backend`` is replaced, never
handed out. When the pool cannot give one within :data:`POOL_WAIT` seconds (the server is
down, every connection is busy, or the pool's first connection takes longer) the call
connects directly instead, so it fails with the connection's error or goes on over a
connection of its own. ``close()`` closes the pool; a closed client opens a new one if it
is used again.

Waits (LISTEN) do not use these: a connection subscribed to a channel never returns to a pool.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

MIN_SIZE = 1
"""Connections a client keeps open once it made a second call."""
MAX_SIZE = 4
"""Connections a client's pool opens at most (concurrent calls beyond wait or connect)."""
POOL_WAIT = 1.0
"""Seconds a call waits for a pooled connection before it connects directly."""


def pool_options(min_size: int, max_size: int) -> dict[str, Any]:
    """The keyword arguments of a client's (unopened) pool; ``ValueError`` for bad sizes."""
    if not 0 <= min_size <= max_size or max_size < 1:
        raise ValueError(
            f"pool sizes must satisfy 0 <= min_size <= max_size, max_size >= 1: "
            f"got min_size={min_size}, max_size={max_size}"
        )
    return {
        "min_size": min_size,
        "max_size": max_size,
        "kwargs": {"autocommit": True},
        "open": False,
        "num_workers": 1,
    }


class KeptConnections:
    """A synchronous client's connections (thread-safe)."""

    def __init__(self, dsn: str, min_size: int = MIN_SIZE, max_size: int = MAX_SIZE) -> None:
        self.dsn = dsn
        self.options = pool_options(min_size, max_size)
        self._lock = threading.Lock()
        self._used = False
        self._pool: ConnectionPool | None = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection for one call (pooled from the second call on)."""
        pool = self._pool_for_call()
        conn = _borrow(pool) if pool is not None else None
        if pool is None or conn is None:
            with psycopg.connect(self.dsn, autocommit=True) as direct:
                yield direct
            return
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def _pool_for_call(self) -> ConnectionPool | None:
        """None for the first call, else the pool (opened now if need be)."""
        with self._lock:
            if not self._used:
                self._used = True
                return None
            if self._pool is None:
                pool = ConnectionPool(
                    self.dsn, check=ConnectionPool.check_connection, **self.options
                )
                try:
                    pool.open(wait=True, timeout=POOL_WAIT)
                except PoolTimeout:  # wait() closed it again: this call connects directly
                    return None
                self._pool = pool
            return self._pool

    def close(self) -> None:
        """Close the kept connections (those in use are closed when given back)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _borrow(pool: ConnectionPool) -> psycopg.Connection | None:
    try:
        return pool.getconn(timeout=POOL_WAIT)
    except PoolTimeout:
        return None


class AsyncKeptConnections:
    """An asyncio client's connections (its pool belongs to the event loop of its first
    pooled call)."""

    def __init__(self, dsn: str, min_size: int = MIN_SIZE, max_size: int = MAX_SIZE) -> None:
        self.dsn = dsn
        self.options = pool_options(min_size, max_size)
        self._lock = asyncio.Lock()
        self._used = False
        self._pool: AsyncConnectionPool | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """An autocommit connection for one call (pooled from the second call on)."""
        pool = await self._pool_for_call()
        conn = await _aborrow(pool) if pool is not None else None
        if pool is None or conn is None:
            async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as direct:
                yield direct
            return
        try:
            yield conn
        finally:
            await pool.putconn(conn)

    async def _pool_for_call(self) -> AsyncConnectionPool | None:
        async with self._lock:
            if not self._used:
                self._used = True
                return None
            if self._pool is None:
                pool = AsyncConnectionPool(
                    self.dsn, check=AsyncConnectionPool.check_connection, **self.options
                )
                try:
                    await pool.open(wait=True, timeout=POOL_WAIT)
                except PoolTimeout:  # wait() closed it again: this call connects directly
                    return None
                self._pool = pool
            return self._pool

    async def close(self) -> None:
        """Close the kept connections (those in use are closed when given back)."""
        async with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


async def _aborrow(pool: AsyncConnectionPool) -> psycopg.AsyncConnection | None:
    try:
        return await pool.getconn(timeout=POOL_WAIT)
    except PoolTimeout:
        return None
