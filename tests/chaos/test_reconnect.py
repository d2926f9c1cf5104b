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

from pgweave import runs
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


def complete_the_task(dsn: str, run_id: uuid.UUID) -> None:
    """Do the run's only task as a worker would."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        api = PgflowClient(conn)
        worker = uuid.uuid4()
        api.register_worker(worker, "one", "test")
        assert [t.run_id for t in api.read_and_start_tasks("one", worker, 1)] == [run_id]
        api.complete_task(run_id, "only", 0, "done")


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
        client = AsyncClient(dsn)
        run = await client.start_flow("one", {})
        waiting = asyncio.create_task(run.wait(timeout=60))
        await asyncio.to_thread(crash_restart_while_listening, server, run.run_id)
        await asyncio.to_thread(complete_the_task, dsn, run.run_id)
        return await asyncio.wait_for(waiting, 30)

    final = asyncio.run(scenario())
    assert (final.status, final.output) == ("completed", {"only": "done"})


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
