"""Clients' waits survive a PostgreSQL crash-restart: they reconnect, LISTEN again, re-read
the run and return; within bounds (a wrong DSN fails at once, an outage longer than
``RECONNECT_SECONDS`` raises the connection error)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from pgweave import kept, runs
from pgweave.aio import AsyncClient
from pgweave.client import Client
from pgweave.embedded import EmbeddedPostgres
from pgweave.runs import RunEvent, RunState
from pgweave_client import PgflowClient
from tests.chaos.harness import cluster, engine_database, listening
from tests.runtime.processes import wait_for


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    with cluster() as own:
        engine_database(own)
        with psycopg.connect(own.dsn("chaos"), autocommit=True) as conn:
            conn.execute("select pgflow.create_flow('one')")
            conn.execute("select pgflow.add_step('one', 'only')")
            conn.execute("select pgflow.create_flow('two')")
            conn.execute("select pgflow.add_step('two', 'first')")
            conn.execute("select pgflow.add_step('two', 'second', array['first'])")
        yield own


@pytest.fixture
def dsn(server: EmbeddedPostgres) -> Iterator[str]:
    """The engine database's DSN; the server runs again after each test."""
    yield server.dsn("chaos")
    if not (server.data_dir / "postmaster.pid").exists():
        server.restart()


def crash_restart_while_listening(server: EmbeddedPostgres, run_id: uuid.UUID) -> None:
    """Crash and restart the server once a wait listens, then wait until it listens again."""
    with psycopg.connect(server.dsn("chaos"), autocommit=True) as conn:
        wait_for(lambda: listening(conn, run_id), 30, "the wait to LISTEN")
    server.crash()
    time.sleep(0.5)
    server.restart()
    with psycopg.connect(server.dsn("chaos"), autocommit=True) as conn:
        wait_for(lambda: listening(conn, run_id), 30, "the wait to LISTEN again")


