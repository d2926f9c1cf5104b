"""The run-control commands of the ``pgweave`` CLI on live PostgreSQL: runs, cancel, pause,
unpause, retry, resume, flows, workers, ``start --idempotency-key`` and the failure details
``status`` shows. Every error is one line on stderr with what to do, and its exit code."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner, Result

from pgweave.cli import main
from tests.engine.helpers import ensure_worker, fetch, read_and_start
from tests.engine.logins import Logins
from tests.runtime.run_control import (
    completed_chain,
    failed_chain,
    make_flows,
    partly_mapped,
    waiting_run,
)


@pytest.fixture
def dsn(db: str, conn: psycopg.Connection) -> str:
    make_flows(conn)
    return db


@pytest.fixture
def logins(conn: psycopg.Connection, db: str) -> Iterator[Logins]:
    made = Logins(conn, db)
    yield made
    made.drop()


def ok(*args: str) -> Result:
    """``pgweave ARGS`` in-process; it succeeds."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def one_line(code: int, *args: str) -> str:
    """``pgweave ARGS`` fails with ``code`` and exactly one line on stderr (no traceback)."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_runs_table_json_and_filters(dsn: str, conn: psycopg.Connection) -> None:
    done = completed_chain(conn)
    failed = failed_chain(conn)
    waiting = waiting_run(conn)
    fetch(conn, "select * from pgflow.pause_run(%s)", waiting)

    table = ok("runs", "--dsn", dsn).output
    for run_id in (done, failed, waiting):
        assert str(run_id) in table
    assert table.index(str(waiting)) < table.index(str(failed)) < table.index(str(done))
    assert "3 run(s), newest first" in table
    assert "started (paused)" in table

    def listed(*options: str) -> list[str]:
        return [
            r["run_id"] for r in json.loads(ok("runs", "--json", *options, "--dsn", dsn).output)
        ]

    assert listed() == [str(waiting), str(failed), str(done)]
    assert listed("--flow", "chain") == [str(failed), str(done)]
    assert listed("--status", "failed") == [str(failed)]
    assert listed("--limit", "1") == [str(waiting)]
    assert listed("--since", "1h") == [str(waiting), str(failed), str(done)]
    assert listed("--since", "2999-01-01T00:00") == []
    [row] = json.loads(ok("runs", "--json", "--status", "completed", "--dsn", dsn).output)
    assert row["flow_slug"] == "chain"
    assert row["output"] == {"b": {"step": "b"}}

    assert "'yesterday' is neither a duration" in one_line(
        2, "runs", "--since", "yesterday", "--dsn", dsn
    )
    assert "--limit" in one_line(2, "runs", "--limit", "0", "--dsn", dsn)
    assert "'done' is not one of" in one_line(2, "runs", "--status", "done", "--dsn", dsn)


def test_cancel(dsn: str, conn: psycopg.Connection) -> None:
    run_id = waiting_run(conn)
    out = ok("cancel", str(run_id), "--reason", "not needed", "--dsn", dsn).output
    assert out == f"cancelled run {run_id} of flow 'waiting' (not needed)\n"
    assert ok("cancel", str(run_id), "--dsn", dsn).output == out  # idempotent
    status = ok("status", str(run_id), "--dsn", dsn).output
    assert "cancelled" in status
    assert "not needed" in status

    done = completed_chain(conn)
    assert one_line(1, "cancel", str(done), "--dsn", dsn) == (
        f"Run {done} cannot be cancelled: it is completed; it has ended, so there is nothing "
        "to cancel"
    )
    missing = uuid.uuid4()
    assert one_line(1, "cancel", str(missing), "--dsn", dsn) == (
        f"Run not found: {missing}; check the run id and --dsn (`pgweave runs` lists runs)"
    )
    assert "'nope' is not a valid UUID" in one_line(2, "cancel", "nope", "--dsn", dsn)


def test_pause_and_unpause(dsn: str, conn: psycopg.Connection, logins: Logins) -> None:
    run_id = waiting_run(conn)
    assert ok("pause", str(run_id), "--dsn", dsn).output == (
        f"paused run {run_id} of flow 'waiting'\n"
    )
    assert read_and_start(conn, "waiting") == []
    assert "paused" in ok("status", str(run_id), "--dsn", dsn).output
    assert ok("unpause", str(run_id), "--dsn", dsn).output == (
        f"unpaused run {run_id} of flow 'waiting'\n"
    )
    assert ok("pause", "--flow", "waiting", "--dsn", dsn).output == "paused flow 'waiting'\n"
    assert "paused" in ok("flows", "--dsn", dsn).output
    assert read_and_start(conn, "waiting") == []
    assert ok("unpause", "--flow", "waiting", "--dsn", dsn).output == "unpaused flow 'waiting'\n"
    [task] = read_and_start(conn, "waiting")
    assert str(task["run_id"]) == str(run_id)

    for verb in ("pause", "unpause"):
        assert one_line(2, verb, "--dsn", dsn).startswith(
            f"error: name a run or --flow FLOW to {verb} (one of them) (see `"
        )
        both = one_line(2, verb, str(run_id), "--flow", "waiting", "--dsn", dsn)
        assert f"name a run or --flow FLOW to {verb}" in both
        assert one_line(1, verb, "--flow", "nope", "--dsn", dsn) == (
            "Flow not found: nope; `pgweave flows` lists the flows of this database"
        )
    done = completed_chain(conn)
    assert one_line(1, "pause", str(done), "--dsn", dsn) == (
        f"Run {done} cannot be paused: it is completed; only a started run can be paused; "
        "this one has ended"
    )
    as_client = logins.dsn("pgflow_client")
    assert ok("pause", str(run_id), "--dsn", as_client).output.startswith("paused run")
    assert one_line(1, "pause", "--flow", "waiting", "--dsn", as_client) == (
        "permission denied for function pause_flow: connect as a login with the pgflow role "
        "this needs (pausing a flow and listing workers need pgflow_admin; see the README's "
        "Roles)"
    )


def test_retry_and_resume(dsn: str, conn: psycopg.Connection) -> None:
    done = completed_chain(conn)
    failed = failed_chain(conn)
    out = ok("retry", str(failed), "--dsn", dsn).output
    assert out.startswith("started run ")
    assert f"retry of run {failed}: 0 of 2 steps" in out
    retry_id = out.split()[2]
    assert json.loads(ok("status", retry_id, "--json", "--dsn", dsn).output)["run"][
        "restart_of_run_id"
    ] == str(failed)

    mapped = partly_mapped(conn)
    out = ok("resume", str(mapped), "--dsn", dsn).output
    assert f"resume of run {mapped}: 0 of 1 steps already done" in out
    resumed = out.split()[2]
    status = ok("status", resumed, "--dsn", dsn).output
    assert "2/3" in status
    assert "restart of" in status

    assert one_line(1, "retry", retry_id, "--dsn", dsn) == (
        f"Run {retry_id} cannot be retried or resumed: it is started (only failed or cancelled "
        f"runs can); cancel it first (`pgweave cancel {retry_id}`) or wait for it to fail"
    )
    assert one_line(1, "resume", str(done), "--dsn", dsn) == (
        f"Run {done} cannot be retried or resumed: it is completed (only failed or cancelled "
        "runs can); a completed run has nothing to redo: start a new one with `pgweave start`"
    )
    missing = uuid.uuid4()
    assert one_line(1, "resume", str(missing), "--dsn", dsn).startswith(
        f"Run not found: {missing}; check the run id"
    )


def test_start_with_an_idempotency_key(dsn: str) -> None:
    args = ("start", "waiting", "--input", '{"order": 7}', "--dsn", dsn)
    first = ok(*args, "--idempotency-key", "order-7").output
    assert "for idempotency key 'order-7' (started)" in first
    assert ok(*args, "--idempotency-key", "order-7").output == first
    run_id = first.split()[1]
    listed = json.loads(ok("runs", "--json", "--flow", "waiting", "--dsn", dsn).output)
    assert [(r["run_id"], r["idempotency_key"]) for r in listed] == [(run_id, "order-7")]
    chosen = str(uuid.uuid4())
    by_id = ("start", "waiting", "--input", "{}", "--run-id", chosen, "--dsn", dsn)
    assert ok(*by_id).output == f"run {chosen} of flow 'waiting' (started)\n"
    assert ok(*by_id).output == f"run {chosen} of flow 'waiting' (started)\n"
    assert len(json.loads(ok("runs", "--json", "--dsn", dsn).output)) == 2
    conflict = ("start", "waiting", "--input", '{"order": 8}', "--idempotency-key", "order-7")
    assert one_line(1, *conflict, "--dsn", dsn) == (
        f"cannot start 'waiting': Run {run_id} (flow waiting) already exists for this "
        "idempotency key or run id with another flow, input, key or run id; use a new "
        "--idempotency-key, or repeat the first start with the same flow and input"
    )


def test_start_errors_say_what_to_do(dsn: str) -> None:
    unknown = one_line(1, "start", "nope", "--idempotency-key", "k", "--dsn", dsn)
    assert unknown.startswith("unknown flow 'nope': this database has no such flow")
    assert one_line(1, "start", "spread", "--input", "{}", "--dsn", dsn) == (
        "cannot start 'spread': Flow spread has root map steps but input is not an array "
        "(got object); pass a JSON array as --input"
    )
    assert one_line(1, "start", "spread", "--idempotency-key", "k", "--dsn", dsn) == (
        "cannot start 'spread': Flow spread has root map steps but input is not an array "
        "(got null); pass a JSON array as --input"
    )


def test_status_shows_failure_details(dsn: str, conn: psycopg.Connection) -> None:
    run_id = failed_chain(conn)
    out = ok("status", str(run_id), "--dsn", dsn).output
    assert "ValueError: bad input 42" in out  # the tasks table: type and message
    assert "traceback of a[0] (ValueError):" in out
    assert "… (10 earlier lines)" in out  # 22 lines, the last 12 shown
    assert "line 10, in level_10" in out
    assert "line 9," not in out
    tail = out[out.index("traceback of a[0]") :]
    assert tail.rstrip().endswith("ValueError: bad input 42")


def test_retry_and_resume_wait(dsn: str, conn: psycopg.Connection) -> None:
    failed = failed_chain(conn)
    assert "--timeout only applies with --wait" in one_line(
        2, "retry", str(failed), "--timeout", "5", "--dsn", dsn
    )
    assert json.loads(ok("runs", "--json", "--dsn", dsn).output)[0]["run_id"] == str(failed)
    result = CliRunner().invoke(
        main, ["resume", str(failed), "--wait", "--timeout", "1", "--dsn", dsn]
    )
    assert result.exit_code == 2, result.output  # nobody works on the new run
    words = " ".join(result.output.split())  # rich wraps at 80 columns
    assert "did not reach the awaited state within 1.0 s (it is started)" in words


def test_unmapped_engine_error_names_the_command(dsn: str, conn: psycopg.Connection) -> None:
    failed = failed_chain(conn)
    conn.execute("select pgmq.drop_queue('chain')")
    assert one_line(1, "retry", str(failed), "--dsn", dsn).endswith(
        ' retry failed: relation "pgmq.q_chain" does not exist'
    )


def test_flows_and_workers(dsn: str, conn: psycopg.Connection, logins: Logins) -> None:
    waiting_run(conn)
    table = ok("flows", "--dsn", dsn).output
    for slug in ("chain", "spread", "waiting"):
        assert slug in table
    listed = json.loads(ok("flows", "--json", "--dsn", dsn).output)
    assert [(f["flow_slug"], f["step_count"], f["active_runs"]) for f in listed] == [
        ("chain", 2, 0),
        ("spread", 1, 0),
        ("waiting", 1, 1),
    ]

    alive = ensure_worker(conn, "waiting", uuid.uuid4())
    stopped = ensure_worker(conn, "chain", uuid.uuid4())
    fetch(conn, "select * from pgflow.mark_worker_stopped(%s)", stopped)
    table = ok("workers", "--dsn", dsn).output
    assert str(alive)[:8] in table
    assert "alive" in table
    assert str(stopped)[:8] not in table
    everyone = ok("workers", "--all", "--dsn", dsn).output
    assert str(stopped)[:8] in everyone
    assert "stopped" in everyone
    rows = json.loads(ok("workers", "--json", "--flow", "waiting", "--dsn", dsn).output)
    assert [r["worker_id"] for r in rows] == [str(alive)]
    assert 0 <= rows[0]["heartbeat_age_seconds"] < 60
    as_client = logins.dsn("pgflow_client")
    assert ok("flows", "--dsn", as_client).output == table_of_flows(dsn)
    assert one_line(1, "workers", "--dsn", as_client).startswith(
        "permission denied for table workers: connect as a login with the pgflow role"
    )


def table_of_flows(dsn: str) -> str:
    """``pgweave flows`` as the owner."""
    return ok("flows", "--dsn", dsn).output
