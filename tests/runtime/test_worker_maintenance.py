"""Heartbeats and requeueing against live PostgreSQL; failures are logged, never fatal."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pgweave.config import WorkerConfig
from pgweave.worker.maintenance import Maintenance
from pgweave.worker.records import WorkerStats
from pgweave_client import AsyncPgflowClient
from tests.runtime.processes import refused_dsn

T = TypeVar("T")
CONFIG = WorkerConfig(heartbeat_interval=0.05, requeue_interval=0.05)


def run_maintenance(
    dsn: str,
    worker_id: uuid.UUID,
    until: Callable[[Maintenance, asyncio.Event], Awaitable[T]],
) -> tuple[T, WorkerStats]:
    """Run the loops of a worker until ``until(loops, deprecated)`` returns; its result and
    the stats (``deprecated`` is set when the loops say the worker must stop)."""

    async def main() -> T:
        async with AsyncConnectionPool(
            dsn, kwargs={"autocommit": True}, open=False, timeout=0.2
        ) as pool:
            maintenance = Maintenance(
                AsyncPgflowClient(pool),
                worker_id,
                CONFIG,
                stats,
                asyncio.Event(),
                lambda: deprecated.set(),
                {},
            )
            maintenance.start()
            try:
                return await asyncio.wait_for(until(maintenance, deprecated), 20)
            finally:
                await maintenance.stop()

    stats = WorkerStats()
    deprecated = asyncio.Event()
    return asyncio.run(main()), stats


def test_a_deprecated_worker_is_told_to_stop(db: str, conn: psycopg.Connection) -> None:
    worker_id = uuid.uuid4()
    conn.execute("select pgflow.register_worker(%s, 'q', 'test')", (worker_id,))

    row = conn.execute("select last_heartbeat_at from pgflow.workers").fetchone()
    assert row is not None
    first: datetime = row[0]

    async def until(maintenance: Maintenance, deprecated: asyncio.Event) -> datetime | None:
        beat: datetime | None = first
        while beat == first:  # alive: heartbeats are recorded
            await asyncio.sleep(0.05)
            beat = await _last_heartbeat(db, worker_id)
        assert not deprecated.is_set()
        conn.execute("update pgflow.workers set deprecated_at = now()")
        await deprecated.wait()
        return beat

    beat, _ = run_maintenance(db, worker_id, until)
    assert beat is not None
    assert beat > first


async def _last_heartbeat(dsn: str, worker_id: uuid.UUID) -> datetime | None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(
            "select last_heartbeat_at from pgflow.workers where worker_id = %s", (worker_id,)
        )
        row = await cursor.fetchone()
    return row[0] if row else None


def test_stalled_tasks_are_requeued_and_counted(db: str, conn: psycopg.Connection) -> None:
    worker_id = uuid.uuid4()
    conn.execute("select pgflow.create_flow('stalls', timeout => 1)")
    conn.execute("select pgflow.add_step('stalls', 'each', step_type => 'map')")
    conn.execute("select pgflow.register_worker(%s, 'stalls', 'test')", (worker_id,))
    conn.execute("select pgflow.start_flow('stalls', %s)", (Jsonb([1, 2]),))
    conn.execute("select * from pgflow.read_and_start_tasks('stalls', %s, 10)", (worker_id,))
    conn.execute(
        "update pgflow.step_tasks set queued_at = now() - interval '2 hours',"
        " started_at = now() - interval '1 hour'"
    )

    async def until(maintenance: Maintenance, deprecated: asyncio.Event) -> None:
        while maintenance.stats.requeued < 2:
            await asyncio.sleep(0.02)

    _, stats = run_maintenance(db, worker_id, until)
    assert stats.requeued == 2
    queued = conn.execute("select count(*) from pgflow.step_tasks where status = 'queued'")
    assert queued.fetchone() == (2,)


def test_failed_calls_are_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    async def until(maintenance: Maintenance, deprecated: asyncio.Event) -> None:
        while sum(r.getMessage() == "worker.requeue_failed" for r in caplog.records) < 2:
            await asyncio.sleep(0.02)

    with caplog.at_level(logging.WARNING, logger="pgweave.worker"):
        run_maintenance(refused_dsn(), uuid.uuid4(), until)
    events = {r.getMessage() for r in caplog.records if r.name == "pgweave.worker"}
    assert events == {"worker.heartbeat_failed", "worker.requeue_failed"}
