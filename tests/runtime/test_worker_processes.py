"""Real worker processes (``pgweave worker``) against live PostgreSQL."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgweave.client import Client
from pgweave.compile import flow_shape
from tests.runtime.flows import shape_v2
from tests.runtime.processes import Spawn, log_events, registered, tasks, wait_for


def test_single_and_map_flows_complete_in_one_process(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    worker = spawn("arithmetic", "squares", "spelling", args=("--replicas", "2"))
    wait_for(registered(conn, 6), 30, "six workers (3 flows x 2 replicas) to register")
    client = Client(db)
    runs = [
        client.start_flow("arithmetic", {"a": 6, "b": 7}),
        client.start_flow("squares", [1, 2, 3, 4]),
        client.start_flow("spelling", "abc"),
        client.start_flow("squares", []),
    ]
    finals = [run.wait(timeout=60) for run in runs]
    assert [f.status for f in finals] == ["completed"] * 4
    assert finals[0].output == {"report": {"sum": 13, "product": 42, "input": {"a": 6, "b": 7}}}
    assert finals[1].output == {"total": 30}
    assert finals[1].step("squares").output == [1, 4, 9, 16]
    assert finals[2].output == {"upper": ["A", "B", "C"]}
    assert finals[3].output == {"total": 0}
    # the flows were compiled by the workers with the DSL's options
    timeouts = conn.execute(
        "select flow_slug, opt_timeout from pgflow.flows order by flow_slug"
    ).fetchall()
    assert timeouts == [("arithmetic", 5), ("spelling", 5), ("squares", 5)]
    assert {e["event"] for e in log_events(worker)} >= {"worker.started", "task.completed"}


def test_failing_handler_is_retried_with_backoff_then_fails_the_run(
    db: str, conn: psycopg.Connection, spawn: Spawn, markers: Path
) -> None:
    spawn("failing")
    wait_for(registered(conn), 30, "the worker to register")
    final = Client(db).start_flow("failing", {"x": 1}).wait(timeout=60)
    assert final.status == "failed"
    assert final.step("explode").status == "failed"
    assert final.step("explode").error_message == "boom in explode (task 0)"
    assert final.step("after").status == "created"
    assert tasks(conn, final.run_id) == [
        ("explode", 0, "failed", 2, "boom in explode (task 0)"),
    ]
    # two attempts, the second one no earlier than the engine's backoff (2 x base_delay 1 s)
    first, second = (
        float((markers / f"explode-0-{n}.start").read_text().split()[1]) for n in (1, 2)
    )
    assert second - first >= 1.9
    assert not (markers / "explode-0-3.start").exists()


def test_failing_handler_with_when_exhausted_skip_skips_and_the_run_completes(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    spawn("skipping")
    wait_for(registered(conn), 30, "the worker to register")
    final = Client(db).start_flow("skipping", None).wait(timeout=60)
    assert final.status == "completed"
    explode = final.step("explode")
    assert (explode.status, explode.skip_reason) == ("skipped", "handler_failed")
    assert explode.error_message == "boom in explode (task 0)"
    assert final.output == {"after": {"saw": []}}
    assert tasks(conn, final.run_id)[1][2:4] == ("failed", 2)


def test_sigterm_finishes_in_flight_tasks_and_starts_no_new_ones(
    db: str, conn: psycopg.Connection, spawn: Spawn, markers: Path
) -> None:
    worker = spawn("slow_map", args=("--max-concurrent", "2"))
    wait_for(registered(conn), 30, "the worker to register")
    run = Client(db).start_flow("slow_map", [1.5] * 6)
    wait_for(lambda: len(list(markers.glob("*.start"))) == 2, 30, "two tasks to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    assert sorted(p.name for p in markers.glob("*.end")) == sorted(
        p.name.replace(".start", ".end") for p in markers.glob("*.start")
    )
    statuses = [row[2:4] for row in tasks(conn, run.run_id)]
    assert sorted(statuses) == [("completed", 1)] * 2 + [("queued", 0)] * 4
    stopped = conn.execute("select stopped_at is not null from pgflow.workers").fetchall()
    assert stopped == [(True,)]
    names = [e["event"] for e in log_events(worker)]
    assert names.index("worker.stopping") < names.index("worker.draining")
    assert names[-1] == "worker.stopped"
    # a new worker picks up the remaining tasks and the run completes
    spawn("slow_map", args=("--max-concurrent", "4"))
    final = run.wait(timeout=60)
    assert final.status == "completed"
    assert final.output is not None
    assert [o["slept"] for o in final.output["sleep"]] == [1.5] * 6


def test_tasks_still_running_at_the_shutdown_deadline_are_abandoned(
    db: str, conn: psycopg.Connection, spawn: Spawn, markers: Path
) -> None:
    worker = spawn("patient_map", args=("--shutdown-timeout", "0.5"))
    wait_for(registered(conn), 30, "the worker to register")
    run = Client(db).start_flow("patient_map", [30])
    wait_for(lambda: (markers / "sleep-0-1.start").exists(), 30, "the task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 3  # exits without waiting for the handler's thread
    names = [e["event"] for e in log_events(worker)]
    assert "worker.abandoned_tasks" in names
    assert names[-1] == "worker.exit_with_running_handlers"
    # the task stays started: requeue_stalled_tasks will hand it to another worker later
    assert [row[2:4] for row in tasks(conn, run.run_id)] == [("started", 1)]
    assert conn.execute("select stopped_at is not null from pgflow.workers").fetchone() == (True,)


@pytest.mark.slow
def test_sigkill_mid_task_another_worker_completes_it_once(
    db: str, conn: psycopg.Connection, spawn: Spawn, markers: Path
) -> None:
    victim = spawn("slow_map")
    wait_for(registered(conn), 30, "the first worker to register")
    run = Client(db).start_flow("slow_map", [2])  # within the step's 3 s timeout
    wait_for(lambda: (markers / "sleep-0-1.start").exists(), 30, "the task to start")
    victim.signal(signal.SIGKILL)
    victim.wait(30)
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute(f'listen "pgflow:run:{run.run_id}"')
        # the task stays started until requeue_stalled_tasks (timeout 3 s + 30 s grace)
        rescuer = spawn("slow_map", args=("--requeue-interval", "1"))
        final = run.wait(timeout=90)
        completions = [
            n.payload for n in listener.notifies(timeout=0.5) if '"run:completed"' in n.payload
        ]
    assert final.status == "completed"
    assert final.output == {"sleep": [{"slept": 2, "pid": rescuer.pid}]}
    row = conn.execute(
        "select status, attempts_count, requeued_count, last_worker_id is not null"
        " from pgflow.step_tasks where run_id = %s",
        (run.run_id,),
    ).fetchone()
    assert row == ("completed", 2, 1, True)
    assert len(completions) == 1
    # started by both workers, finished only by the rescuer
    pids = {p.name: p.read_text().split()[0] for p in markers.iterdir()}
    assert pids == {
        "sleep-0-1.start": str(victim.pid),
        "sleep-0-2.start": str(rescuer.pid),
        "sleep-0-1.end": str(rescuer.pid),
    }


def test_shape_mismatch_is_refused_unless_data_loss_is_allowed(
    db: str, conn: psycopg.Connection, spawn: Spawn
) -> None:
    conn.execute("select pgflow.create_flow('shaped')")
    conn.execute("select pgflow.add_step('shaped', 'first')")
    conn.execute("select pgflow.start_flow('shaped', %s)", (Jsonb({}),))
    refused = spawn("squares", "shape_v2")
    assert refused.wait(60) == 1
    # the worker of the other flow had registered; it is recorded as stopped
    workers = conn.execute("select queue_name, stopped_at is not null from pgflow.workers")
    assert workers.fetchall() == [("squares", True)]
    logs = refused.logs()
    assert "flow 'shaped' in the database does not match" in logs
    assert "Step count differs: 2 vs 1" in logs
    assert "--allow-data-loss" in logs
    assert conn.execute("select count(*) from pgflow.runs").fetchone() == (1,)

    allowed = spawn("shape_v2", args=("--allow-data-loss",))
    wait_for(registered(conn), 30, "the worker to register")
    shape = conn.execute("select pgflow._get_flow_shape('shaped')").fetchone()
    assert shape == (flow_shape(shape_v2),)
    assert conn.execute("select count(*) from pgflow.runs").fetchone() == (0,)
    allowed.signal(signal.SIGTERM)
    assert allowed.wait(60) == 0
    assert "flow.recompiled" in allowed.logs()


def test_deprecated_worker_stops_by_itself(db: str, conn: psycopg.Connection, spawn: Spawn) -> None:
    worker = spawn("squares", args=("--heartbeat-interval", "0.2"))
    wait_for(registered(conn), 30, "the worker to register")
    conn.execute("update pgflow.workers set deprecated_at = now()")
    assert worker.wait(60) == 0
    events = log_events(worker)
    assert any(e["event"] == "worker.stopping" and e["reason"] == "deprecated" for e in events)
    stopped = conn.execute("select stopped_at is not null from pgflow.workers").fetchone()
    assert stopped == (True,)