def complete_the_task(dsn: str, run_id: uuid.UUID, flow: str = "one", step: str = "only") -> None:
    """Do the run's next task as a worker would."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        api = PgflowClient(conn)
        worker = uuid.uuid4()
        api.register_worker(worker, flow, "test")
        assert [t.run_id for t in api.read_and_start_tasks(flow, worker, 1)] == [run_id]
        api.complete_task(run_id, step, 0, "done")


class HeldClient(Client):
    """A client whose connections after the first two (a wait's) wait for ``release``."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.connections = 0
        self.release = threading.Event()

    def _connect(self) -> psycopg.Connection:
        self.connections += 1
        if self.connections > 2:
            self.release.wait(30)
        return super()._connect()


class HeldAsyncClient(AsyncClient):
    """The asyncio twin of :class:`HeldClient`."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.connections = 0
        self.release = threading.Event()

    async def _connect(self) -> psycopg.AsyncConnection:
        self.connections += 1
        if self.connections > 2:
            await asyncio.to_thread(self.release.wait, 30)
        return await super()._connect()


def crash_restart_while_held(server: EmbeddedPostgres, run_id: uuid.UUID) -> None:
    """Crash and restart the server once a wait listens (the wait cannot reconnect yet)."""
    with psycopg.connect(server.dsn("chaos"), autocommit=True) as conn:
        wait_for(lambda: listening(conn, run_id), 30, "the wait to LISTEN")
    server.crash()
    time.sleep(0.5)
    server.restart()


def test_a_sync_wait_reconnects_and_receives_the_events_after_a_crash(
    server: EmbeddedPostgres, dsn: str
) -> None:
    client = Client(dsn)
    run_id = client.start_flow("one", {}).run_id
    events: list[RunEvent] = []
    finals: list[RunState] = []

    def wait() -> None:
        finals.append(client.wait(run_id, timeout=60, on_event=lambda e, _s: events.append(e)))

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    crash_restart_while_listening(server, run_id)
    complete_the_task(dsn, run_id)
    waiter.join(30)
    assert [f.status for f in finals] == ["completed"]
    assert finals[0].output == {"only": "done"}
    assert [e.event for e in events] == ["step:only:completed", "run:completed"]


def test_an_async_wait_reconnects_after_a_crash(server: EmbeddedPostgres, dsn: str) -> None:
    async def scenario() -> RunState:
        async with AsyncClient(dsn) as client:
            run = await client.start_flow("one", {})
            waiting = asyncio.create_task(run.wait(timeout=60))
            await asyncio.to_thread(crash_restart_while_listening, server, run.run_id)
            await asyncio.to_thread(complete_the_task, dsn, run.run_id)
            return await asyncio.wait_for(waiting, 30)

    final = asyncio.run(scenario())
    assert (final.status, final.output) == ("completed", {"only": "done"})


def test_a_wait_that_reconnects_after_the_run_ended_replays_what_it_missed(
    server: EmbeddedPostgres, dsn: str
) -> None:
    client = HeldClient(dsn)
    run_id = Client(dsn).start_flow("two", {}).run_id
    events: list[RunEvent] = []
    finals: list[RunState] = []

    def wait() -> None:
        finals.append(client.wait(run_id, timeout=60, on_event=lambda e, _s: events.append(e)))

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    crash_restart_while_held(server, run_id)
    complete_the_task(dsn, run_id, "two", "first")
    complete_the_task(dsn, run_id, "two", "second")
    client.release.set()
    waiter.join(30)
    assert [f.status for f in finals] == ["completed"]
    assert [e.event for e in events] == [
        "step:first:completed",
        "step:second:started",
        "step:second:completed",
        "run:completed",
    ]
    assert all(e.payload["replayed"] is True for e in events)
    assert events[0].payload["output"] == "done"
    assert events[-1].payload["output"] == {"second": "done"}
    assert events[-1].payload["completed_at"] == finals[0].completed_at.isoformat()  # type: ignore[union-attr]
    # nothing was replayed twice: the follow-up wait sees only what is new
    assert len({e.event for e in events}) == len(events)


def test_an_async_events_stream_ends_with_the_replayed_end_of_the_run(
    server: EmbeddedPostgres, dsn: str
) -> None:
    async def scenario() -> list[RunEvent]:
        client = HeldAsyncClient(dsn)
        run = await AsyncClient(dsn).start_flow("one", {})
        received: list[RunEvent] = []

        async def follow() -> None:
            async for event in client.events(run.run_id, timeout=60):
                received.append(event)

        following = asyncio.create_task(follow())
        await asyncio.to_thread(crash_restart_while_held, server, run.run_id)
        await asyncio.to_thread(complete_the_task, dsn, run.run_id)
        client.release.set()
        await asyncio.wait_for(following, 30)
        return received

    events = asyncio.run(scenario())
    assert [(e.event, e.payload.get("replayed")) for e in events] == [
        ("step:only:completed", True),
        ("run:completed", True),
    ]


def test_a_wait_gives_up_when_the_outage_outlasts_the_reconnect_window(
    server: EmbeddedPostgres, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "RECONNECT_SECONDS", 1.0)
    client = Client(dsn)
    run_id = client.start_flow("one", {}).run_id
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            client.wait(run_id, timeout=60)
        except psycopg.OperationalError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        wait_for(lambda: listening(conn, run_id), 30, "the wait to LISTEN")
    server.crash()
    crashed = time.monotonic()
    waiter.join(30)
    assert len(errors) == 1
    assert time.monotonic() - crashed < 10


def test_a_wait_on_an_unreachable_server_fails_at_once(server: EmbeddedPostgres) -> None:
    unreachable = server.dsn("chaos").replace(f"port={server.port}", "port=1")
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        Client(unreachable).wait(uuid.uuid4(), timeout=60)
    assert time.monotonic() - started < runs.RECONNECT_PAUSE * 5


def test_client_calls_fail_while_the_server_is_down_and_work_again_after_its_restart(
    server: EmbeddedPostgres, dsn: str
) -> None:
    with Client(dsn) as client:
        client.start_flow("one", {})
        run = client.start_flow("one", {})  # the second call: over the kept connection
        server.crash()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            client.get_run(run.run_id)  # the broken kept connection is not handed out
        assert time.monotonic() - started < kept.POOL_WAIT + 5
        server.restart()
        assert client.get_run(run.run_id).status == "started"
        assert client.start_flow("one", {}).status == "started"
