"""The worker's batch protocol: read_and_start_tasks + complete_tasks when the engine has
them, the per-task calls when it does not, and task-by-task reports when a batch is refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from pgweave.client import Client
from pgweave.config import WorkerConfig
from pgweave.dsl import Flow
from pgweave.worker import Reported, WorkerThread
from pgweave.worker.reporter import Reporter

CONFIG = WorkerConfig(max_concurrent=20, batch_size=20, max_poll_seconds=1, poll_interval_ms=20)


async def triple(n: int) -> int:
    await asyncio.sleep(0)
    return n * 3


async def total(deps: dict[str, Any]) -> int:
    return sum(deps["each"])


def batch_flow(slug: str) -> Flow[Any]:
    return Flow[list[int]](slug).map("each", triple).step("sum", total, depends_on=["each"])


def test_a_busy_worker_reads_starts_and_completes_in_batches(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    original = Reporter._complete_many

    async def recording(self: Reporter, batch: list[Any]) -> list[Reported]:
        batches.append(len(batch))
        return await original(self, batch)

    monkeypatch.setattr(Reporter, "_complete_many", recording)
    flow = batch_flow("batched")
    with WorkerThread([flow], db, CONFIG) as thread:
        [worker] = thread.workers
        assert worker.batch_protocol
        state = Client(db).start_flow(flow, list(range(60))).wait(timeout=30)
    assert state.status == "completed"
    assert state.output == {"sum": 3 * sum(range(60))}
    assert worker.stats.completed == 61
    assert sum(batches) == 61
    assert len(batches) < 61  # outputs of handlers finishing together went in one call


def test_without_the_batch_functions_the_worker_uses_the_per_task_calls(db: str) -> None:
    flow = batch_flow("classic")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("drop function pgflow.complete_tasks, pgflow.read_and_start_tasks")
    with WorkerThread([flow], db, CONFIG) as thread:
        [worker] = thread.workers
        assert not worker.batch_protocol
        state = Client(db).start_flow(flow, [1, 2, 3]).wait(timeout=30)
    assert (state.status, state.output) == ("completed", {"sum": 18})
    assert worker.stats.completed == 4


async def maybe_bad(n: int) -> str:
    return "\u0000" if n == 2 else f"ok {n}"  # jsonb cannot store \u0000


def test_a_refused_batch_is_reported_task_by_task(db: str) -> None:
    flow = Flow[list[int]]("refused").map("each", maybe_bad)
    with WorkerThread([flow], db, CONFIG):
        run = Client(db).start_flow(flow, [0, 1, 2, 3])
        with psycopg.connect(db, autocommit=True) as conn:
            for _ in range(200):
                row = conn.execute(
                    "select count(*) filter (where status = 'completed'),"
                    " count(*) filter (where status = 'started')"
                    " from pgflow.step_tasks where run_id = %s",
                    (run.run_id,),
                ).fetchone()
                if row == (3, 1):
                    break
                time.sleep(0.05)
    # the three good outputs were stored; the bad one could not be, its task stays started
    assert row == (3, 1)
