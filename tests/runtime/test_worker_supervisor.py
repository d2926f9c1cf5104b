"""The supervisor: replicas on one pool, a stop honoured before the database answers, and a
worker that cannot start stopping the others."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from pgweave.client import Client
from pgweave.config import WorkerConfig
from pgweave.dsl import Flow
from pgweave.worker import FlowShapeMismatchError, Supervisor, WorkerThread
from tests.runtime.processes import refused_dsn

CONFIG = WorkerConfig(max_poll_seconds=1, poll_interval_ms=20)


async def plus_one(n: int) -> int:
    return n + 1


def test_replicas_share_the_work_and_stop_together(db: str, conn: psycopg.Connection) -> None:
    flow = Flow[list[int]]("replicated").map("each", plus_one)
    with WorkerThread([flow], db, CONFIG, replicas=3) as thread:
        assert len(thread.workers) == 3
        assert len({w.worker_id for w in thread.workers}) == 3
        state = Client(db).start_flow(flow, list(range(30))).wait(timeout=30)
    assert state.output == {"each": list(range(1, 31))}
    assert sum(w.stats.completed for w in thread.workers) == 30
    rows = conn.execute("select count(*), count(stopped_at) from pgflow.workers").fetchone()
    assert rows == (3, 3)


def test_a_stop_while_the_database_is_unreachable_ends_the_wait_at_once() -> None:
    supervisor = Supervisor([Flow[Any]("unreachable").step("s", plus_one)], refused_dsn())

    async def main() -> tuple[list[Any], float]:
        running = asyncio.create_task(supervisor.run())
        await asyncio.sleep(0.5)
        asked = time.monotonic()
        supervisor.request_stop("test")
        workers = await asyncio.wait_for(running, 10)  # the pool alone would wait 30 s
        return workers, time.monotonic() - asked

    workers, took = asyncio.run(main())
    assert workers == []
    assert took < 5


def test_a_worker_that_cannot_start_stops_the_others(db: str, conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('clash')")
    conn.execute("select pgflow.add_step('clash', 'other')")
    good = Flow[list[int]]("fine").map("each", plus_one)
    clashing = Flow[Any]("clash").step("mine", plus_one)
    with pytest.raises(FlowShapeMismatchError, match="flow 'clash' in the database"):
        WorkerThread([good, clashing], db, CONFIG).start()
    rows = conn.execute("select queue_name, stopped_at is not null from pgflow.workers")
    assert rows.fetchall() == [("fine", True)]
