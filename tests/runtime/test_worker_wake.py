"""Waking a worker in its long poll, against live PostgreSQL.

A wake-up ends the long poll at once, and nothing the database read is ever dropped: the
tests force the wake-up at the moment the long poll's read returns its rows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.abc import Params, QueryNoTemplate
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pgweave.client import Client
from pgweave.config import WorkerConfig
from pgweave.worker import WorkerThread
from pgweave.worker.poller import Poller
from pgweave_client import AsyncPgflowClient
from tests.engine.logins import Logins
from tests.runtime.flows import arithmetic
from tests.runtime.processes import wait_for

T = TypeVar("T")
# A long poll checking the queue every 50 ms for up to 30 s; read messages stay invisible for
# 60 s, so a dropped one would not come back within any of these tests.
CONFIG = WorkerConfig(max_poll_seconds=30, poll_interval_ms=50, visibility_timeout=60)
LONG_POLLS = ('"poll_messages"(', "pgmq.read_with_poll(")
"""How the poller's long polls call the database (pgweave's function, pgflow's)."""
PARKED = "select count(*) from pgmq.q_arithmetic where vt >= '9000-01-01'"
LONG_POLL_ACTIVE = (
    "select count(*) from pg_stat_activity where datname = current_database()"
    " and state = 'active' and (query like '%%poll_messages%%' or query like '%%read_with_poll%%')"
    " and pid <> pg_backend_pid()"
)


