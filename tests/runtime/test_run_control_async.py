"""Run control on the asyncio client: the same methods as the sync client's, on live
PostgreSQL (the sync tests cover each behaviour in depth; here every method once, with its
documented errors)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import psycopg
import pytest

from pgweave.aio import AsyncClient
from pgweave_client import errors
from tests.engine.helpers import ensure_worker
from tests.runtime.run_control import (
    TRACEBACK,
    completed_chain,
    failed_chain,
    make_flows,
    partly_mapped,
    waiting_run,
)


def test_async_run_control(db: str, conn: psycopg.Connection) -> None:
    make_flows(conn)
    done = completed_chain(conn)
    failed = failed_chain(conn)
    mapped = partly_mapped(conn)
    waiting = waiting_run(conn)
    worker = ensure_worker(conn, "waiting", uuid.uuid4())

    async def scenario() -> None:
        async with AsyncClient(db) as client:
            listed = [r.run_id for r in await client.list_runs()]
            assert listed == [waiting, mapped, failed, done]
            assert [r.run_id for r in await client.list_runs(status="failed", limit=1)] == [mapped]
            first = (await client.list_runs(limit=1))[0]
            assert [r.run_id for r in await client.list_runs(before=first, limit=1)] == [mapped]
            assert await client.list_runs(flow="chain", since=timedelta(0)) == []

            waiter = asyncio.ensure_future(client.wait(waiting, timeout=30))
            row = await client.cancel_run(waiting, reason="async")
            assert row.status == "cancelled"
            final = await asyncio.wait_for(waiter, 30)
            assert final.status == "cancelled"
            assert final.cancel_reason == "async"
            with pytest.raises(errors.RunNotCancellableError):
                await client.cancel_run(done)

            other = await client.start_flow("waiting", {"k": 1}, idempotency_key="k1")
            same = await client.start_flow("waiting", {"k": 1}, idempotency_key="k1")
            assert same.run_id == other.run_id
            with pytest.raises(errors.IdempotencyConflictError):
                await client.start_flow("chain", {"k": 1}, idempotency_key="k1")
            assert (await client.pause_run(other.run_id)).paused_at is not None
            assert (await client.unpause_run(other.run_id)).paused_at is None
            with pytest.raises(errors.RunNotPausableError):
                await client.pause_run(done)
            assert (await client.pause_flow("waiting")).paused_at is not None
            assert (await client.unpause_flow("waiting")).paused_at is None
            with pytest.raises(errors.UnknownFlowError):
                await client.pause_flow("nope")

            retry = await client.retry_run(failed)
            assert retry.state.restart_of_run_id == failed
            assert retry.status == "started"
            resumed = await client.resume_run(mapped)
            tasks = await client.get_tasks(resumed.run_id)
            assert [t.status for t in tasks] == ["completed", "completed", "queued"]
            with pytest.raises(errors.RunNotRestartableError):
                await client.resume_run(done)
            [broken] = await client.get_tasks(failed, status="failed")
            assert broken.error_type == "ValueError"
            assert broken.error_traceback == TRACEBACK

            flows = {f.flow.flow_slug: f.active_runs for f in await client.list_flows()}
            assert flows == {"chain": 1, "spread": 1, "waiting": 1}
            assert [w.worker.worker_id for w in await client.list_workers(flow="waiting")] == [
                worker
            ]

    asyncio.run(scenario())
