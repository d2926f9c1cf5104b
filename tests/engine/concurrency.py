"""Helpers for the race, property and crash tests: real concurrent workers and run snapshots.

Every actor runs in its own thread with its own psycopg connection, so the interleavings
are decided by PostgreSQL's locks, not by Python. To force an interleaving a test holds a
transaction (or an explicit table lock) open and waits until the other backends are seen
waiting on a lock in ``pg_stat_activity`` before letting go.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.engine.helpers import (
    Row,
    archived_messages,
    complete_at,
    ensure_worker,
    fail_at,
    fetch,
    queue_messages,
    read_and_start,
    run_row,
    start_tasks,
    states,
    task_row,
    task_rows,
)

Action = Callable[[psycopg.Connection], Any]

TERMINAL_TASK = ("completed", "failed", "cancelled", "skipped")


# -- connections and flows --------------------------------------------------------------


def connect(dsn: str) -> psycopg.Connection:
    """A fresh autocommit connection (one per actor)."""
    return psycopg.connect(dsn, autocommit=True)


def backend_pid(conn: psycopg.Connection) -> int:
    """The server process id behind a connection."""
    return conn.info.backend_pid


def worker_id(name: str) -> uuid.UUID:
    """A stable worker uuid derived from a name."""
    return uuid.uuid5(uuid.NAMESPACE_OID, f"pgweave-test-worker-{name}")


@dataclass(frozen=True)
class StepDef:
    """One step to add with add_step (only the options these tests vary)."""

    slug: str
    deps: tuple[str, ...] = ()
    step_type: str = "single"
    max_attempts: int | None = None
    timeout: int | None = None
    when_exhausted: str = "fail"
    when_unmet: str = "skip"
    required: Any = None
    forbidden: Any = None


def build_flow(
    conn: psycopg.Connection,
    flow: str,
    steps: Sequence[StepDef],
    *,
    max_attempts: int | None = None,
    base_delay: int | None = None,
    timeout: int | None = None,
) -> None:
    """create_flow + add_step for each step, in order."""
    conn.execute(
        "select pgflow.create_flow(%s, max_attempts => %s, base_delay => %s, timeout => %s)",
        (flow, max_attempts, base_delay, timeout),
    )
    for step in steps:
        conn.execute(
            "select pgflow.add_step(%s, %s, %s::text[], max_attempts => %s, timeout => %s,"
            " step_type => %s, required_input_pattern => %s, forbidden_input_pattern => %s,"
            " when_unmet => %s, when_exhausted => %s)",
            (
                flow,
                step.slug,
                list(step.deps),
                step.max_attempts,
                step.timeout,
                step.step_type,
                None if step.required is None else Jsonb(step.required),
                None if step.forbidden is None else Jsonb(step.forbidden),
                step.when_unmet,
                step.when_exhausted,
            ),
        )


# -- reading the run ----------------------------------------------------------------------


def run_events(conn: psycopg.Connection, run_id: uuid.UUID) -> list[Row]:
    """Realtime-stub events of one run, in call order."""
    return fetch(
        conn,
        "select seq, event, payload from realtime.messages where topic = %s order by seq",
        f"pgflow:run:{run_id}",
    )


def event_count(conn: psycopg.Connection, run_id: uuid.UUID, event: str) -> int:
    """How many times ``event`` (e.g. ``run:failed``, ``step:a:completed``) was broadcast."""
    return sum(1 for row in run_events(conn, run_id) if row["event"] == event)


def run_queue_ids(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> list[int]:
    """Ids of the messages of one run still in ``pgmq.q_<flow>``."""
    return [
        row["msg_id"]
        for row in queue_messages(conn, flow)
        if row["message"]["run_id"] == str(run_id)
    ]


def run_archive_ids(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> list[int]:
    """Ids of the messages of one run in ``pgmq.a_<flow>`` (with duplicates, if any)."""
    return [
        row["msg_id"]
        for row in archived_messages(conn, flow)
        if row["message"]["run_id"] == str(run_id)
    ]


def snapshot(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> dict[str, Any]:
    """Everything a call could change about a run: rows, queue, archive and events."""
    events_exist = conn.execute("select to_regclass('realtime.messages') is not null").fetchone()
    return {
        "run": run_row(conn, run_id),
        "steps": states(conn, run_id),
        "tasks": task_rows(conn, run_id),
        "queue": queue_messages(conn, flow),
        "archive": archived_messages(conn, flow),
        "events": run_events(conn, run_id) if events_exist and events_exist[0] else [],
    }


# -- assertions shared by the race tests -------------------------------------------------


def assert_failed_run_is_clean(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> None:
    """A failed run leaves no work behind: every task terminal, its messages all archived."""
    assert run_row(conn, run_id)["status"] == "failed"
    tasks = task_rows(conn, run_id)
    live = {key: row["status"] for key, row in tasks.items() if row["status"] not in TERMINAL_TASK}
    assert live == {}, f"tasks left queued/started on a failed run: {live}"
    assert run_queue_ids(conn, flow, run_id) == [], "messages left in the queue"
    archived = run_archive_ids(conn, flow, run_id)
    assert len(archived) == len(set(archived)), "a message was archived twice"
    message_ids = {row["message_id"] for row in tasks.values()}
    assert message_ids == set(archived), "archive does not hold exactly the run's messages"
    assert event_count(conn, run_id, "run:failed") == 1
    assert event_count(conn, run_id, "run:completed") == 0


def assert_failed_run_frozen(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> None:
    """complete_task and fail_task on every task of a failed run change nothing at all."""
    before = snapshot(conn, flow, run_id)
    for (step, index), row in before["tasks"].items():
        conn.execute(
            "select pgflow.complete_task(%s, %s, %s, %s)",
            (run_id, step, index, Jsonb([f"late {step}[{index}]"])),
        )
        conn.execute(
            "select pgflow.fail_task(%s, %s, %s, %s)",
            (run_id, step, index, f"late failure of {step}[{index}] ({row['status']})"),
        )
    after = snapshot(conn, flow, run_id)
    assert after == before


# -- forcing interleavings ---------------------------------------------------------------


def wait_until_waiting(
    observer: psycopg.Connection, pids: Sequence[int], timeout: float = 5.0
) -> set[int]:
    """Poll pg_stat_activity until every pid waits on a heavyweight lock; returns those that do."""
    deadline = time.monotonic() + timeout
    waiting: set[int] = set()
    while time.monotonic() < deadline:
        rows = observer.execute(
            "select pid from pg_stat_activity where pid = any(%s) and wait_event_type = 'Lock'",
            (list(pids),),
        ).fetchall()
        waiting = {row[0] for row in rows}
        if waiting == set(pids):
            return waiting
        time.sleep(0.02)
    return waiting


def wait_until_blocked(observer: psycopg.Connection, pid: int, timeout: float = 10) -> None:
    """Wait until backend ``pid`` waits for a lock (another transaction holds it)."""
    if wait_until_waiting(observer, [pid], timeout) != {pid}:
        raise AssertionError(f"backend {pid} never waited for a lock")


class Actor:
    """A thread with its own connection that runs one action when told to."""

    def __init__(self, dsn: str, name: str, action: Action, *, in_transaction: bool = False):
        self.name = name
        self.conn = connect(dsn)
        self.pid = backend_pid(self.conn)
        self.action = action
        self.in_transaction = in_transaction
        self.result: Any = None
        self.error: BaseException | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            if self.in_transaction:
                with self.conn.transaction():
                    self.result = self.action(self.conn)
                    self.holding.set()
                    if not self.release.wait(30):
                        raise TimeoutError(f"{self.name} was never released")
            else:
                self.result = self.action(self.conn)
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.holding.set()

    def start(self) -> Actor:
        self.thread.start()
        return self

    def join(self, timeout: float = 30) -> Any:
        """Wait for the action; re-raise its error; return its result."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.name} is still running"
        self.conn.close()
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class Interleaving:
    """What ``hold_then`` observed."""

    first: Any
    others: list[Any]
    blocked: set[str]


