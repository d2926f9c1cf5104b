"""Worker bookkeeping: register_worker, worker_heartbeat (false once deprecated or
unknown) and mark_worker_stopped, as the Python worker uses them."""

from __future__ import annotations

import uuid

import psycopg

from tests.engine.helpers import Row, fetch, scalar, start_flow, start_tasks

WORKER = uuid.UUID("22222222-2222-2222-2222-222222222222")


def register(conn: psycopg.Connection, worker: uuid.UUID, queue: str, function: str) -> Row:
    [row] = fetch(conn, "select * from pgflow.register_worker(%s, %s, %s)", worker, queue, function)
    return row


def heartbeat(conn: psycopg.Connection, worker: uuid.UUID) -> bool:
    return bool(scalar(conn, "select pgflow.worker_heartbeat(%s)", worker))


def worker_row(conn: psycopg.Connection, worker: uuid.UUID) -> Row:
    [row] = fetch(conn, "select * from pgflow.workers where worker_id = %s", worker)
    return row


def test_register_worker_inserts_and_returns_the_row(conn: psycopg.Connection) -> None:
    returned = register(conn, WORKER, "my_flow", "my_worker")

    stored = worker_row(conn, WORKER)
    assert returned == stored
    assert (stored["queue_name"], stored["function_name"]) == ("my_flow", "my_worker")
    assert stored["started_at"] is not None
    assert stored["last_heartbeat_at"] == stored["started_at"]
    assert stored["deprecated_at"] is None
    assert stored["stopped_at"] is None


def test_register_again_updates_queue_and_revives_a_stopped_worker(
    conn: psycopg.Connection,
) -> None:
    first = register(conn, WORKER, "old_flow", "old_worker")
    conn.execute("select pgflow.mark_worker_stopped(%s)", (WORKER,))
    assert worker_row(conn, WORKER)["stopped_at"] is not None

    again = register(conn, WORKER, "new_flow", "new_worker")

    assert (again["queue_name"], again["function_name"]) == ("new_flow", "new_worker")
    assert again["stopped_at"] is None
    assert again["started_at"] == first["started_at"]
    assert again["last_heartbeat_at"] > first["last_heartbeat_at"]
    assert fetch(conn, "select count(*) as n from pgflow.workers") == [{"n": 1}]


def test_heartbeat_advances_and_keeps_the_worker_going(conn: psycopg.Connection) -> None:
    registered = register(conn, WORKER, "f", "w")

    assert heartbeat(conn, WORKER) is True
    first_beat = worker_row(conn, WORKER)["last_heartbeat_at"]
    assert heartbeat(conn, WORKER) is True
    second_beat = worker_row(conn, WORKER)["last_heartbeat_at"]

    assert registered["last_heartbeat_at"] < first_beat < second_beat


def test_heartbeat_of_a_deprecated_worker_returns_false(conn: psycopg.Connection) -> None:
    register(conn, WORKER, "f", "w")
    other = uuid.uuid4()
    register(conn, other, "f", "w")
    conn.execute("update pgflow.workers set deprecated_at = now() where worker_id = %s", (WORKER,))
    before = worker_row(conn, WORKER)["last_heartbeat_at"]

    assert heartbeat(conn, WORKER) is False
    assert heartbeat(conn, other) is True
    # the beat is still recorded: the worker is alive while it winds down
    assert worker_row(conn, WORKER)["last_heartbeat_at"] > before


def test_re_registering_does_not_undo_a_deprecation(conn: psycopg.Connection) -> None:
    register(conn, WORKER, "f", "w")
    conn.execute("update pgflow.workers set deprecated_at = now() where worker_id = %s", (WORKER,))

    again = register(conn, WORKER, "f", "w")

    assert again["deprecated_at"] is not None
    assert heartbeat(conn, WORKER) is False


def test_heartbeat_of_an_unknown_worker_returns_false_and_inserts_nothing(
    conn: psycopg.Connection,
) -> None:
    assert heartbeat(conn, uuid.uuid4()) is False
    assert fetch(conn, "select * from pgflow.workers") == []


def test_mark_worker_stopped_sets_stopped_at_of_that_worker_only(
    conn: psycopg.Connection,
) -> None:
    register(conn, WORKER, "f", "w")
    other = uuid.uuid4()
    register(conn, other, "f", "w")

    conn.execute("select pgflow.mark_worker_stopped(%s)", (WORKER,))

    stopped = worker_row(conn, WORKER)
    assert stopped["stopped_at"] is not None
    assert stopped["stopped_at"] >= stopped["last_heartbeat_at"]
    assert worker_row(conn, other)["stopped_at"] is None


def test_mark_unknown_worker_stopped_changes_nothing(conn: psycopg.Connection) -> None:
    register(conn, WORKER, "f", "w")
    before = fetch(conn, "select * from pgflow.workers")

    conn.execute("select pgflow.mark_worker_stopped(%s)", (uuid.uuid4(),))

    assert fetch(conn, "select * from pgflow.workers") == before


def test_registered_worker_is_recorded_on_the_tasks_it_starts(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.create_flow('f')")
    conn.execute("select pgflow.add_step('f', 'a')")
    run = start_flow(conn, "f", {})
    register(conn, WORKER, "f", "w")
    [msg_id] = [r[0] for r in conn.execute("select msg_id from pgmq.read('f', 5, 1)")]

    [task] = start_tasks(conn, "f", [msg_id], WORKER)

    assert task["run_id"] == run["run_id"]
    [row] = fetch(conn, "select last_worker_id from pgflow.step_tasks")
    assert row["last_worker_id"] == WORKER
    # a worker row that goes away leaves the task without a worker, not without a row
    conn.execute("delete from pgflow.workers where worker_id = %s", (WORKER,))
    [row] = fetch(conn, "select status, last_worker_id from pgflow.step_tasks")
    assert row == {"status": "started", "last_worker_id": None}