class WakeOnRows(psycopg.AsyncCursor[Any]):
    """A cursor that sets :attr:`wake` as soon as a long poll's rows have arrived, and lets
    the event loop act on it before handing the rows on (the race of a wake-up with a read)."""

    wake: asyncio.Event | None = None
    woken_with_rows = 0

    async def execute(  # type: ignore[override]  # without the overload for templates
        self,
        query: QueryNoTemplate,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> WakeOnRows:
        await super().execute(query, params, prepare=prepare, binary=binary)
        text = query.as_string(self.connection) if isinstance(query, sql.Composable) else query
        is_long_poll = any(name in str(text) for name in LONG_POLLS)
        if self.wake is not None and is_long_poll and self.rowcount > 0:
            WakeOnRows.woken_with_rows += 1
            self.wake.set()
            await asyncio.sleep(0.2)  # whatever the wake-up does happens now
        return self


def with_poller(db: str, use: Callable[[Poller, AsyncPgflowClient], Awaitable[T]]) -> T:
    """Run ``use`` with a poller of the flow 'woken' whose connections use :class:`WakeOnRows`."""

    async def main() -> T:
        kwargs = {"autocommit": True, "cursor_factory": WakeOnRows}
        async with AsyncConnectionPool(db, kwargs=kwargs, open=False) as pool:
            api = AsyncPgflowClient(pool)
            worker_id = uuid.uuid4()
            await api.register_worker(worker_id, "woken", "test")
            poller = Poller(api, pool, "woken", worker_id, CONFIG)
            await poller.detect_protocol()
            return await use(poller, api)

    WakeOnRows.woken_with_rows = 0
    try:
        return asyncio.run(main())
    finally:
        WakeOnRows.wake = None


async def until_long_polling(api: AsyncPgflowClient, polling: asyncio.Task[Any]) -> None:
    """Return once ``polling`` waits in a long poll in the database."""
    for _ in range(200):
        if polling.done():
            raise AssertionError(f"the poll ended: {polling.result()!r}")
        async with api.connection() as conn:
            row = await (await conn.execute(LONG_POLL_ACTIVE)).fetchone()
        if row and row[0] > 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no long poll started")


@pytest.fixture
def woken(conn: psycopg.Connection) -> None:
    """A one-step flow 'woken' with an empty queue."""
    conn.execute("select pgflow.create_flow('woken')")
    conn.execute("select pgflow.add_step('woken', 'only')")


@pytest.mark.parametrize("batch", [True, False])
def test_a_wake_up_as_the_long_poll_reads_a_message_drops_nothing(
    db: str, conn: psycopg.Connection, woken: None, batch: bool
) -> None:
    async def use(poller: Poller, api: AsyncPgflowClient) -> Any:
        poller.batch_protocol = batch
        wake = asyncio.Event()
        WakeOnRows.wake = wake
        polling = asyncio.create_task(poller.poll(10, lambda: False, wake))
        await until_long_polling(api, polling)
        (run,) = await api.start_flow("woken", Jsonb({"n": 1}))
        return run.run_id, await asyncio.wait_for(polling, 20)

    run_id, records = with_poller(db, use)
    assert WakeOnRows.woken_with_rows == 1  # the long poll read the message, then the wake-up
    assert [(r.run_id, r.step_slug) for r in records] == [(run_id, "only")]
    task = conn.execute("select status from pgflow.step_tasks where run_id = %s", (run_id,))
    assert task.fetchall() == [("started",)]


def test_a_wake_up_ends_an_idle_long_poll_and_the_next_poll_reads(
    db: str, conn: psycopg.Connection, woken: None
) -> None:
    async def use(poller: Poller, api: AsyncPgflowClient) -> Any:
        wake = asyncio.Event()
        polling = asyncio.create_task(poller.poll(10, lambda: False, wake))
        await until_long_polling(api, polling)
        wake.set()
        ended = await asyncio.wait_for(polling, 10)  # the long poll would wait 30 s
        # the pool's connections serve further calls (none is hit by the ended long poll)
        for _ in range(20):
            async with api.connection() as used:
                await used.execute("select pg_sleep(0.005)")
        (run,) = await api.start_flow("woken", Jsonb({"n": 2}))
        return ended, run.run_id, await poller.poll(10, lambda: False, wake)

    ended, run_id, records = with_poller(db, use)
    assert ended == []
    assert [r.run_id for r in records] == [run_id]


def test_a_completed_step_wakes_its_worker_for_the_steps_that_depend_on_it(
    db: str, conn: psycopg.Connection
) -> None:
    # No events and a queue checked every 20 s: only the completions can wake the worker for
    # 'report', which depends on 'add' and 'multiply'.
    config = WorkerConfig(
        listen=False, max_poll_seconds=30, poll_interval_ms=20_000, requeue_interval=0
    )
    with WorkerThread([arithmetic], db, config):
        pass  # creates the flow
    run = Client(db).start_flow("arithmetic", {"a": 2, "b": 3})
    with WorkerThread([arithmetic], db, config):  # reads 'add' and 'multiply' at once
        state = run.wait(timeout=15)
    assert state.status == "completed"


@pytest.mark.parametrize("held_by", ["flow", "run"])
def test_unpausing_wakes_an_idle_worker(db: str, conn: psycopg.Connection, held_by: str) -> None:
    # The queue is checked every 20 s: only the unpause events can wake the worker in time.
    config = WorkerConfig(max_poll_seconds=30, poll_interval_ms=20_000, requeue_interval=0)
    with WorkerThread([arithmetic], db, config):
        conn.execute("select pgflow.pause_flow('arithmetic')")
        run = Client(db).start_flow("arithmetic", {"a": 2, "b": 3})  # starts and waits
        # the worker, woken, reads the tasks and parks them (a pause_run racing that read
        # would leave them hidden for the read's visibility timeout: the engine's design)
        wait_for(lambda: conn.execute(PARKED).fetchone() == (2,), 10, "the tasks parked")
        if held_by == "run":
            conn.execute("select pgflow.pause_run(%s)", (run.run_id,))
            conn.execute("select pgflow.unpause_flow('arithmetic')")
        time.sleep(0.5)  # the worker is back in its long poll, the tasks held
        held = conn.execute(
            "select count(*) from pgflow.step_tasks where run_id = %s and status = 'queued'",
            (run.run_id,),
        ).fetchone()
        if held_by == "run":
            conn.execute("select pgflow.unpause_run(%s)", (run.run_id,))
        else:
            conn.execute("select pgflow.unpause_flow('arithmetic')")
        state = run.wait(timeout=15)
    assert held == (2,)
    assert state.status == "completed"


def test_a_least_privilege_worker_login_ends_its_own_long_poll(
    db: str, conn: psycopg.Connection
) -> None:
    logins = Logins(conn, db)
    config = WorkerConfig(max_poll_seconds=30, poll_interval_ms=20_000, requeue_interval=0)
    try:
        with WorkerThread([arithmetic], logins.dsn("pgflow_worker"), config) as thread:
            time.sleep(0.5)  # in its long poll, which checks the queue every 20 s
            state = Client(db).start_flow("arithmetic", {"a": 1, "b": 2}).wait(timeout=15)
            failures = thread.workers[0].stats.poll_failures
    finally:
        logins.drop()
    assert (state.status, failures) == ("completed", 0)
