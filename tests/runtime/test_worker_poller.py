"""The poller against live PostgreSQL: both protocols, ignored messages, task contexts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pgweave.config import WorkerConfig
from pgweave.worker.poller import Poller
from pgweave_client import AsyncPgflowClient

T = TypeVar("T")
CONFIG = WorkerConfig(max_poll_seconds=1, poll_interval_ms=20, visibility_timeout=30)


def with_poller(db: str, use: Callable[[Poller], Awaitable[T]]) -> T:
    async def main() -> T:
        async with AsyncConnectionPool(db, kwargs={"autocommit": True}, open=False) as pool:
            api = AsyncPgflowClient(pool)
            worker_id = uuid.uuid4()
            await api.register_worker(worker_id, "polled", "test")
            return await use(Poller(api, pool, "polled", worker_id, CONFIG))

    return asyncio.run(main())


@pytest.fixture
def polled(conn: psycopg.Connection) -> uuid.UUID:
    """A map flow 'polled' with one run of three tasks; returns the run id."""
    conn.execute("select pgflow.create_flow('polled', max_attempts => 3, base_delay => 0)")
    conn.execute("select pgflow.add_step('polled', 'each', step_type => 'map')")
    row = conn.execute("select run_id from pgflow.start_flow('polled', %s)", (Jsonb([5, 6, 7]),))
    found = row.fetchone()
    assert found is not None
    run_id: uuid.UUID = found[0]
    return run_id


@pytest.mark.parametrize("batch", [True, False])
def test_both_protocols_start_the_same_tasks(db: str, polled: uuid.UUID, batch: bool) -> None:
    async def use(poller: Poller) -> Any:
        assert await poller.detect_protocol()
        poller.batch_protocol = batch
        first = await poller.poll(2, lambda: False)
        rest = await poller.poll(10, lambda: False)
        empty = await poller.poll(10, lambda: False)  # a long poll of an empty queue
        return first, rest, empty

    first, rest, empty = with_poller(db, use)
    assert [(r.run_id, r.step_slug, r.task_index, r.input) for r in first + rest] == [
        (polled, "each", 0, 5),
        (polled, "each", 1, 6),
        (polled, "each", 2, 7),
    ]
    assert (len(first), empty) == (2, [])


def test_without_the_batch_functions_the_per_task_calls_are_used(
    db: str, conn: psycopg.Connection, polled: uuid.UUID
) -> None:
    conn.execute("drop function pgflow.complete_tasks, pgflow.read_and_start_tasks")

    async def use(poller: Poller) -> Any:
        return await poller.detect_protocol(), await poller.poll(10, lambda: False)

    batch, records = with_poller(db, use)
    assert not batch
    assert [r.task_index for r in records] == [0, 1, 2]


def test_messages_without_a_task_are_ignored_and_counted(
    db: str, conn: psycopg.Connection, polled: uuid.UUID
) -> None:
    conn.execute("select pgmq.send('polled', %s)", (Jsonb({"run_id": str(uuid.uuid4())}),))

    async def use(poller: Poller) -> Any:
        poller.batch_protocol = False
        return await poller.poll(10, lambda: False), poller.ignored

    records, ignored = with_poller(db, use)
    assert (len(records), ignored) == (3, 1)


def test_messages_read_while_stopping_are_left_for_later(
    db: str, conn: psycopg.Connection, polled: uuid.UUID
) -> None:
    async def use(poller: Poller) -> Any:
        poller.batch_protocol = False
        return await poller.poll(10, lambda: True)

    assert with_poller(db, use) == []
    started = conn.execute("select count(*) from pgflow.step_tasks where status = 'started'")
    assert started.fetchone() == (0,)


def test_contexts_carry_the_real_attempt_number_and_the_run_input(
    db: str, polled: uuid.UUID
) -> None:
    async def use(poller: Poller) -> Any:
        records = await poller.poll(10, lambda: False)
        first = await poller.contexts(records)
        await poller.api.fail_task(records[1].run_id, "each", 1, "try again")
        retried = await poller.poll(10, lambda: False)
        return first, await poller.contexts(retried)

    first, second = with_poller(db, use)
    assert sorted((key[2], c.attempt, c.flow_input) for key, c in first.items()) == [
        (0, 1, [5, 6, 7]),
        (1, 1, [5, 6, 7]),
        (2, 1, [5, 6, 7]),
    ]
    assert [(key[2], c.attempt) for key, c in second.items()] == [(1, 2)]