def hold_then(
    dsn: str,
    observer: psycopg.Connection,
    first: Action,
    others: dict[str, Action],
    wait: float = 5.0,
) -> Interleaving:
    """Run ``first`` in a transaction kept open until every other action (each started
    concurrently on its own connection) waits on a lock, then commit and let them go.

    The others see the first one's effects only after its commit, so they exercise the
    "second caller blocked behind the first" path. Which of them were seen blocked is
    returned so tests can assert the interleaving really happened.
    """
    holder = Actor(dsn, "holder", first, in_transaction=True).start()
    assert holder.holding.wait(30)
    if holder.error is not None:
        holder.join()
    actors = {name: Actor(dsn, name, action) for name, action in others.items()}
    for actor in actors.values():
        actor.start()
    waiting = wait_until_waiting(observer, [a.pid for a in actors.values()], wait)
    holder.release.set()
    first_result = holder.join()
    results = [actor.join() for actor in actors.values()]
    blocked = {name for name, actor in actors.items() if actor.pid in waiting}
    return Interleaving(first_result, results, blocked)


def run_together(dsn: str, actions: dict[str, Action]) -> dict[str, Any]:
    """Run actions at the same instant (a barrier), each on its own connection."""
    barrier = threading.Barrier(len(actions))

    def synced(action: Action) -> Action:
        def run(conn: psycopg.Connection) -> Any:
            barrier.wait(10)
            return action(conn)

        return run

    actors = {name: Actor(dsn, name, synced(action)).start() for name, action in actions.items()}
    return {name: actor.join() for name, actor in actors.items()}


