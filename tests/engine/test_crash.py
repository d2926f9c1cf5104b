"""Crashing workers: a worker's connection dies with tasks in hand.

When the dying worker's transaction had not committed, PostgreSQL rolls everything back
and another worker takes the tasks at once. When its start_tasks had committed, the tasks
stay ``started`` and their messages stay hidden for the step's timeout + 2 s; once that
passes the message is readable again but ``start_tasks`` ignores it while the task is
started, until ``requeue_stalled_tasks`` (run periodically by workers) puts it back. Either
way each task completes once, the run completes once, and a late completion replayed by
the dead worker changes nothing.

The stall window of requeue_stalled_tasks (timeout + 30 s) is simulated by moving the
task's timestamps back, as pgflow's own tests do; visibility timeouts are waited for.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import psycopg
import pytest

from tests.engine.concurrency import (
    StepDef,
    build_flow,
    connect,
    event_count,
    run_queue_ids,
    snapshot,
    wait_until_waiting,
    worker_id,
)
from tests.engine.helpers import (
    complete_at,
    fail_at,
    install_realtime_stub,
    read_and_start,
    run_row,
    start_flow,
    states,
    task_rows,
)

A = worker_id("crash-A")
B = worker_id("crash-B")


def setup_run(conn: psycopg.Connection, flow: str, items: list[int]) -> uuid.UUID:
    """items (root map, flow timeout 1 s) → total; returns the started run's id."""
    install_realtime_stub(conn)
    build_flow(conn, flow, [StepDef("items", (), "map"), StepDef("total", ("items",))], timeout=1)
    run_id: uuid.UUID = start_flow(conn, flow, items)["run_id"]
    return run_id


