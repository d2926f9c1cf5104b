"""The asyncio client against a worker running in the same process."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from pgweave.aio import AsyncClient
from pgweave.client import RunNotFoundError, RunTimeoutError
from pgweave.config import WorkerConfig
from pgweave.worker import WorkerThread
from tests.runtime.flows import arithmetic, squares


def test_async_start_wait_and_events(db: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(db) as client:
            first = await client.start_flow(arithmetic, {"a": 3, "b": 4})
            second = await client.start_flow("squares", [2, 3])
            events = [e.event async for e in first.events(timeout=60)]
            final = await second.wait(timeout=60)
            assert (await client.get_run(first.run_id)).output == {
                "report": {"sum": 7, "product": 12, "input": {"a": 3, "b": 4}}
            }
            assert final.output == {"total": 13}
            assert events[-1] == "run:completed"
            assert "step:report:completed" in events
            with pytest.raises(RunNotFoundError):
                await client.get_run(uuid.uuid4())

    config = WorkerConfig(max_poll_seconds=1, requeue_interval=0)
    with WorkerThread([arithmetic, squares], db, config):
        asyncio.run(scenario())


def test_async_wait_times_out_without_workers(db: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(db) as client:
            with WorkerThread([squares], db, WorkerConfig(compile_flow=True)):
                pass  # only to compile the flow
            run = await client.start_flow(squares, [1])
            with pytest.raises(RunTimeoutError) as caught:
                await run.wait(timeout=0.3)
            assert caught.value.state is not None
            assert caught.value.state.status == "started"

    asyncio.run(scenario())


def test_async_wait_on_a_handle_replays_what_happened_since_its_state(db: str) -> None:
    """The run ends (worker stopped) before the handle waits: on_event still gets its
    events, replayed from the handle's state."""

    async def scenario() -> None:
        async with AsyncClient(db) as client:
            config = WorkerConfig(max_poll_seconds=1, requeue_interval=0)
            with WorkerThread([squares], db, config):
                run = await client.start_flow(squares, [2, 3])
                await client.wait(run.run_id, timeout=60)
            seen: list[str] = []
            final = await run.wait(timeout=5, on_event=lambda e, _s: seen.append(e.event))
            assert final.output == {"total": 13}
            assert seen[-1] == "run:completed"
            assert seen[:-1]
            assert all(e.startswith("step:") for e in seen[:-1])

    asyncio.run(scenario())
