"""Worker wake-ups, event reconnects, metrics and traces, and RetryAfter's validation."""

from __future__ import annotations

import math
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import pgweave
from pgweave.cli import main
from pgweave.client import Client
from pgweave.config import WorkerConfig
from pgweave.dsl import RETRY_DELAY_CAP
from pgweave.worker import WorkerThread
from tests.runtime.flows import arithmetic
from tests.runtime.processes import Spawn, log_events, registered, wait_for
from tests.spans import recording_spans

LISTENER = (
    "select pid from pg_stat_activity"
    " where datname = current_database() and query = 'listen \"pgweave:events\"'"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _first_task_delay(conn: psycopg.Connection, run_id: object) -> float:
    row = conn.execute(
        "select extract(epoch from min(t.started_at) - r.started_at)"
        " from pgflow.step_tasks t join pgflow.runs r using (run_id)"
        " where r.run_id = %s group by r.started_at",
        (run_id,),
    ).fetchone()
    assert row is not None
    return float(row[0])


def test_a_new_run_wakes_an_idle_worker_in_its_long_poll(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    # the queue is checked only every 10 s: without the wake-up the first task would wait
    worker = spawn("arithmetic", args=("--max-poll-seconds", "30", "--poll-interval-ms", "10000"))
    wait_for(registered(conn), 30, "the worker to register")
    wait_for(lambda: conn.execute(LISTENER).fetchone() is not None, 30, "the worker to LISTEN")
    time.sleep(1)  # the worker is now inside its long poll
    client = Client(db)
    for n in range(3):
        run = client.start_flow("arithmetic", {"a": n, "b": 1})
        assert run.wait(timeout=30).status == "completed"
        assert _first_task_delay(conn, run.run_id) < 5.0
    assert "worker.events_listening" in {e["event"] for e in log_events(worker)}


def test_the_worker_listens_again_after_losing_its_connection_and_still_cancels(
    db: str, conn: psycopg.Connection, spawn: Spawn, markers: Path
) -> None:
    worker = spawn("cancellable")
    wait_for(registered(conn), 30, "the worker to register")
    wait_for(lambda: conn.execute(LISTENER).fetchone() is not None, 30, "the worker to LISTEN")
    row = conn.execute(LISTENER).fetchone()
    assert row is not None
    conn.execute("select pg_terminate_backend(%s)", (row[0],))
    wait_for(
        lambda: (again := conn.execute(LISTENER).fetchone()) is not None and again[0] != row[0],
        30,
        "a new LISTEN connection",
    )
    run = Client(db).start_flow("cancellable", {"seconds": 30})
    started = markers / f"{run.run_id}-async_wait-1.start"
    wait_for(started.exists, 30, "the handler to start")
    conn.execute("select pgflow.cancel_run(%s)", (run.run_id,))
    wait_for((markers / f"{run.run_id}-async_wait-1.stopped").exists, 10, "the handler to stop")
    events = [e["event"] for e in log_events(worker)]
    assert "worker.events_lost" in events
    assert events.count("worker.events_listening") >= 2


def test_worker_metrics_port_serves_task_metrics(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    port = _free_port()
    spawn("arithmetic", args=("--metrics-port", str(port)))
    wait_for(registered(conn), 30, "the worker to register")
    assert Client(db).start_flow("arithmetic", {"a": 1, "b": 2}).wait(timeout=30).status == (
        "completed"
    )
    url = f"http://127.0.0.1:{port}/metrics"
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    for step in ("add", "multiply", "report"):
        labels = f'flow="arithmetic",outcome="completed",step="{step}"'
        assert f"pgweave_worker_tasks_total{{{labels}}} 1.0" in page
        assert f"pgweave_worker_task_duration_seconds_count{{{labels}}} 1.0" in page


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans recorded by the SDK."""
    yield from recording_spans()


def test_start_and_every_task_of_the_run_share_one_trace(
    db: str, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    with WorkerThread([arithmetic], db, WorkerConfig(requeue_interval=0)):
        result = CliRunner().invoke(
            main, ["start", "arithmetic", "--dsn", db, "--input", '{"a": 2, "b": 5}', "--wait"]
        )
        assert result.exit_code == 0, result.output
    start = next(s for s in spans.get_finished_spans() if s.name == "start arithmetic")
    assert start.context is not None
    run_id = start.attributes["pgweave.run_id"] if start.attributes else None
    tasks = [s for s in spans.get_finished_spans() if s.name.startswith("arithmetic.")]
    assert sorted(s.name for s in tasks) == [
        "arithmetic.add",
        "arithmetic.multiply",
        "arithmetic.report",
    ]
    for span in tasks:
        assert span.context is not None
        assert span.attributes is not None
        assert span.context.trace_id == start.context.trace_id
        assert span.attributes["pgweave.run_id"] == run_id
        assert span.attributes["pgweave.flow_slug"] == "arithmetic"
        assert span.attributes["pgweave.task_index"] == 0
    assert f"{start.context.trace_id:032x}" == str(run_id).replace("-", "")


@pytest.mark.parametrize(
    "seconds", [-1, -0.001, RETRY_DELAY_CAP + 1, math.inf, math.nan, "5", True, None]
)
def test_retry_after_refuses_delays_the_engine_would_refuse(seconds: object) -> None:
    with pytest.raises(ValueError, match="RetryAfter"):
        pgweave.RetryAfter(seconds)  # type: ignore[arg-type]


def test_retry_after_accepts_delays_from_zero_to_the_cap() -> None:
    assert pgweave.RetryAfter(0).seconds == 0.0
    assert pgweave.RetryAfter(RETRY_DELAY_CAP).seconds == float(RETRY_DELAY_CAP)
    assert str(pgweave.RetryAfter(1.5)) == "retry after 1.5 s"
