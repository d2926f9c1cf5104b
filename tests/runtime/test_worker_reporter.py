"""The completion reporter and the batch protocol: read_and_start_tasks + complete_tasks when
the engine has them, the per-task calls when it does not, task-by-task reports when a batch
is refused, a task failed (an attempt) when the engine refuses its output, and nothing
claimed when the engine cannot be told."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pgweave.client import Client
from pgweave.config import WorkerConfig
from pgweave.dsl import Flow
from pgweave.worker import Reported, WorkerThread
from pgweave.worker.records import TaskRecord
from pgweave.worker.reporter import Reporter
from pgweave_client import AsyncPgflowClient
from tests.runtime.processes import refused_dsn

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


async def report_all(reporter: Reporter, outputs: dict[TaskRecord, str]) -> list[Reported]:
    return list(await asyncio.gather(*(reporter.complete(r, o) for r, o in outputs.items())))


@pytest.mark.parametrize("batch", [True, False])
def test_an_output_the_engine_refuses_fails_only_its_task(
    db: str, batch: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Raw JSON text 'NaN' passes the worker's own checks only here, as a stand-in for any
    output the engine refuses: in a batch it sinks the call, so each is reported alone."""
    worker_id = uuid.uuid4()

    async def main() -> list[Reported]:
        async with AsyncConnectionPool(db, kwargs={"autocommit": True}, open=False) as pool:
            api = AsyncPgflowClient(pool)
            await api.create_flow("refusing")
            await api.add_step("refusing", "each", step_type="map")
            await api.register_worker(worker_id, "refusing", "test")
            await api.start_flow("refusing", [1, 2, 3])
            rows = await api.read_and_start_tasks_raw("refusing", worker_id, 10)
            records = sorted((TaskRecord.from_row(row) for row in rows), key=lambda r: r.task_index)
            reporter = Reporter(api, {"flow": "refusing"})
            reporter.batch = batch
            return await report_all(reporter, dict(zip(records, ["10", "NaN", "30"], strict=True)))

    with caplog.at_level(logging.INFO, logger="pgweave.worker"):
        results = asyncio.run(main())
    assert results == [Reported.COMPLETED, Reported.FAILED, Reported.COMPLETED]
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "select task_index, status, attempts_count, output, error_message"
            " from pgflow.step_tasks order by task_index"
        ).fetchall()
    assert [row[:4] for row in rows] == [
        (0, "completed", 1, 10),
        (1, "queued", 1, None),  # a failed attempt: retried per the step's options
        (2, "completed", 1, 30),
    ]
    assert rows[1][4].startswith(
        "the engine refused the handler's output: invalid input syntax for type json"
    )
    events = [r.getMessage() for r in caplog.records]
    assert events.count("task.output_refused") == 1
    assert ("tasks.batch_refused" in events) == batch


def test_an_outcome_the_engine_cannot_be_told_is_unreported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = TaskRecord("f", uuid.uuid4(), "s", None, 1, 0, None)

    async def main() -> tuple[Reported, Reported]:
        pool = AsyncConnectionPool(refused_dsn(), open=False, timeout=0.2)
        await pool.open(wait=False)
        try:
            reporter = Reporter(AsyncPgflowClient(pool), {"flow": "f"})
            completed = await reporter.complete(task, "1")
            failed = await reporter.fail(task, "boom")
        finally:
            await pool.close(0.5)
        return completed, failed

    with caplog.at_level(logging.ERROR, logger="pgweave.worker"):
        assert asyncio.run(main()) == (Reported.UNREPORTED, Reported.UNREPORTED)
    assert [r.getMessage() for r in caplog.records if r.name == "pgweave.worker"] == [
        "task.report_failed",
        "task.report_failed",
    ]
