"""PostgreSQL failover: a primary with a synchronous streaming standby, worker processes
and clients on a multi-host DSN (``target_session_attrs=read-write``), the primary
crashed mid-load (``pg_ctl stop -m immediate``) and the standby promoted.

The workers and clients are never restarted: they reconnect by themselves, every run
completes, no completion committed before the crash is lost, no task's handler runs more
often than it was started, and a listener subscribed before the crash receives the events
of a run that can only finish after the promotion (its step waits for a gate opened then).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgweave.client import Client
from pgweave.embedded import EmbeddedPostgres
from pgweave.runs import RunEvent, RunState
from tests.chaos.flows import EFFECTS_DSN, GATE_FILE
from tests.chaos.harness import (
    Fleet,
    Starter,
    check_invariants,
    cluster,
    engine_database,
    listening,
    plan,
    wait_all,
    wait_registered,
)
from tests.runtime.processes import wait_for

FLOWS = ("chaos_chain", "chaos_map", "chaos_gate")
PROCESSES = 2
OUTAGE_SECONDS = 1.0
"""How long the crashed primary stays alone before the standby is promoted."""


@pytest.fixture
def primary() -> Iterator[EmbeddedPostgres]:
    with cluster() as own:
        yield own


@pytest.fixture
def standby(primary: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    """A synchronous standby of ``primary`` (created after the engine database)."""
    engine_database(primary)
    replica = primary.start_standby("standby")
    try:
        with psycopg.connect(primary.dsn(), autocommit=True) as conn:
            conn.execute("alter system set synchronous_standby_names = 'standby'")
            conn.execute("select pg_reload_conf()")

            def synchronous() -> bool:
                row = conn.execute(
                    "select sync_state from pg_stat_replication where application_name = 'standby'"
                ).fetchone()
                return row == ("sync",)

            wait_for(synchronous, 30, "the standby to replicate synchronously")
        yield replica
    finally:
        replica.stop()


class Follower(threading.Thread):
    """Waits for one run with ``Client.wait`` (LISTEN), keeping the events it received."""

    def __init__(self, client: Client, run_id: uuid.UUID) -> None:
        super().__init__(name="follower", daemon=True)
        self.client = client
        self.run_id = run_id
        self.events: list[RunEvent] = []
        self.final: RunState | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.final = self.client.wait(
                self.run_id, timeout=80, on_event=lambda event, _state: self.events.append(event)
            )
        except BaseException as exc:  # reported by the test
            self.error = exc


def completed_tasks(conn: psycopg.Connection) -> set[tuple[object, ...]]:
    """(run_id, step_slug, task_index, completed_at, output) of every completed task."""
    rows = conn.execute(
        "select run_id, step_slug, task_index, completed_at, output::text"
        " from pgflow.step_tasks where status = 'completed'"
    ).fetchall()
    return {tuple(row) for row in rows}


def test_workers_and_clients_ride_through_a_failover_to_the_standby(
    primary: EmbeddedPostgres,
    standby: EmbeddedPostgres,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn = (
        f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} user=postgres"
        " dbname=chaos target_session_attrs=read-write connect_timeout=5"
    )
    gate = tmp_path / "gate"
    monkeypatch.setenv(EFFECTS_DSN, dsn)
    monkeypatch.setenv(GATE_FILE, str(gate))
    rng = random.Random(17)
    client = Client(dsn)
    fleet = Fleet(dsn, FLOWS, tmp_path)
    try:
        fleet.start(PROCESSES)
        wait_registered(dsn, PROCESSES * len(FLOWS))
        with psycopg.connect(primary.dsn("chaos"), autocommit=True) as before:
            workers = {row[0] for row in before.execute("select worker_id from pgflow.workers")}
            gated = client.start_flow("chaos_gate", None)
            follower = Follower(client, gated.run_id)
            follower.start()
            wait_for(lambda: listening(before, gated.run_id), 30, "the follower to LISTEN")
            starter = Starter(dsn, plan(rng, singles=0, chains=30, maps=6), interval=0.1)
            starter.start()
            wait_for(lambda: len(completed_tasks(before)) >= 25, 60, "25 tasks to complete")
            committed = completed_tasks(before)  # taken on the primary just before the crash
            primary.crash()
        time.sleep(OUTAGE_SECONDS)
        standby.promote()
        with psycopg.connect(standby.dsn("chaos"), autocommit=True) as after:
            promoted = after.execute("select now()").fetchone()
            assert promoted is not None
            promoted_at = promoted[0]
            gate.touch()
            run_ids = starter.finish(timeout=60)
            wait_all(dsn, [*run_ids, gated.run_id], time.monotonic() + 60)
            follower.join(30)
            assert follower.error is None, follower.error

            figures = check_invariants(after, FLOWS)
            assert committed <= completed_tasks(after), "a committed completion was lost"
            repeated = after.execute(
                "select run_id, step_slug, task_index from chaos_effects"
                " group by 1, 2, 3 having count(*) > 1"
            ).fetchall()
            done_before = {task[:3] for task in committed}
            assert not done_before & set(repeated), "a task completed before the crash ran again"
            # the same worker processes (never restarted) carried on after the promotion
            assert all(p.process.poll() is None for p in fleet.processes)
            assert all("worker.poll_failed" in p.logs() for p in fleet.processes)
            late = after.execute(
                "select distinct last_worker_id from pgflow.step_tasks where completed_at > %s",
                (promoted_at,),
            ).fetchall()
            assert late, "no task completed after the promotion"
            assert {row[0] for row in late} <= workers
            in_flight = after.execute(
                "select count(*) from pgflow.step_tasks where started_at < %s"
                " and completed_at > %s",
                (promoted_at, promoted_at),
            ).fetchone()
            assert in_flight is not None
            assert in_flight[0] > 0, "the crash did not hit tasks in flight"
            beating = after.execute(
                "select count(*) from pgflow.workers where last_heartbeat_at > %s", (promoted_at,)
            ).fetchone()
            assert beating == (len(workers),)
        # the wait subscribed before the crash re-subscribed, saw the gated run finish after
        # the promotion and returned
        names = [event.event for event in follower.events]
        assert names[-2:] == ["step:gate:completed", "run:completed"], names
        assert follower.final is not None, "the wait subscribed before the crash did not return"
        assert follower.final.output == {"gate": "opened"}
        print(
            f"\nfailover: {figures.runs} runs, {figures.tasks} tasks, {len(committed)} completed"
            f" before the crash, {in_flight[0]} in flight at the crash, {len(late)} workers completing after the promotion,"
            f" {figures.re_executions} re-executions, {figures.requeued} requeued,"
            f" {starter.retried} starts retried"
        )
    finally:
        fleet.stop()
        client.close()
