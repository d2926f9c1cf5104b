"""What the chaos and failover tests share: their own clusters, a fleet of worker
processes, a client starting runs through outages, and the invariants checked at the end."""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgweave.client import Client, RunNotFoundError
from pgweave.embedded import EmbeddedPostgres
from pgweave.install import apply_migrations, install_pgmq
from tests.chaos.flows import EFFECTS_TABLE
from tests.runtime.processes import WorkerProcess, wait_for

FLOWS = "tests.chaos.flows"
WORKER_ARGS = ("--requeue-interval", "1", "--heartbeat-interval", "1")
"""Stalled tasks (a killed worker's) are requeued within 1 s of their timeout + 30 s."""
CRASH_SAFE = {"synchronous_commit": "on"}
"""A crash keeps every acknowledged commit (fsync may stay off: the OS does not crash)."""


@contextmanager
def cluster(**settings: str) -> Iterator[EmbeddedPostgres]:
    """A cluster of the test's own (it is crashed on purpose), removed afterwards."""
    server = EmbeddedPostgres(settings={**CRASH_SAFE, **settings})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def engine_database(server: EmbeddedPostgres) -> str:
    """Create a database with pgmq, the engine and the side-effect table; its name."""
    name = "chaos"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"create database {name}")
    with psycopg.connect(server.dsn(name), autocommit=True) as conn:
        install_pgmq(conn)
        apply_migrations(conn)
        conn.execute(EFFECTS_TABLE)
    return name


class Fleet:
    """``pgweave worker`` processes serving the same flows; stopped by pid afterwards."""

    def __init__(self, dsn: str, flows: Sequence[str], logs: Path) -> None:
        self.dsn = dsn
        self.refs = [f"{FLOWS}:{flow}" for flow in flows]
        self.logs = logs
        self.processes: list[WorkerProcess] = []
        self.live: list[WorkerProcess] = []
        self.kills = 0

    def start(self, count: int = 1) -> None:
        """Start ``count`` more worker processes."""
        for _ in range(count):
            log = self.logs / f"worker-{len(self.processes)}.log"
            process = WorkerProcess(self.dsn, self.refs, log, self.logs, *WORKER_ARGS)
            self.processes.append(process)
            self.live.append(process)

    def kill_and_replace(self, rng: random.Random) -> None:
        """SIGKILL one live worker process at random and start a new one."""
        victim = self.live.pop(rng.randrange(len(self.live)))
        victim.signal(signal.SIGKILL)
        victim.wait(30)
        self.kills += 1
        self.start()

    def stop(self) -> None:
        """Stop every process still running (SIGTERM to all at once, then SIGKILL)."""
        for process in self.live:
            if process.process.poll() is None:
                process.signal(signal.SIGTERM)
        for process in self.processes:
            process.stop()


