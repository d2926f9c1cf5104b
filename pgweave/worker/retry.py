"""The one retry helper: which database errors are worth retrying, and how long to wait.

A lost connection, a pool that cannot hand one out in time, or a socket error is
*transient*: the same call may succeed later. Anything else (the engine refusing a value,
an error raised by a function) is not, and retrying it would only repeat it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (psycopg.OperationalError, OSError)
"""Errors of the connection rather than of the call (``PoolTimeout`` is an OperationalError)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection problem that a later attempt may not meet."""
    return isinstance(exc, TRANSIENT)


class Backoff:
    """Exponential delays: ``first``, doubling up to ``cap`` seconds; ``reset`` starts over."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        """The delay before the next attempt (each call doubles the following one)."""
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        """Start from ``first`` again (after a success)."""
        self._next = self.first


async def with_retries(
    call: Callable[[], Awaitable[T]], *, attempts: int = 3, backoff: Backoff | None = None
) -> T:
    """``await call()``, again after a pause when it fails with a transient error.

    At most ``attempts`` calls; the last transient error, or the first other one, is raised.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    delays = backoff or Backoff()
    attempt = 1
    while True:
        try:
            return await call()
        except TRANSIENT:
            if attempt >= attempts:
                raise
            attempt += 1
            await asyncio.sleep(delays.next())
