"""Client.start_flows and AsyncClient.start_flows: bulk starts in one call, with a real worker."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from pgweave.aio import AsyncClient
from pgweave.client import Client
from pgweave.compile import compile_statements
from pgweave.config import WorkerConfig
from pgweave.worker import WorkerThread
from pgweave_client import errors
from tests.runtime.flows import squares


def test_start_flows_returns_handles_in_input_order_that_complete(db: str) -> None:
    client = Client(db)
    inputs = [[i, i + 1] for i in range(20)]
    with WorkerThread([squares], db, WorkerConfig(max_poll_seconds=1, requeue_interval=0)):
        runs = client.start_flows(squares, inputs)
        assert [r.state.input for r in runs] == inputs
        assert {r.status for r in runs} == {"started"}
        assert runs[0].state.steps == {}
        finals = [r.wait(timeout=60) for r in runs]
    assert [f.output for f in finals] == [{"total": i * i + (i + 1) ** 2} for i in range(20)]
    assert set(runs[3].refresh().steps) == set(client.get_run(runs[3].run_id).steps)


def test_a_bad_input_starts_none_of_the_runs(db: str, conn: psycopg.Connection) -> None:
    client = Client(db)
    for statement in compile_statements(squares):
        conn.execute(statement.encode())
    with pytest.raises(errors.RootMapInputNotArrayError):
        client.start_flows("squares", [[1], {"not": "an array"}, [2]])
    row = conn.execute("select count(*) from pgflow.runs").fetchone()
    assert row == (0,)
    with pytest.raises(errors.FlowNotFoundError):
        client.start_flows("nowhere", [{}])


def test_async_start_flows(db: str) -> None:
    async def scenario() -> list[object]:
        async with AsyncClient(db) as client:
            runs = await client.start_flows("squares", [[1], [2, 2], []])
            assert [r.state.input for r in runs] == [[1], [2, 2], []]
            return [(await r.wait(timeout=60)).output for r in runs]

    with WorkerThread([squares], db, WorkerConfig(max_poll_seconds=1, requeue_interval=0)):
        outputs = asyncio.run(scenario())
    assert outputs == [{"total": 1}, {"total": 8}, {"total": 0}]
