"""Run control under concurrency, with real connections: cancel against complete_task,
fail_task, start_tasks, read_and_start_tasks and complete_tasks of the same run (no
deadlock, nothing resurrected, nothing completed after the cancellation commits); pause
against start_tasks; resume of a partially completed map drained by a pool of workers;
retries of retries; concurrent idempotent starts."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.engine.concurrency import (
    TERMINAL_TASK,
    Actor,
    StepDef,
    build_flow,
    claim,
    completing,
    connect,
    drain,
    event_count,
    failing,
    hold_then,
    run_queue_ids,
    run_together,
    wait_until_waiting,
    worker_id,
)
from tests.engine.helpers import (
    Events,
    Row,
    fetch,
    read_and_start,
    run_row,
    start_flow,
    start_tasks,
    task_row,
    task_statuses,
)


def cancelling(run_id: uuid.UUID) -> Any:
    """An action that cancels the run."""

    def act(conn: psycopg.Connection) -> list[Row]:
        return fetch(conn, "select * from pgflow.cancel_run(%s, 'race')", run_id)

    return act


def assert_cancelled_and_clean(conn: psycopg.Connection, run_id: uuid.UUID) -> None:
    """The run is cancelled once, every task terminal, no message of it left queued."""
    assert run_row(conn, run_id)["status"] == "cancelled"
    live = {k: s for k, s in task_statuses(conn, run_id).items() if s not in TERMINAL_TASK}
    assert live == {}
    assert run_queue_ids(conn, "f", run_id) == []
    assert event_count(conn, run_id, "run:cancelled") == 1
    assert event_count(conn, run_id, "run:completed") == 0


def two_task_run(conn: psycopg.Connection) -> tuple[uuid.UUID, list[Row]]:
    """A run of flow f (a root map m over two elements) with both tasks started."""
    build_flow(conn, "f", [StepDef("m", step_type="map")], max_attempts=1)
    Events(conn)
    run_id = start_flow(conn, "f", [1, 2])["run_id"]
    return run_id, read_and_start(conn, "f", vt=30, qty=2)


def test_cancel_waits_for_a_completion_in_flight_and_keeps_it(
    db: str, conn: psycopg.Connection
) -> None:
    run_id, _ = two_task_run(conn)
    seen = hold_then(db, conn, completing(run_id, "m", 0, "kept"), {"cancel": cancelling(run_id)})
    assert seen.blocked == {"cancel"}
    assert task_statuses(conn, run_id) == {("m", 0): "completed", ("m", 1): "cancelled"}
    assert task_row(conn, run_id, "m", 0)["output"] == "kept"
    assert_cancelled_and_clean(conn, run_id)


def test_calls_queued_behind_a_cancel_change_nothing(db: str, conn: psycopg.Connection) -> None:
    run_id, _ = two_task_run(conn)

    def batch(conn: psycopg.Connection) -> list[Row]:
        return fetch(
            conn,
            "select * from pgflow.complete_tasks(%s::uuid[], %s::text[], %s::int[], %s::jsonb[])",
            [run_id],
            ["m"],
            [1],
            [Jsonb("late")],
        )

    seen = hold_then(
        db,
        conn,
        cancelling(run_id),
        {
            "complete": completing(run_id, "m", 0, "late"),
            "fail": failing(run_id, "m", 1, "late"),
            "batch": batch,
        },
    )
    assert seen.blocked == {"complete", "fail", "batch"}
    assert task_statuses(conn, run_id) == {("m", 0): "cancelled", ("m", 1): "cancelled"}
    assert [row["output"] for row in fetch(conn, "select output from pgflow.step_tasks")] == [
        None,
        None,
    ]
    assert_cancelled_and_clean(conn, run_id)


def test_cancel_against_a_run_failing_at_the_same_moment(db: str, conn: psycopg.Connection) -> None:
    run_id, _ = two_task_run(conn)

    def cancel_refused(c: psycopg.Connection) -> str:
        with pytest.raises(psycopg.errors.RaiseException) as error:
            cancelling(run_id)(c)
        return str(error.value)

    seen = hold_then(db, conn, failing(run_id, "m", 0, "boom"), {"cancel": cancel_refused})
    assert seen.blocked == {"cancel"}
    assert seen.others[0].startswith(f"Run {run_id} cannot be cancelled: it is failed")
    assert run_row(conn, run_id)["status"] == "failed"

    other = start_flow(conn, "f", [3])["run_id"]
    [task] = read_and_start(conn, "f", vt=30)
    seen = hold_then(db, conn, cancelling(other), {"fail": failing(other, "m", 0, "late")})
    assert seen.blocked == {"fail"}
    assert task["run_id"] == other
    assert_cancelled_and_clean(conn, other)


def test_cancel_against_start_tasks(db: str, conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("m", step_type="map")])
    Events(conn)
    run_id = start_flow(conn, "f", [1, 2, 3])["run_id"]
    me = worker_id("starter")

    # start_tasks holds task 0 until it commits: the cancel waits, then cancels it too.
    def start_first(c: psycopg.Connection) -> list[Row]:
        return claim(c, "f", run_id, [("m", 0)], me)

    seen = hold_then(db, conn, start_first, {"cancel": cancelling(run_id)})
    assert seen.blocked == {"cancel"}
    assert len(seen.first) == 1
    assert_cancelled_and_clean(conn, run_id)

    # The cancel holds the tasks: start_tasks waits and starts nothing, read_and_start_tasks
    # does not wait and starts nothing.
    second = start_flow(conn, "f", [1, 2, 3])["run_id"]
    ids = [task_row(conn, second, "m", i)["message_id"] for i in range(3)]

    def start_all(c: psycopg.Connection) -> list[Row]:
        return start_tasks(c, "f", ids, me)

    seen = hold_then(db, conn, cancelling(second), {"start": start_all})
    assert seen.blocked == {"start"}
    assert seen.others == [[]]
    assert_cancelled_and_clean(conn, second)

    third = start_flow(conn, "f", [1, 2, 3])["run_id"]
    holder = connect(db)
    with holder.transaction():
        fetch(holder, "select * from pgflow.cancel_run(%s)", third)
        reader = connect(db)
        got = fetch(reader, "select * from pgflow.read_and_start_tasks('f', %s, 10, 30)", me)
        reader.close()
    holder.close()
    assert got == []
    assert_cancelled_and_clean(conn, third)


def test_cancel_while_a_pool_of_workers_drains_the_run(db: str, conn: psycopg.Connection) -> None:
    """Workers use the batch protocol on a 300-element map while the run is cancelled:
    the completions that committed before the cancel stay, nothing completes after it,
    no worker deadlocks or fails."""
    build_flow(conn, "f", [StepDef("m", step_type="map")])
    Events(conn)
    run_id = start_flow(conn, "f", list(range(300)))["run_id"]
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(number: int) -> None:
        me = worker_id(f"drain-{number}")
        try:
            with connect(db) as c:
                c.execute(
                    "select pgflow.register_worker(%s, 'f', 'test')",
                    (me,),
                )
                while not stop.is_set():
                    tasks = fetch(
                        c, "select * from pgflow.read_and_start_tasks('f', %s, 7, 30)", me
                    )
                    if not tasks:
                        time.sleep(0.005)
                        continue
                    fetch(
                        c,
                        "select * from pgflow.complete_tasks(%s::uuid[], %s::text[],"
                        " %s::int[], %s::jsonb[])",
                        [t["run_id"] for t in tasks],
                        [t["step_slug"] for t in tasks],
                        [t["task_index"] for t in tasks],
                        [Jsonb(t["input"]) for t in tasks],
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = fetch(
            conn, "select count(*) as n from pgflow.step_tasks where status = 'completed'"
        )[0]["n"]
        if done >= 60:
            break
        time.sleep(0.01)
    fetch(conn, "select * from pgflow.cancel_run(%s)", run_id)
    completed_at_cancel = {k for k, s in task_statuses(conn, run_id).items() if s == "completed"}
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert errors == []
    after = task_statuses(conn, run_id)
    assert {k for k, s in after.items() if s == "completed"} == completed_at_cancel
    assert 60 <= len(completed_at_cancel) < 300
    assert set(after.values()) == {"completed", "cancelled"}
    assert_cancelled_and_clean(conn, run_id)


# -- pause ----------------------------------------------------------------------------------


def pausing(run_id: uuid.UUID) -> Any:
    def act(conn: psycopg.Connection) -> list[Row]:
        return fetch(conn, "select * from pgflow.pause_run(%s)", run_id)

    return act


def test_pause_against_start_tasks(db: str, conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("m", step_type="map")])
    run_id = start_flow(conn, "f", [1, 2, 3])["run_id"]
    me = worker_id("starter")
    ids = [task_row(conn, run_id, "m", i)["message_id"] for i in range(3)]

    # The pause holds the queued tasks: start_tasks waits, then starts nothing.
    def start_all(c: psycopg.Connection) -> list[Row]:
        return start_tasks(c, "f", ids, me)

    seen = hold_then(db, conn, pausing(run_id), {"start": start_all})
    assert seen.blocked == {"start"}
    assert seen.others == [[]]
    assert set(task_statuses(conn, run_id).values()) == {"queued"}

    # start_tasks holds a task first: it started before the pause, which waits for it.
    fetch(conn, "select * from pgflow.unpause_run(%s)", run_id)

    def start_first(c: psycopg.Connection) -> list[Row]:
        return claim(c, "f", run_id, [("m", 0)], me)

    seen = hold_then(db, conn, start_first, {"pause": pausing(run_id)})
    assert seen.blocked == {"pause"}
    assert task_statuses(conn, run_id) == {
        ("m", 0): "started",
        ("m", 1): "queued",
        ("m", 2): "queued",
    }
    assert read_and_start(conn, "f", vt=30, qty=10) == []


# -- restart ----------------------------------------------------------------------------------


def test_resume_of_a_partial_map_runs_only_the_missing_elements(
    db: str, conn: psycopg.Connection
) -> None:
    build_flow(conn, "f", [StepDef("m", step_type="map"), StepDef("z", deps=("m",))])
    source = start_flow(conn, "f", list(range(50)))["run_id"]
    started = read_and_start(conn, "f", vt=30, qty=50)
    done = {t["task_index"] for t in started if t["task_index"] % 5 != 0}
    for task in started:
        if task["task_index"] in done:
            fetch(
                conn,
                "select * from pgflow.complete_task(%s, 'm', %s, %s)",
                source,
                task["task_index"],
                Jsonb(task["input"] * 2),
            )
    fetch(conn, "select * from pgflow.cancel_run(%s)", source)

    [new] = fetch(conn, "select * from pgflow.resume_run(%s)", source)

    def handler(task: Row) -> Any:
        return task["input"] * 2 if task["step_slug"] == "m" else task["input"]["m"]

    report = drain(db, "f", new["run_id"], handler, workers=3, qty=4)
    assert report.errors == []
    ran = sorted(index for step, index in report.started if step == "m")
    assert ran == [i for i in range(50) if i not in done]
    assert [step for step, _ in report.started if step != "m"] == ["z"]
    run = run_row(conn, new["run_id"])
    assert run["status"] == "completed"
    assert run["output"] == {"z": [2 * i for i in range(50)]}


def test_retries_of_retries_at_the_same_moment(db: str, conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("a")], max_attempts=1)
    first = start_flow(conn, "f", {"n": 1})["run_id"]
    fetch(conn, "select * from pgflow.cancel_run(%s)", first)
    [second] = fetch(conn, "select * from pgflow.retry_run(%s)", first)
    fetch(conn, "select * from pgflow.cancel_run(%s)", second["run_id"])

    def retry(c: psycopg.Connection) -> Row:
        [row] = fetch(c, "select * from pgflow.retry_run(%s)", second["run_id"])
        return row

    def resume(c: psycopg.Connection) -> Row:
        [row] = fetch(c, "select * from pgflow.resume_run(%s)", second["run_id"])
        return row

    results = run_together(db, {"retry": retry, "resume": resume})
    assert {r["restart_of_run_id"] for r in results.values()} == {second["run_id"]}
    assert len({r["run_id"] for r in results.values()}) == 2
    assert run_row(conn, second["run_id"])["status"] == "cancelled"
    assert run_row(conn, second["run_id"])["restart_of_run_id"] == first


def test_concurrent_idempotent_starts_start_one_run(db: str, conn: psycopg.Connection) -> None:
    build_flow(conn, "f", [StepDef("a")])

    def start(c: psycopg.Connection) -> uuid.UUID:
        [row] = fetch(
            c, "select * from pgflow.start_flow_idempotent('f', %s, 'same-key')", Jsonb({"k": 1})
        )
        return uuid.UUID(str(row["run_id"]))

    results = run_together(db, {f"client{n}": start for n in range(4)})
    assert len(set(results.values())) == 1
    assert fetch(conn, "select count(*) as n from pgflow.runs") == [{"n": 1}]


@pytest.mark.parametrize("control", ["cancel_run", "pause_run"])
def test_cancel_and_pause_against_a_start_in_another_lock_order(
    db: str, conn: psycopg.Connection, control: str
) -> None:
    """Task 0 was retried (its row moved behind tasks 1 and 2). A holder keeps task 2
    locked; the cancel (or pause) takes what it can and waits for task 2; a start_tasks of
    tasks 0 and 1 comes next. Once the holder lets go, nobody deadlocks: the run is
    cancelled (or paused) and the start starts nothing."""
    build_flow(conn, "f", [StepDef("m", step_type="map", max_attempts=3)])
    me = worker_id("starter")
    run_id = start_flow(conn, "f", [1, 2, 3])["run_id"]
    [first] = claim(conn, "f", run_id, [("m", 0)], me)
    fetch(conn, "select * from pgflow.fail_task(%s, 'm', 0, 'again')", run_id)
    ids = [task_row(conn, run_id, "m", i)["message_id"] for i in range(3)]
    assert first["msg_id"] == ids[0]

    holder = connect(db)
    holder.execute("begin")
    holder.execute(
        "select 1 from pgflow.step_tasks where run_id = %s and task_index = 2 for update",
        (run_id,),
    )

    def controlling(c: psycopg.Connection) -> list[Row]:
        return fetch(c, f"select * from pgflow.{control}(%s)", run_id)

    def starting(c: psycopg.Connection) -> list[Row]:
        return start_tasks(c, "f", ids[:2], me)

    ctl = Actor(db, control, controlling).start()
    assert wait_until_waiting(conn, [ctl.pid]) == {ctl.pid}
    start = Actor(db, "start", starting).start()
    assert wait_until_waiting(conn, [start.pid]) == {start.pid}
    holder.execute("commit")
    holder.close()
    ctl.join()
    assert start.join() == []
    statuses_now = set(task_statuses(conn, run_id).values())
    assert statuses_now == ({"cancelled"} if control == "cancel_run" else {"queued"})
