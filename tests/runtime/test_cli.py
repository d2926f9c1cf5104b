"""The flow commands of the ``pgweave`` CLI: install, compile, start, status, worker errors."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from pgweave.cli import main
from pgweave.compile import compile_statements, flow_shape
from pgweave.config import WorkerConfig
from pgweave.worker import WorkerThread
from tests.runtime.flows import arithmetic, failing

FAST = WorkerConfig(max_poll_seconds=1, requeue_interval=0)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_install_into_an_empty_database(runner: CliRunner, empty_db: str) -> None:
    result = runner.invoke(main, ["install", "--dsn", empty_db])
    assert result.exit_code == 0, result.output
    assert "applied: 0001_initial.sql" in result.output
    again = runner.invoke(main, ["install", "--dsn", empty_db])
    assert "applied: nothing (up to date)" in again.output
    with psycopg.connect(empty_db) as conn:
        row = conn.execute("select count(*) from pgflow.flows").fetchone()
    assert row == (0,)


def test_compile_to_stdout_and_to_a_file(
    runner: CliRunner, tmp_path: Path, conn: psycopg.Connection
) -> None:
    result = runner.invoke(main, ["compile", "tests.runtime.flows:arithmetic", "--stdout"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2:] == compile_statements(arithmetic)
    written = runner.invoke(
        main, ["compile", "tests.runtime.flows:arithmetic", "--out", str(tmp_path)]
    )
    assert written.exit_code == 0, written.output
    (path,) = tmp_path.glob("*_create_arithmetic_flow.sql")
    conn.execute(path.read_bytes())
    shape = conn.execute("select pgflow._get_flow_shape('arithmetic')").fetchone()
    assert shape == (flow_shape(arithmetic),)
    second = runner.invoke(
        main, ["compile", "tests.runtime.flows:arithmetic", "--out", str(tmp_path)]
    )
    assert "already compiles 'arithmetic'" in second.output


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("tests.runtime.flows:nope", "has no attribute 'nope'"),
        ("tests.runtime.flows:Numbers", "not a pgweave Flow"),
        ("tests.runtime.missing:flow", "not found"),
        ("tests.runtime.flows", "name the flow as MODULE:FLOW"),
    ],
)
def test_bad_flow_references(runner: CliRunner, ref: str, message: str) -> None:
    result = runner.invoke(main, ["compile", ref, "--stdout"])
    assert result.exit_code == 2
    assert message in result.output


def test_start_wait_and_status(runner: CliRunner, db: str) -> None:
    with WorkerThread([arithmetic, failing], db, FAST):
        result = runner.invoke(
            main,
            ["start", "arithmetic", "--input", '{"a": 2, "b": 5}', "--wait", "--dsn", db],
        )
        assert result.exit_code == 0, result.output
        assert "run:completed" in result.output
        assert '"product": 10' in result.output
        run_id = result.output.split("started run ")[1].split()[0]

        status = runner.invoke(main, ["status", run_id, "--dsn", db])
        assert status.exit_code == 0, status.output
        for text in ("arithmetic", "completed", "add", "multiply", "report", "tasks"):
            assert text in status.output
        as_json = runner.invoke(main, ["status", run_id, "--json", "--dsn", db])
        assert json.loads(as_json.output)["run"]["output"]["report"]["sum"] == 7

        failed = runner.invoke(
            main, ["start", "tests.runtime.flows:failing", "--wait", "--dsn", db]
        )
        assert failed.exit_code == 1, failed.output
        assert "boom in explode" in failed.output


def test_start_errors(runner: CliRunner, db: str) -> None:
    bad_json = runner.invoke(main, ["start", "arithmetic", "--input", "{", "--dsn", db])
    assert bad_json.exit_code == 2
    assert "not JSON" in bad_json.output
    unknown = runner.invoke(main, ["start", "nope", "--dsn", db])
    assert unknown.exit_code == 1
    assert "unknown flow 'nope'" in unknown.output
    missing = runner.invoke(main, ["status", "00000000-0000-0000-0000-000000000000", "--dsn", db])
    assert missing.exit_code == 1
    assert "no run" in missing.output


def test_worker_option_errors(runner: CliRunner, db: str) -> None:
    result = runner.invoke(
        main, ["worker", "tests.runtime.flows:squares", "--max-concurrent", "0", "--dsn", db]
    )
    assert result.exit_code == 2
    assert "max_concurrent must be an integer >= 1" in result.output
