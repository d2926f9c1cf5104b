"""The Python worker and client with least-privilege login roles: a pgflow_worker login
serves flows end to end without table writes or queue access, a pgflow_client login starts
and follows runs, and a worker allowed data loss is refused a recompile unless its login is
an admin."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from pgweave.cli import main
from pgweave.client import Client
from pgweave.config import WorkerConfig
from pgweave.worker import WorkerThread
from pgweave_client.errors import DataLossNotAllowedError
from tests.engine.logins import Logins
from tests.runtime.flows import arithmetic, squares

CONFIG = WorkerConfig(max_poll_seconds=1, poll_interval_ms=20, requeue_interval=0)


@pytest.fixture
def logins(conn: psycopg.Connection, db: str) -> Iterator[Logins]:
    made = Logins(conn, db)
    yield made
    made.drop()


def test_worker_and_client_logins_run_flows_end_to_end(logins: Logins) -> None:
    # the worker compiles its flows itself (they are missing), then serves them
    with WorkerThread([arithmetic, squares], logins.dsn("pgflow_worker"), CONFIG) as thread:
        assert all(w.batch_protocol for w in thread.workers)
        client = Client(logins.dsn("pgflow_client"))
        first = client.start_flow(arithmetic, {"a": 3, "b": 4})
        second = client.start_flow(squares, [2, 3])
        assert first.wait(timeout=60).output == {
            "report": {"sum": 7, "product": 12, "input": {"a": 3, "b": 4}}
        }
        assert second.wait(timeout=60).output == {"total": 13}


def test_a_worker_login_allowed_data_loss_is_refused_the_recompile(
    logins: Logins, conn: psycopg.Connection
) -> None:
    conn.execute("select pgflow.create_flow('squares')")
    conn.execute("select pgflow.add_step('squares', 'other')")
    conn.execute("select pgflow.start_flow('squares', %s)", (Jsonb({}),))
    allowed = WorkerConfig(max_poll_seconds=1, requeue_interval=0, allow_data_loss=True)

    with pytest.raises(DataLossNotAllowedError, match=r"^Recompiling flow squares deletes"):
        WorkerThread([squares], logins.dsn("pgflow_worker"), allowed).start()
    assert conn.execute("select count(*) from pgflow.runs").fetchone() == (1,)

    # a login that is also an admin may
    admin_worker = logins.dsn("pgflow_worker")
    conn.execute(f"grant pgflow_admin to {logins.names[-1]}")
    with WorkerThread([squares], admin_worker, allowed):
        assert conn.execute("select count(*) from pgflow.runs").fetchone() == (0,)


def test_the_worker_command_reports_the_refused_recompile(
    logins: Logins, conn: psycopg.Connection
) -> None:
    conn.execute("select pgflow.create_flow('squares')")
    conn.execute("select pgflow.add_step('squares', 'other')")
    args = ["worker", "tests.runtime.flows:squares", "--allow-data-loss"]

    result = CliRunner().invoke(main, [*args, "--dsn", logins.dsn("pgflow_worker")])

    assert result.exit_code == 1
    assert "Recompiling flow squares deletes its runs" in result.output
    assert conn.execute("select count(*) from pgflow.steps").fetchone() == (1,)
