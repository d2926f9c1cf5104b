"""The clients keep their connections between calls (pgweave.kept): none before the first
call, one backend reused from the second call on, released by close(); a terminated pooled
backend is replaced, threads share one client, a wrong DSN still fails at once."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from pgweave.aio import AsyncClient
from pgweave.client import Client
from pgweave.dsl import Flow
from pgweave.kept import MAX_SIZE, POOL_WAIT
from tests.runtime.processes import wait_for
from tests.runtime.test_client import chain as chain  # the fixture


def backends(conn: psycopg.Connection, app: str) -> set[int]:
    """The pids of the sessions with application name ``app``."""
    rows = conn.execute(
        "select pid from pg_stat_activity where application_name = %s", (app,)
    ).fetchall()
    return {row[0] for row in rows}


def named(db: str) -> tuple[str, str]:
    """A unique application name and ``db``'s DSN with it."""
    app = f"kept-{uuid.uuid4().hex[:12]}"
    return app, f"{db} application_name={app}"


def test_the_client_reuses_one_backend_and_close_releases_it(
    db: str, conn: psycopg.Connection, chain: Flow[Any]
) -> None:
    app, dsn = named(db)
    client = Client(dsn)
    assert backends(conn, app) == set()  # constructing connects nowhere
    client.start_flow(chain, {"n": 0})
    # the first call connected directly, and closed its connection
    wait_for(lambda: not backends(conn, app), 10, "the first call's backend to end")
    seen = []
    for i in range(1, 6):
        run = client.start_flow(chain, {"n": i})
        assert client.get_run(run.run_id).input == {"n": i}
        seen.append(backends(conn, app))
    assert len(seen[0]) == 1
    assert all(pids == seen[0] for pids in seen)
    client.close()
    wait_for(lambda: not backends(conn, app), 10, "the kept connection to close")
    assert client.list_flows()[0].flow.flow_slug == "chain"  # usable again after close()
    with client:
        client.list_flows()
        assert len(backends(conn, app)) == 1
    wait_for(lambda: not backends(conn, app), 10, "the context manager to close it")


def test_a_terminated_pooled_backend_does_not_fail_the_next_call(
    db: str, conn: psycopg.Connection, chain: Flow[Any]
) -> None:
    app, dsn = named(db)
    with Client(dsn) as client:
        client.list_flows()
        client.list_flows()
        (pid,) = backends(conn, app)
        conn.execute("select pg_terminate_backend(%s)", (pid,))
        wait_for(lambda: pid not in backends(conn, app), 10, "the backend to end")
        run = client.start_flow(chain, {"n": 1})
        assert client.get_run(run.run_id).status == "started"
        replaced = backends(conn, app)  # the pool may open a second one while replacing it
        assert 1 <= len(replaced) <= MAX_SIZE
        assert pid not in replaced


def test_threads_share_one_client_within_its_pool(
    db: str, conn: psycopg.Connection, chain: Flow[Any]
) -> None:
    app, dsn = named(db)
    most: list[int] = []
    errors: list[BaseException] = []
    started: list[uuid.UUID] = []
    with Client(dsn) as client:
        client.list_flows()
        barrier = threading.Barrier(8)

        def start_runs(thread: int) -> None:
            try:
                barrier.wait(10)
                for i in range(15):
                    started.append(client.start_flow(chain, {"t": thread, "i": i}).run_id)
                    most.append(len(backends(conn, app)))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start_runs, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert len(set(started)) == 8 * 15
    row = conn.execute("select count(*) from pgflow.runs").fetchone()
    assert row == (8 * 15,)
    assert 1 <= max(most) <= MAX_SIZE


def test_the_async_client_reuses_one_backend_and_closes_it(
    db: str, conn: psycopg.Connection, chain: Flow[Any]
) -> None:
    app, dsn = named(db)

    async def scenario() -> list[set[int]]:
        async with AsyncClient(dsn) as client:
            await client.start_flow(chain, {"n": 0})
            seen = []
            for i in range(1, 4):
                run = await client.start_flow(chain, {"n": i})
                assert (await client.get_run(run.run_id)).input == {"n": i}
                seen.append(backends(conn, app))
            pid = next(iter(seen[0]))
            conn.execute("select pg_terminate_backend(%s)", (pid,))
            wait_for(lambda: pid not in backends(conn, app), 10, "the backend to end")
            assert [f.flow.flow_slug for f in await client.list_flows()] == ["chain"]
            seen.append(backends(conn, app))
        return seen

    seen = asyncio.run(scenario())
    assert len(seen[0]) == 1
    assert seen[0] == seen[1] == seen[2]
    assert seen[3]
    assert not seen[3] & seen[0]
    wait_for(lambda: not backends(conn, app), 10, "the async client to close its pool")


def test_a_wrong_dsn_fails_with_the_connection_error(db: str) -> None:
    refused = "host=127.0.0.1 port=1 user=nobody dbname=nothing connect_timeout=5"
    client = Client(refused)
    for _ in range(2):  # the first call connects directly; the second through the pool
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="refused"):
            client.list_flows()
        assert time.monotonic() - started < POOL_WAIT + 5
    client.close()


@pytest.mark.parametrize("sizes", [(2, 1), (-1, 4), (0, 0)])
def test_bad_pool_sizes_are_refused(sizes: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="pool sizes must satisfy"):
        Client("dbname=x", min_size=sizes[0], max_size=sizes[1])
    with pytest.raises(ValueError, match="pool sizes must satisfy"):
        AsyncClient("dbname=x", min_size=sizes[0], max_size=sizes[1])
