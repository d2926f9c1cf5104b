"""The async client over an AsyncConnection and an AsyncConnectionPool: every method, errors."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pgweave_client import AsyncPgflowClient, errors, models
from pgweave_client._base import Arg
from pgweave_client.models import RunStatus, StepTaskStatus
from tests.client.conftest import public_function_names

WORKER = uuid.UUID("33333333-3333-3333-3333-333333333333")


class RecordingAsyncClient(AsyncPgflowClient):
    """An async client that records which SQL functions it called."""

    def __init__(self, source: psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any]) -> None:
        super().__init__(source)
        self.called: set[str] = set()

    async def _call(
        self,
        function: str,
        args: Sequence[Arg],
        declared: Sequence[type[errors.PgflowError]],
        *,
        from_clause: bool,
        count: bool = False,
    ) -> list[dict[str, Any]]:
        self.called.add(function)
        return await super()._call(function, args, declared, from_clause=from_clause, count=count)


@asynccontextmanager
async def async_client(kind: str, dsn: str) -> AsyncIterator[RecordingAsyncClient]:
    """An async client over a fresh connection or pool."""
    if kind == "connection":
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            yield RecordingAsyncClient(conn)
    else:
        async with AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False) as pool:
            yield RecordingAsyncClient(pool)


def run_with(
    kind: str, dsn: str, scenario: Callable[[RecordingAsyncClient], Awaitable[None]]
) -> set[str]:
    """Run an async scenario to the end; returns the functions it called."""

    async def main() -> set[str]:
        async with async_client(kind, dsn) as client:
            await scenario(client)
            return client.called

    return asyncio.run(main())


async def read_message_ids(client: RecordingAsyncClient, queue: str) -> list[int]:
    """Read the queue's visible messages as a worker would."""
    return await client.poll_messages(queue, 30, 10, max_poll_seconds=1, poll_interval_ms=20)


async def full_cycle(client: RecordingAsyncClient) -> None:
    """Every public function at least once, asserting each result's shape."""
    assert await client.is_local() is False
    assert await client.is_valid_slug("ok") is True
    assert await client.calculate_retry_delay(2, 3) == 16
    flow = await client.create_flow("relay", timeout=10)
    assert isinstance(flow, models.FlowsRow)
    assert flow.opt_timeout == 10
    step = await client.add_step("relay", "one")
    assert isinstance(step, models.StepsRow)
    await client.add_step("relay", "two", ["one"], max_attempts=1)
    worker = await client.register_worker(WORKER, "relay", "relay_worker")
    assert worker.function_name == "relay_worker"
    assert await client.worker_heartbeat(WORKER) is True

    [run] = await client.start_flow("relay", {"n": 1})
    assert run.status == RunStatus.STARTED
    [task] = await client.start_tasks("relay", await read_message_ids(client, "relay"), WORKER)
    assert isinstance(task, models.StepTaskRecord)
    assert task.step_slug == "one"
    [done] = await client.complete_task(run.run_id, "one", 0, {"n": 2})
    assert done.status == StepTaskStatus.COMPLETED
    [task] = await client.start_tasks("relay", await read_message_ids(client, "relay"), WORKER)
    assert task.input == {"one": {"n": 2}}
    [failed] = await client.fail_task(run.run_id, "two", 0, "nope")
    assert (failed.status, failed.error_message) == (StepTaskStatus.FAILED, "nope")
    state = await client.get_run_with_states(run.run_id)
    assert isinstance(state, models.GetRunWithStatesJson)
    assert state.run.status is RunStatus.FAILED

    again = await client.start_flow_with_states("relay", {"n": 5})
    assert isinstance(again, dict)
    assert isinstance(again["steps"], list)
    assert len(again["steps"]) == 2
    [batch] = await client.read_and_start_tasks("relay", WORKER, 10)
    assert isinstance(batch, models.StepTaskRecord)
    assert batch.flow_input == {"n": 5}
    many = await client.start_flows("relay", [{"n": 6}, {"n": 7}])
    assert [(r.input, r.status) for r in many] == [
        ({"n": 6}, RunStatus.STARTED),
        ({"n": 7}, RunStatus.STARTED),
    ]
    assert batch.run_id is not None
    assert (batch.step_slug, batch.task_index) == ("one", 0)
    [finished] = await client.complete_tasks([batch.run_id], ["one"], [0], [{"n": 6}])
    assert (finished.status, finished.output) == (StepTaskStatus.COMPLETED, {"n": 6})
    await run_control(client)
    assert await client.requeue_stalled_tasks() == 0
    await client.prune_data_older_than(datetime.timedelta(hours=1))
    pruned = await client.prune_data_older_than_batched(datetime.timedelta(hours=1), max_batches=2)
    assert all(row.rows_deleted == 0 for row in pruned)
    await client.mark_worker_stopped(WORKER)
    compiled = await client.ensure_flow_compiled(
        "copy", {"steps": [{"slug": "only", "stepType": "single", "dependencies": []}]}
    )
    assert isinstance(compiled, dict)
    assert compiled["status"] == "compiled"
    await client.delete_flow_and_data("copy")
    with pytest.raises(errors.PgCronMissingError):
        await client.setup_requeue_stalled_tasks_cron("1 minute")