# -- worker-like operations on chosen tasks ------------------------------------------------


def claim(
    conn: psycopg.Connection,
    flow: str,
    run_id: uuid.UUID,
    picks: Sequence[tuple[str, int]],
    worker: uuid.UUID,
    vt: int = 30,
) -> list[Row]:
    """Start chosen queued tasks as a worker whose read returned exactly their messages.

    pgmq cannot read given ids, so the messages are hidden with ``pgmq.set_vt`` (what the
    read would do) and handed to ``start_tasks``.
    """
    ensure_worker(conn, flow, worker)
    ids = []
    for step, index in picks:
        row = task_row(conn, run_id, step, index)
        conn.execute("select pgmq.set_vt(%s, %s, %s)", (flow, row["message_id"], vt))
        ids.append(row["message_id"])
    return start_tasks(conn, flow, ids, worker)


# -- a pool of draining workers ----------------------------------------------------------


Handler = Callable[[Row], Any]


@dataclass
class DrainReport:
    """What a pool of workers did while draining a run."""

    started: list[tuple[str, int]] = field(default_factory=list)
    completed: list[tuple[str, int]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def drain(
    dsn: str,
    flow: str,
    run_id: uuid.UUID,
    handler: Handler,
    *,
    workers: int = 4,
    qty: int = 10,
    timeout: float = 90.0,
    seed: int = 0,
) -> DrainReport:
    """N worker threads poll the flow's queue (read_with_poll → start_tasks) and complete every
    task with ``handler(task record)`` until the run leaves ``started``.

    Each worker completes its batch in shuffled order, so completions reach the database out
    of task_index order.
    """
    report = DrainReport()
    deadline = time.monotonic() + timeout

    def work(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        me = worker_id(f"{flow}-{number}")
        try:
            with connect(dsn) as conn:
                while time.monotonic() < deadline:
                    if run_row(conn, run_id)["status"] != "started":
                        return
                    batch = read_and_start(conn, flow, vt=30, qty=rng.randint(1, qty), worker=me)
                    with report.lock:
                        report.started.extend((t["step_slug"], t["task_index"]) for t in batch)
                    rng.shuffle(batch)
                    for record in batch:
                        complete_at(
                            conn,
                            record["run_id"],
                            record["step_slug"],
                            record["task_index"],
                            handler(record),
                        )
                        with report.lock:
                            report.completed.append((record["step_slug"], record["task_index"]))
                report.errors.append(TimeoutError(f"worker {number} gave up draining {run_id}"))
        except BaseException as exc:
            with report.lock:
                report.errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 10)
    return report


def completing(run_id: uuid.UUID, step: str, index: int, output: Any) -> Action:
    """An action that calls complete_task for one task."""

    def act(conn: psycopg.Connection) -> list[Row]:
        return complete_at(conn, run_id, step, index, output)

    return act


def failing(run_id: uuid.UUID, step: str, index: int, message: str) -> Action:
    """An action that calls fail_task for one task."""

    def act(conn: psycopg.Connection) -> list[Row]:
        return fail_at(conn, run_id, step, index, message)

    return act


def reading(flow: str, name: str, vt: int = 30, qty: int = 1) -> Action:
    """An action that reads and starts like a worker named ``name``."""

    def act(conn: psycopg.Connection) -> list[Row]:
        return read_and_start(conn, flow, vt=vt, qty=qty, worker=worker_id(name))

    return act