def wait_gone(observer: psycopg.Connection, pid: int, timeout: float = 5.0) -> None:
    """Wait until a backend has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = observer.execute(
            "select count(*) from pg_stat_activity where pid = %s", (pid,)
        ).fetchone()
        if row == (0,):
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} is still alive")


def kill(observer: psycopg.Connection, victim: psycopg.Connection) -> None:
    """pg_terminate_backend on a connection's server process, and check it is dead."""
    pid = victim.info.backend_pid
    assert observer.execute("select pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    wait_gone(observer, pid)
    with pytest.raises(psycopg.OperationalError):
        victim.execute("select 1")
    victim.close()


def age_started_tasks(conn: psycopg.Connection, run_id: uuid.UUID, seconds: int) -> None:
    """Pretend the run's started tasks started ``seconds`` ago (past the stall window)."""
    conn.execute(
        "update pgflow.step_tasks"
        " set queued_at = queued_at - make_interval(secs => %s),"
        "     started_at = started_at - make_interval(secs => %s)"
        " where run_id = %s and status = 'started'",
        (seconds, seconds, run_id),
    )


def finish_with(conn: psycopg.Connection, flow: str, run_id: uuid.UUID, worker: uuid.UUID) -> None:
    """A healthy worker completes whatever is readable until the run is done."""
    for _ in range(20):
        if run_row(conn, run_id)["status"] != "started":
            return
        for record in read_and_start(conn, flow, vt=30, qty=10, worker=worker):
            value = record["input"]
            output = value * 10 if record["step_slug"] == "items" else sum(value["items"])
            complete_at(conn, run_id, record["step_slug"], record["task_index"], output)
    raise AssertionError("run did not finish")


def assert_completed_once(
    conn: psycopg.Connection, flow: str, run_id: uuid.UUID, items: list[int]
) -> None:
    """The run completed exactly once with every output right and nothing left queued."""
    run = run_row(conn, run_id)
    assert run["status"] == "completed"
    assert run["output"] == {"total": sum(i * 10 for i in items)}
    assert states(conn, run_id)["items"]["output"] == [i * 10 for i in items]
    assert {row["status"] for row in task_rows(conn, run_id).values()} == {"completed"}
    assert event_count(conn, run_id, "run:completed") == 1
    assert event_count(conn, run_id, "step:items:completed") == 1
    assert event_count(conn, run_id, "step:total:completed") == 1
    assert run_queue_ids(conn, flow, run_id) == []


def assert_late_calls_ignored(
    conn: psycopg.Connection, db: str, flow: str, run_id: uuid.UUID
) -> None:
    """The dead worker comes back and replays its completions (and a failure): no change."""
    before = snapshot(conn, flow, run_id)
    with connect(db) as zombie:
        for (step, index), row in before["tasks"].items():
            complete_at(zombie, run_id, step, index, {"zombie": index})
            fail_at(zombie, run_id, step, index, f"zombie failure ({row['status']})")
    assert snapshot(conn, flow, run_id) == before


def test_worker_killed_after_start_is_requeued_and_completed_once(
    conn: psycopg.Connection, db: str
) -> None:
    """A starts tasks 0 and 1 (committed) and is terminated. Their messages stay hidden for
    timeout + 2 s, then reappear, but B cannot start them while they are started; after the
    stall window requeue_stalled_tasks hands them to B, which completes the run once."""
    items = [1, 2, 3, 4]
    run_id = setup_run(conn, "crash", items)
    victim = connect(db)
    taken = read_and_start(victim, "crash", vt=1, qty=2, worker=A)
    assert sorted(r["task_index"] for r in taken) == [0, 1]
    kill(conn, victim)

    healthy = connect(db)
    for record in read_and_start(healthy, "crash", vt=30, qty=10, worker=B):
        complete_at(healthy, run_id, "items", record["task_index"], record["input"] * 10)
    tasks = task_rows(conn, run_id)
    assert [tasks[("items", i)]["status"] for i in range(4)] == [
        "started",
        "started",
        "completed",
        "completed",
    ]
    assert tasks[("items", 0)]["last_worker_id"] == A

    # the read's vt was 1 s, but start_tasks extended it to timeout + 2 = 3 s
    time.sleep(1.2)
    assert healthy.execute("select msg_id from pgmq.read('crash', 1, 10)").fetchall() == []
    left = conn.execute(
        'select extract(epoch from max(vt) - clock_timestamp()) from pgmq."q_crash"'
    ).fetchone()
    assert left is not None
    time.sleep(max(0.0, float(left[0])) + 0.2)

    reread = read_and_start(healthy, "crash", vt=1, qty=10, worker=B)
    assert reread == [], "a re-read message of a started task must not start it twice"
    read_counts = [
        row[0]
        for row in conn.execute('select read_ct from pgmq."q_crash" order by msg_id').fetchall()
    ]
    assert read_counts == [2, 2]
    tasks = task_rows(conn, run_id)
    assert [
        (tasks[("items", i)]["attempts_count"], tasks[("items", i)]["last_worker_id"])
        for i in (0, 1)
    ] == [(1, A), (1, A)]

    assert conn.execute("select pgflow.requeue_stalled_tasks()").fetchone() == (0,)
    age_started_tasks(conn, run_id, 60)
    assert conn.execute("select pgflow.requeue_stalled_tasks()").fetchone() == (2,)
    tasks = task_rows(conn, run_id)
    for i in (0, 1):
        assert tasks[("items", i)]["status"] == "queued"
        assert tasks[("items", i)]["requeued_count"] == 1
        assert tasks[("items", i)]["last_worker_id"] is None

    retaken = read_and_start(healthy, "crash", vt=30, qty=10, worker=B)
    assert sorted(r["task_index"] for r in retaken) == [0, 1]
    for record in retaken:
        complete_at(healthy, run_id, "items", record["task_index"], record["input"] * 10)
    finish_with(healthy, "crash", run_id, B)
    healthy.close()

    tasks = task_rows(conn, run_id)
    assert [tasks[("items", i)]["attempts_count"] for i in range(4)] == [2, 2, 1, 1]
    assert tasks[("items", 0)]["last_worker_id"] == B
    assert_completed_once(conn, "crash", run_id, items)
    assert_late_calls_ignored(conn, db, "crash", run_id)


def test_socket_closed_mid_transaction_rolls_the_start_back(
    conn: psycopg.Connection, db: str
) -> None:
    """A reads and starts inside a transaction, then its socket is shut down while the
    transaction is open. Until then B cannot see the messages; afterwards everything A did
    is rolled back and B takes the tasks at once, as first attempts."""
    items = [5, 6, 7]
    run_id = setup_run(conn, "sock", items)
    victim = connect(db)
    victim.execute("begin")
    taken = read_and_start(victim, "sock", vt=30, qty=3, worker=A)
    assert len(taken) == 3

    healthy = connect(db)
    assert read_and_start(healthy, "sock", vt=30, qty=3, worker=B) == []
    assert {row["status"] for row in task_rows(conn, run_id).values()} == {"queued"}

    pid = victim.info.backend_pid
    raw = socket.socket(fileno=os.dup(victim.pgconn.socket))
    raw.shutdown(socket.SHUT_RDWR)
    raw.close()
    wait_gone(conn, pid)
    victim.close()

    read_counts = [row[0] for row in conn.execute('select read_ct from pgmq."q_sock"').fetchall()]
    assert read_counts == [0, 0, 0], "the crashed read was not rolled back"
    retaken = read_and_start(healthy, "sock", vt=30, qty=3, worker=B)
    assert sorted(r["task_index"] for r in retaken) == [0, 1, 2]
    assert {
        (row["attempts_count"], row["last_worker_id"]) for row in task_rows(conn, run_id).values()
    } == {(1, B)}
    for record in retaken:
        complete_at(healthy, run_id, "items", record["task_index"], record["input"] * 10)
    finish_with(healthy, "sock", run_id, B)
    healthy.close()
    assert_completed_once(conn, "sock", run_id, items)
    assert_late_calls_ignored(conn, db, "sock", run_id)


def test_worker_killed_inside_complete_task(conn: psycopg.Connection, db: str) -> None:
    """A's complete_task for the last map task is stopped in the middle (the archive table
    is locked) and A is terminated there: the step must not complete. After requeueing, B
    completes the task and the run once; A's replayed completion changes nothing."""
    items = [1, 2]
    run_id = setup_run(conn, "midway", items)
    victim = connect(db)
    taken = read_and_start(victim, "midway", vt=30, qty=2, worker=A)
    assert len(taken) == 2
    complete_at(victim, run_id, "items", 0, 10)

    blocker = connect(db)
    blocker.execute("begin")
    blocker.execute('lock table pgmq."a_midway" in exclusive mode')
    errors: list[BaseException] = []

    def last_completion() -> None:
        try:
            complete_at(victim, run_id, "items", 1, 20)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=last_completion)
    thread.start()
    pid = victim.info.backend_pid
    assert wait_until_waiting(conn, [pid]) == {pid}, "complete_task never reached the archive"
    assert conn.execute("select pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], psycopg.OperationalError)
    victim.close()
    blocker.execute("commit")
    blocker.close()

    tasks = task_rows(conn, run_id)
    assert tasks[("items", 1)]["status"] == "started"
    assert tasks[("items", 1)]["output"] is None
    assert states(conn, run_id)["items"]["status"] == "started"
    assert states(conn, run_id)["items"]["remaining_tasks"] == 1
    assert event_count(conn, run_id, "step:items:completed") == 0
    assert ("total", 0) not in tasks

    age_started_tasks(conn, run_id, 120)
    assert conn.execute("select pgflow.requeue_stalled_tasks()").fetchone() == (1,)
    healthy = connect(db)
    finish_with(healthy, "midway", run_id, B)
    healthy.close()
    assert task_rows(conn, run_id)[("items", 1)]["attempts_count"] == 2
    assert_completed_once(conn, "midway", run_id, items)
    assert_late_calls_ignored(conn, db, "midway", run_id)
