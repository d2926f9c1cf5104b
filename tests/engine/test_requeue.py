"""requeue_stalled_tasks: started tasks silent past their step's (else the flow's) timeout
+ 30 s go back to the queue, visible at once, up to 3 times; then they are given up
(permanently stalled, message archived). Rows locked by others are skipped."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.engine.helpers import (
    DEFAULT_WORKER,
    Row,
    add_step,
    archived_messages,
    complete,
    create_flow,
    fetch,
    queue_messages,
    read_and_start,
    scalar,
    start_flow,
)


def requeue(conn: psycopg.Connection) -> int:
    return int(scalar(conn, "select pgflow.requeue_stalled_tasks()"))


def age_started_tasks(conn: psycopg.Connection, seconds: int, step: str | None = None) -> None:
    """Pretend the started tasks (of one step) started ``seconds`` ago."""
    conn.execute(
        "update pgflow.step_tasks"
        " set queued_at = least(queued_at, now() - make_interval(secs => %s)),"
        "     started_at = now() - make_interval(secs => %s)"
        " where status = 'started' and (%s::text is null or step_slug = %s)",
        (seconds, seconds, step, step),
    )


def tasks(conn: psycopg.Connection) -> dict[tuple[str, int], Row]:
    rows = fetch(conn, "select * from pgflow.step_tasks order by step_slug, task_index")
    return {(r["step_slug"], r["task_index"]): r for r in rows}


def visible_ids(conn: psycopg.Connection, queue: str) -> list[int]:
    return [
        r["msg_id"]
        for r in fetch(
            conn, f'select msg_id from pgmq."q_{queue}" where vt <= clock_timestamp() order by 1'
        )
    ]


def flow(conn: psycopg.Connection, slug: str, timeout: int, *steps: tuple[str, Any]) -> None:
    """A flow of independent root steps; each step is (slug, its own timeout or None)."""
    create_flow(conn, slug, timeout=timeout)
    for step, step_timeout in steps:
        add_step(conn, slug, step, timeout=step_timeout)


def test_task_within_timeout_and_grace_is_left_alone(conn: psycopg.Connection) -> None:
    flow(conn, "f", 10, ("a", None))
    start_flow(conn, "f", {})
    read_and_start(conn, "f", vt=60)
    age_started_tasks(conn, 10 + 25)
    before = tasks(conn)

    assert requeue(conn) == 0

    assert tasks(conn) == before
    assert visible_ids(conn, "f") == []


def test_stalled_task_is_requeued_and_visible_at_once(conn: psycopg.Connection) -> None:
    flow(conn, "f", 10, ("a", None))
    start_flow(conn, "f", {})
    [started] = read_and_start(conn, "f", vt=600)
    age_started_tasks(conn, 10 + 31)
    [message_before] = queue_messages(conn, "f")

    assert requeue(conn) == 1

    task = tasks(conn)[("a", 0)]
    assert task["status"] == "queued"
    assert task["started_at"] is None
    assert task["last_worker_id"] is None
    assert task["requeued_count"] == 1
    assert task["last_requeued_at"] is not None
    assert task["attempts_count"] == 1  # a stall is not a failed attempt
    assert task["permanently_stalled_at"] is None
    [message] = queue_messages(conn, "f")
    assert message["msg_id"] == started["msg_id"]
    assert message["read_ct"] == message_before["read_ct"]
    assert visible_ids(conn, "f") == [started["msg_id"]]
    assert archived_messages(conn, "f") == []

    # the next poll hands it to a (live) worker again, as a second attempt
    other_worker = uuid.uuid4()
    [again] = read_and_start(conn, "f", worker=other_worker)
    assert again["msg_id"] == started["msg_id"]
    task = tasks(conn)[("a", 0)]
    assert (task["status"], task["attempts_count"], task["last_worker_id"]) == (
        "started",
        2,
        other_worker,
    )
    complete(conn, again, "ok")
    [run] = fetch(conn, "select status, output from pgflow.runs")
    assert run == {"status": "completed", "output": {"a": "ok"}}


def test_step_timeout_wins_over_flow_timeout(conn: psycopg.Connection) -> None:
    # flow timeout 10 s; 'long' allows 100 s, 'short' 5 s, 'plain' uses the flow's 10 s
    flow(conn, "f", 10, ("long", 100), ("short", 5), ("plain", None))
    start_flow(conn, "f", {})
    read_and_start(conn, "f", vt=600, qty=3)

    age_started_tasks(conn, 5 + 31, "short")
    age_started_tasks(conn, 10 + 25, "plain")
    age_started_tasks(conn, 10 + 60, "long")
    assert requeue(conn) == 1
    assert {k[0]: v["status"] for k, v in tasks(conn).items()} == {
        "long": "started",  # 70 s < 100 s + 30 s, although past the flow's 10 s + 30 s
        "plain": "started",
        "short": "queued",
    }

    age_started_tasks(conn, 10 + 31, "plain")
    age_started_tasks(conn, 100 + 29, "long")
    assert requeue(conn) == 1
    assert tasks(conn)[("plain", 0)]["status"] == "queued"
    assert tasks(conn)[("long", 0)]["status"] == "started"

    age_started_tasks(conn, 100 + 31, "long")
    assert requeue(conn) == 1
    assert {v["status"] for v in tasks(conn).values()} == {"queued"}
    assert len(visible_ids(conn, "f")) == 3


def test_three_requeues_then_permanently_stalled_and_archived(
    conn: psycopg.Connection,
) -> None:
    flow(conn, "f", 10, ("a", None))
    run = start_flow(conn, "f", {})
    [first] = read_and_start(conn, "f", vt=600)

    for round_ in (1, 2, 3):
        age_started_tasks(conn, 60)
        assert requeue(conn) == 1
        task = tasks(conn)[("a", 0)]
        assert (task["status"], task["requeued_count"]) == ("queued", round_)
        [again] = read_and_start(conn, "f", vt=600)
        assert again["msg_id"] == first["msg_id"]

    age_started_tasks(conn, 60)
    before = tasks(conn)[("a", 0)]
    assert requeue(conn) == 0

    task = tasks(conn)[("a", 0)]
    assert task["status"] == "started"  # left as it was, only marked
    assert task["requeued_count"] == 3
    assert task["permanently_stalled_at"] is not None
    assert task["attempts_count"] == before["attempts_count"] == 4
    assert task["last_worker_id"] == DEFAULT_WORKER
    assert task["started_at"] == before["started_at"]
    assert queue_messages(conn, "f") == []
    assert [m["msg_id"] for m in archived_messages(conn, "f")] == [first["msg_id"]]
    [state] = fetch(conn, "select status from pgflow.step_states where run_id = %s", run["run_id"])
    assert state["status"] == "started"

    # given up for good: later calls change nothing
    age_started_tasks(conn, 600)
    after_give_up = tasks(conn)
    assert requeue(conn) == 0
    assert tasks(conn) == after_give_up


def test_only_started_tasks_are_considered(conn: psycopg.Connection) -> None:
    flow(conn, "f", 10, ("a", None), ("b", None), ("c", None))
    start_flow(conn, "f", {})
    [a, _b] = read_and_start(conn, "f", vt=600, qty=2)
    complete(conn, a, 1)
    # 'a' completed long ago, 'b' started long ago, 'c' queued long ago
    conn.execute(
        "update pgflow.step_tasks set queued_at = now() - interval '1 hour',"
        " started_at = case when started_at is not null then now() - interval '50 minutes' end,"
        " completed_at = case when completed_at is not null then now() - interval '40 minutes' end"
    )
    before = tasks(conn)

    assert requeue(conn) == 1

    after = tasks(conn)
    assert after[("a", 0)] == before[("a", 0)]
    assert after[("c", 0)] == before[("c", 0)]
    assert after[("b", 0)]["status"] == "queued"


def test_requeues_map_tasks_and_several_flows_in_one_call(conn: psycopg.Connection) -> None:
    create_flow(conn, "f1", timeout=10)
    add_step(conn, "f1", "m", step_type="map")
    flow(conn, "f2", 10, ("a", None))
    start_flow(conn, "f1", [1, 2, 3])
    start_flow(conn, "f2", {})
    started_map = read_and_start(conn, "f1", vt=600, qty=3)
    [started_single] = read_and_start(conn, "f2", vt=600)
    age_started_tasks(conn, 45)

    assert requeue(conn) == 4

    assert visible_ids(conn, "f1") == sorted(t["msg_id"] for t in started_map)
    assert visible_ids(conn, "f2") == [started_single["msg_id"]]
    assert {(r["status"], r["requeued_count"]) for r in tasks(conn).values()} == {("queued", 1)}


def test_task_without_message_is_requeued_without_queue_access(
    conn: psycopg.Connection,
) -> None:
    flow(conn, "f", 10, ("a", None))
    start_flow(conn, "f", {})
    read_and_start(conn, "f", vt=600)
    conn.execute("update pgflow.step_tasks set message_id = null")
    age_started_tasks(conn, 60)

    assert requeue(conn) == 1

    assert tasks(conn)[("a", 0)]["status"] == "queued"
    # the message itself was not touched
    assert visible_ids(conn, "f") == []


def test_tasks_locked_by_another_transaction_are_skipped(conn: psycopg.Connection, db: str) -> None:
    flow(conn, "f", 10, ("a", None), ("b", None))
    start_flow(conn, "f", {})
    read_and_start(conn, "f", vt=600, qty=2)
    age_started_tasks(conn, 60)

    with psycopg.connect(db) as holder:
        # e.g. a worker completing 'a' right now
        holder.execute("select 1 from pgflow.step_tasks where step_slug = 'a' for update")
        # a blocking implementation would wait here: make that a failure, not a hang
        conn.execute("set lock_timeout = '2s'")
        assert requeue(conn) == 1
        assert tasks(conn)[("a", 0)]["status"] == "started"
        assert tasks(conn)[("b", 0)]["status"] == "queued"
        holder.rollback()

    assert requeue(conn) == 1
    assert tasks(conn)[("a", 0)]["status"] == "queued"
    assert tasks(conn)[("a", 0)]["requeued_count"] == 1
    assert tasks(conn)[("b", 0)]["requeued_count"] == 1


def test_concurrent_requeue_calls_requeue_each_task_once(conn: psycopg.Connection, db: str) -> None:
    flow(conn, "f", 10, ("a", None), ("b", None))
    start_flow(conn, "f", {})
    read_and_start(conn, "f", vt=600, qty=2)
    age_started_tasks(conn, 60)

    with psycopg.connect(db) as other:
        # the other caller's transaction holds what it requeued until it commits
        [[in_other]] = other.execute("select pgflow.requeue_stalled_tasks()").fetchall()
        conn.execute("set lock_timeout = '2s'")
        in_this = requeue(conn)
        other.commit()

    assert in_other == 2
    assert in_this == 0
    assert {r["requeued_count"] for r in tasks(conn).values()} == {1}