async def run_control(client: RecordingAsyncClient) -> None:
    """The run-control functions, each once."""
    run = await client.start_flow_idempotent("relay", {"n": 7}, run_id=uuid.uuid4())
    assert (await client.start_flow_idempotent("relay", {"n": 7}, run_id=run.run_id)) == run
    assert (await client.pause_run(run.run_id)).paused_at is not None
    assert (await client.unpause_run(run.run_id)).paused_at is None
    assert (await client.pause_flow("relay")).paused_at is not None
    assert (await client.unpause_flow("relay")).paused_at is None
    tasks = await client.read_and_start_tasks("relay", WORKER, 10)
    [task] = [t for t in tasks if t.run_id == run.run_id]
    assert (task.step_slug, task.task_index) == ("one", 0)
    [failed] = await client.fail_task_with_details(
        run.run_id, "one", 0, "bad", error_type="KeyError"
    )
    assert (failed.status, failed.error_type) == (StepTaskStatus.QUEUED, "KeyError")
    cancelled = await client.cancel_run(run.run_id)
    assert cancelled.status == RunStatus.CANCELLED
    assert (await client.retry_run(run.run_id)).restart_of_run_id == run.run_id
    resumed = await client.resume_run(run.run_id)
    assert resumed.restart_of_run_id == run.run_id


async def error_cases(client: RecordingAsyncClient) -> None:
    """Documented errors are mapped; the connection stays usable."""
    with pytest.raises(errors.FlowNotFoundError) as missing:
        await client.start_flow("nowhere", [])
    assert missing.value.constraint == "runs_flow_slug_fkey"
    await client.create_flow("fan")
    await client.add_step("fan", "a")
    await client.add_step("fan", "b")
    with pytest.raises(errors.MapStepTooManyDependenciesError) as too_many:
        await client.add_step("fan", "c", ["a", "b"], step_type="map")
    assert too_many.value.params["count"] == "2"
    with pytest.raises(psycopg.errors.NotNullViolation):
        await client.start_flow("fan", None)
    assert await client.is_valid_slug("still_fine") is True


@pytest.mark.parametrize("kind", ["connection", "pool"])
def test_async_client_calls_every_public_function(kind: str, db: str) -> None:
    called = run_with(kind, db, full_cycle)
    public = public_function_names()
    assert public <= called, sorted(public - called)


@pytest.mark.parametrize("kind", ["connection", "pool"])
def test_async_client_maps_errors(kind: str, db: str) -> None:
    run_with(kind, db, error_cases)