def registered(dsn: str, count: int) -> bool:
    """Whether ``count`` workers are registered and not stopped."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pgflow.workers where stopped_at is null"
        ).fetchone()
    return row is not None and row[0] >= count


def plan(rng: random.Random, singles: int, chains: int, maps: int) -> list[tuple[str, Any]]:
    """Runs to start, shuffled: single-step, three-step chain and map (4 to 10 elements) runs."""
    runs: list[tuple[str, Any]] = [("chaos_single", {"n": i}) for i in range(singles)]
    runs += [("chaos_chain", {"n": i}) for i in range(chains)]
    runs += [("chaos_map", list(range(rng.randint(4, 10)))) for _ in range(maps)]
    rng.shuffle(runs)
    return runs


class Starter(threading.Thread):
    """Starts planned runs at a steady pace through outages.

    A start that fails with a connection error has an unknown outcome: it is checked by its
    run_id (chosen here) before it is tried again, so no run is started twice.
    """

    def __init__(self, dsn: str, runs: list[tuple[str, Any]], interval: float) -> None:
        super().__init__(name="chaos-starter", daemon=True)
        self.client = Client(dsn)
        self.runs = runs
        self.interval = interval
        self.run_ids: list[uuid.UUID] = []
        self.retried = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for flow, value in self.runs:
                run_id = uuid.uuid4()
                self._start(flow, value, run_id)
                self.run_ids.append(run_id)
                time.sleep(self.interval)
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            self.client.close()

    def _start(self, flow: str, value: Any, run_id: uuid.UUID) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.start_flow(flow, value, run_id=run_id)
                return
            except psycopg.OperationalError:
                self.retried += 1
            while True:  # the outcome is unknown: find it out before trying again
                assert time.monotonic() < deadline, f"could not start run {run_id} in 30 s"
                time.sleep(0.2)
                try:
                    self.client.get_run(run_id)
                    return  # it was started after all
                except RunNotFoundError:
                    break
                except psycopg.OperationalError:
                    continue

    def finish(self, timeout: float) -> list[uuid.UUID]:
        """Wait for every start; the ids of the started runs."""
        self.join(timeout)
        assert not self.is_alive(), f"runs still being started after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.run_ids


def wait_all(dsn: str, run_ids: Sequence[uuid.UUID], deadline: float) -> None:
    """Wait (by events) until every run ended; each must have completed."""
    with Client(dsn) as client:
        for run_id in run_ids:
            final = client.wait(run_id, timeout=max(deadline - time.monotonic(), 0.1))
            assert final.status == "completed", final


@dataclass(frozen=True)
class Figures:
    """What the invariants counted."""

    runs: int
    tasks: int
    executions: int
    re_executed_tasks: int
    requeued: int

    @property
    def re_executions(self) -> int:
        """Handler executions beyond one per task."""
        return self.executions - self.tasks


def _scalar(conn: psycopg.Connection, query: str | sql.Composed, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def check_invariants(conn: psycopg.Connection, flows: Sequence[str]) -> Figures:
    """Every run and step completed, each task completed once (one archived message each),
    queues empty, and every task's handler ran at least once and at most once per start."""
    for table in ("runs", "step_states", "step_tasks"):
        unfinished = _scalar(
            conn,
            sql.SQL("select count(*) from pgflow.{} where status <> 'completed'").format(
                sql.Identifier(table)
            ),
        )
        assert unfinished == 0, f"{unfinished} {table} not completed"
    for flow in flows:
        queued = _scalar(
            conn, sql.SQL("select count(*) from pgmq.{}").format(sql.Identifier(f"q_{flow}"))
        )
        assert queued == 0, f"queue {flow} holds {queued} messages"
        archived = conn.execute(
            sql.SQL("select count(*), count(distinct msg_id) from pgmq.{}").format(
                sql.Identifier(f"a_{flow}")
            )
        ).fetchone()
        tasks = _scalar(conn, "select count(*) from pgflow.step_tasks where flow_slug = %s", flow)
        assert archived == (tasks, tasks), f"{flow}: {tasks} tasks, archived {archived}"
    per_task = conn.execute(
        "select t.run_id, t.step_slug, t.task_index, t.attempts_count, count(e.execution)"
        " from pgflow.step_tasks as t left join chaos_effects as e"
        "   on (e.run_id, e.step_slug, e.task_index) = (t.run_id, t.step_slug, t.task_index)"
        " group by 1, 2, 3, 4"
    ).fetchall()
    unbounded = [row for row in per_task if not 1 <= row[4] <= row[3]]
    assert not unbounded, f"tasks run never or more often than started: {unbounded}"
    orphans = _scalar(
        conn,
        "select count(*) from chaos_effects as e where not exists (select from"
        " pgflow.step_tasks as t where (t.run_id, t.step_slug, t.task_index)"
        " = (e.run_id, e.step_slug, e.task_index))",
    )
    assert orphans == 0, f"{orphans} side effects of unknown tasks"
    return Figures(
        runs=_scalar(conn, "select count(*) from pgflow.runs"),
        tasks=len(per_task),
        executions=sum(row[4] for row in per_task),
        re_executed_tasks=sum(1 for row in per_task if row[4] > 1),
        requeued=int(
            _scalar(conn, "select coalesce(sum(requeued_count), 0) from pgflow.step_tasks")
        ),
    )


def listening(conn: psycopg.Connection, run_id: uuid.UUID) -> bool:
    """Whether a session LISTENs on the run's channel (its last statement was the LISTEN)."""
    row = conn.execute(
        "select count(*) from pg_stat_activity where query = %s",
        (f'listen "pgflow:run:{run_id}"',),
    ).fetchone()
    return row is not None and row[0] > 0


def wait_registered(dsn: str, count: int) -> None:
    """Wait until ``count`` workers are registered."""
    wait_for(lambda: registered(dsn, count), 60, f"{count} workers to register")
