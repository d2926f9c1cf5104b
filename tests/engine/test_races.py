"""Races around a failing run, proven with real concurrent connections.

A type violation (a single step feeding a map with a non-array) fails the run while other
workers hold started tasks or complete them at the same moment. Whatever the interleaving,
no message may stay in (or come back to) the flow's queue, every task of the run ends
terminal (our difference 4: cancelled instead of left queued/started), and calls arriving
after the failure change nothing. The last tests drain big runs with a pool of workers and
check that every task, step and run completes exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from tests.engine.concurrency import (
    Actor,
    StepDef,
    assert_failed_run_frozen,
    assert_failed_run_is_clean,
    build_flow,
    claim,
    completing,
    connect,
    drain,
    event_count,
    failing,
    hold_then,
    reading,
    run_events,
    run_queue_ids,
    run_together,
    wait_until_waiting,
    worker_id,
)
from tests.engine.helpers import (
    complete_at,
    ensure_worker,
    fail_at,
    install_realtime_stub,
    read_and_start,
    run_row,
    start_flow,
    states,
    task_rows,
    task_statuses,
)


def start_run(conn: psycopg.Connection, flow: str, flow_input: Any) -> uuid.UUID:
    """start_flow; returns the run id."""
    run_id: uuid.UUID = start_flow(conn, flow, flow_input)["run_id"]
    return run_id


def finish_root(conn: psycopg.Connection, flow: str, run_id: uuid.UUID, output: Any) -> None:
    """Read, start and complete the run's only queued root task."""
    [record] = read_and_start(conn, flow, vt=30)
    assert record["run_id"] == run_id
    assert complete_at(conn, run_id, record["step_slug"], record["task_index"], output)


def assert_type_violation(
    conn: psycopg.Connection, run_id: uuid.UUID, step: str, child: str, produced: str
) -> None:
    """The violating task and step carry pgflow's exact TYPE_VIOLATION texts; the map waits."""
    tasks = task_rows(conn, run_id)
    steps = states(conn, run_id)
    assert tasks[(step, 0)]["status"] == "failed"
    assert (
        tasks[(step, 0)]["error_message"]
        == f"[TYPE_VIOLATION] Produced {produced} instead of array"
    )
    assert steps[step]["status"] == "failed"
    assert steps[step]["error_message"] == (
        f"[TYPE_VIOLATION] Map step {child} expects array input but dependency {step}"
        f" produced {produced}"
    )
    assert steps[child]["status"] == "created"
    assert steps[child]["initial_tasks"] is None
    assert not [key for key in tasks if key[0] == child]
    events = [row["event"] for row in run_events(conn, run_id)]
    assert events.index("run:failed") < events.index(f"step:{step}:failed")


# -- 1. basic violation --------------------------------------------------------------------


def test_basic_violation_with_a_late_duplicate_racing_it(conn: psycopg.Connection, db: str) -> None:
    """step1 → step2 → map_step: step2 produces an object while a second worker replays
    step1's completion at the same instant; the run fails once and nothing is left."""
    install_realtime_stub(conn)
    build_flow(
        conn,
        "basic",
        [StepDef("step1"), StepDef("step2", ("step1",)), StepDef("map_step", ("step2",), "map")],
    )
    run_id = start_run(conn, "basic", {"n": 1})
    finish_root(conn, "basic", run_id, {"rows": 3})
    [step2] = claim(conn, "basic", run_id, [("step2", 0)], worker_id("a"))
    assert step2["input"] == {"step1": {"rows": 3}}

    results = run_together(
        db,
        {
            "violator": lambda c: complete_at(c, run_id, "step2", 0, {"not": "an array"}),
            "replay": lambda c: complete_at(c, run_id, "step1", 0, {"rows": 99}),
        },
    )

    assert results["violator"][0]["status"] == "failed"
    assert_type_violation(conn, run_id, "step2", "map_step", "object")
    tasks = task_rows(conn, run_id)
    assert tasks[("step1", 0)]["output"] == {"rows": 3}, "the replayed completion changed step1"
    assert states(conn, run_id)["step1"]["output"] == {"rows": 3}
    assert event_count(conn, run_id, "step:step1:completed") == 1
    assert_failed_run_is_clean(conn, "basic", run_id)
    assert_failed_run_frozen(conn, "basic", run_id)


# -- 2. concurrent started tasks -------------------------------------------------------------


def concurrent_started_setup(conn: psycopg.Connection) -> uuid.UUID:
    """producer → map_consumer (map), parallel_task1 → p1_map (map), parallel_task2; the
    producer completed with [1, 2, 3]; four workers hold one started task each."""
    build_flow(
        conn,
        "fanout",
        [
            StepDef("producer"),
            StepDef("map_consumer", ("producer",), "map"),
            StepDef("parallel_task1", ("producer",)),
            StepDef("parallel_task2", ("producer",)),
            StepDef("p1_map", ("parallel_task1",), "map"),
        ],
    )
    run_id = start_run(conn, "fanout", {"go": True})
    finish_root(conn, "fanout", run_id, [1, 2, 3])
    assert task_statuses(conn, run_id) == {
        ("producer", 0): "completed",
        ("map_consumer", 0): "queued",
        ("map_consumer", 1): "queued",
        ("map_consumer", 2): "queued",
        ("parallel_task1", 0): "queued",
        ("parallel_task2", 0): "queued",
    }
    for name, pick in [
        ("A", ("map_consumer", 0)),
        ("B", ("map_consumer", 1)),
        ("C", ("parallel_task1", 0)),
        ("D", ("parallel_task2", 0)),
    ]:
        [record] = claim(conn, "fanout", run_id, [pick], worker_id(name))
        assert (record["step_slug"], record["task_index"]) == pick
    return run_id


def test_violation_first_cancels_every_started_task(conn: psycopg.Connection, db: str) -> None:
    """Worker C's violation holds the run while A, B and D complete their started tasks:
    they wait for it, then find the run failed and change nothing."""
    install_realtime_stub(conn)
    run_id = concurrent_started_setup(conn)

    seen = hold_then(
        db,
        conn,
        lambda c: complete_at(c, run_id, "parallel_task1", 0, "not an array"),
        {
            "A": lambda c: complete_at(c, run_id, "map_consumer", 0, "a"),
            "B": lambda c: complete_at(c, run_id, "map_consumer", 1, "b"),
            "D": lambda c: complete_at(c, run_id, "parallel_task2", 0, "d"),
        },
    )

    assert seen.blocked == {"A", "B", "D"}, "the completions did not wait for the violation"
    assert_type_violation(conn, run_id, "parallel_task1", "p1_map", "string")
    assert task_statuses(conn, run_id) == {
        ("producer", 0): "completed",
        ("map_consumer", 0): "cancelled",
        ("map_consumer", 1): "cancelled",
        ("map_consumer", 2): "cancelled",
        ("parallel_task1", 0): "failed",
        ("parallel_task2", 0): "cancelled",
    }
    tasks = task_rows(conn, run_id)
    assert all(
        tasks[key]["output"] is None
        for key in tasks
        if key[0] != "producer" and key[0] != "parallel_task1"
    )
    assert states(conn, run_id)["map_consumer"]["remaining_tasks"] == 3
    assert event_count(conn, run_id, "step:parallel_task2:completed") == 0
    assert_failed_run_is_clean(conn, "fanout", run_id)
    assert_failed_run_frozen(conn, "fanout", run_id)


def test_completions_first_then_violation(conn: psycopg.Connection, db: str) -> None:
    """A's completion holds the run while the violation and B, D queue behind it: A's task
    stays completed, the rest is cancelled or completed before the failure, never lost."""
    install_realtime_stub(conn)
    run_id = concurrent_started_setup(conn)

    seen = hold_then(
        db,
        conn,
        lambda c: complete_at(c, run_id, "map_consumer", 0, "a"),
        {
            "C": lambda c: complete_at(c, run_id, "parallel_task1", 0, 42),
            "B": lambda c: complete_at(c, run_id, "map_consumer", 1, "b"),
            "D": lambda c: complete_at(c, run_id, "parallel_task2", 0, "d"),
        },
    )

    assert seen.blocked == {"B", "C", "D"}
    assert_type_violation(conn, run_id, "parallel_task1", "p1_map", "number")
    tasks = task_rows(conn, run_id)
    assert tasks[("map_consumer", 0)]["status"] == "completed"
    assert tasks[("map_consumer", 0)]["output"] == "a"
    assert tasks[("map_consumer", 2)]["status"] == "cancelled"
    for key in [("map_consumer", 1), ("parallel_task2", 0)]:
        assert tasks[key]["status"] in ("completed", "cancelled")
    events = [row["event"] for row in run_events(conn, run_id)]
    if tasks[("parallel_task2", 0)]["status"] == "completed":
        # its completion held the run before the violation did
        assert events.index("step:parallel_task2:completed") < events.index("run:failed")
    else:
        assert "step:parallel_task2:completed" not in events
    done = sum(
        1 for key in tasks if key[0] == "map_consumer" and tasks[key]["status"] == "completed"
    )
    assert states(conn, run_id)["map_consumer"]["remaining_tasks"] == 3 - done
    assert_failed_run_is_clean(conn, "fanout", run_id)
    assert_failed_run_frozen(conn, "fanout", run_id)


# -- 3. mixed queue states -------------------------------------------------------------------


MIXED = [
    StepDef("step1"),
    StepDef("step2", ("step1",)),
    StepDef("map_step", ("step2",), "map"),
    StepDef("step3", ("step1",)),
    StepDef("step4", ("step1",)),
    StepDef("step5", ("step4",)),
]


@pytest.mark.parametrize("first", ["violation", "completion"])
def test_mixed_queued_and_started_tasks(conn: psycopg.Connection, db: str, first: str) -> None:
    """step1 → step2 → map_step, step1 → step3, step1 → step4 → step5. A holds step2, B holds
    step4, step3 stays queued. A's violation races B's completion of step4 (which queues
    step5 when it wins): every queued and started message ends archived."""
    install_realtime_stub(conn)
    build_flow(conn, "mixed", MIXED)
    run_id = start_run(conn, "mixed", {})
    finish_root(conn, "mixed", run_id, {"value": 1})
    claim(conn, "mixed", run_id, [("step2", 0)], worker_id("A"))
    claim(conn, "mixed", run_id, [("step4", 0)], worker_id("B"))
    assert task_statuses(conn, run_id)[("step3", 0)] == "queued"

    def violate(c: psycopg.Connection) -> Any:
        return complete_at(c, run_id, "step2", 0, True)

    def finish_step4(c: psycopg.Connection) -> Any:
        return complete_at(c, run_id, "step4", 0, {"step4": "done"})

    if first == "violation":
        seen = hold_then(db, conn, violate, {"B": finish_step4})
        assert seen.blocked == {"B"}
        expected = {"step4": "cancelled", "step5": None}
    else:
        seen = hold_then(db, conn, finish_step4, {"A": violate})
        assert seen.blocked == {"A"}
        expected = {"step4": "completed", "step5": "cancelled"}

    assert_type_violation(conn, run_id, "step2", "map_step", "boolean")
    got = task_statuses(conn, run_id)
    assert got[("step1", 0)] == "completed"
    assert got[("step3", 0)] == "cancelled"
    assert got[("step4", 0)] == expected["step4"]
    assert got.get(("step5", 0)) == expected["step5"]
    assert_failed_run_is_clean(conn, "mixed", run_id)
    assert_failed_run_frozen(conn, "mixed", run_id)


# -- 4. a 100-element map partly started -----------------------------------------------------


@pytest.mark.parametrize("forced", [True, False], ids=["violation-holds", "free-for-all"])
def test_partial_map_of_100_elements(conn: psycopg.Connection, db: str, forced: bool) -> None:
    """producer → large_map (100 tasks), producer → validator → validator_map. Ten workers
    read concurrently and start ten map tasks; the validator's violation races their
    completions. All 100 map messages (10 started, 90 queued) end archived."""
    install_realtime_stub(conn)
    build_flow(
        conn,
        "large",
        [
            StepDef("producer"),
            StepDef("large_map", ("producer",), "map"),
            StepDef("validator", ("producer",)),
            StepDef("validator_map", ("validator",), "map"),
        ],
    )
    run_id = start_run(conn, "large", {"size": 100})
    finish_root(conn, "large", run_id, list(range(100)))

    readers = {f"w{n}": reading("large", f"w{n}") for n in range(10)}
    batches = run_together(db, readers)
    started = {(b[0]["step_slug"], b[0]["task_index"]) for b in batches.values() if b}
    assert len(started) == 10
    assert {step for step, _ in started} == {"large_map"}
    claim(conn, "large", run_id, [("validator", 0)], worker_id("validator"))
    assert sum(1 for s in task_statuses(conn, run_id).values() if s == "queued") == 90

    completions = {
        f"complete {i}": completing(run_id, "large_map", i, i * 10) for _, i in sorted(started)
    }

    def violate(c: psycopg.Connection) -> Any:
        return complete_at(c, run_id, "validator", 0, {"valid": False})

    if forced:
        seen = hold_then(db, conn, violate, completions)
        assert seen.blocked == set(completions)
    else:
        run_together(db, {"violator": violate, **completions})

    assert_type_violation(conn, run_id, "validator", "validator_map", "object")
    tasks = task_rows(conn, run_id)
    mapped = {index: row for (step, index), row in tasks.items() if step == "large_map"}
    assert sorted(mapped) == list(range(100))
    completed = {i for i, row in mapped.items() if row["status"] == "completed"}
    assert completed <= {index for _, index in started}
    if forced:
        assert completed == set()
    for index in completed:
        assert mapped[index]["output"] == index * 10
    assert {row["status"] for i, row in mapped.items() if i not in completed} == {"cancelled"}
    assert states(conn, run_id)["large_map"]["remaining_tasks"] == 100 - len(completed)
    assert_failed_run_is_clean(conn, "large", run_id)
    assert len(task_rows(conn, run_id)) == 102
    assert_failed_run_frozen(conn, "large", run_id)


# -- 5. visibility timeouts expire after the failure -----------------------------------------


def test_no_message_comes_back_after_its_visibility_timeout(
    conn: psycopg.Connection, db: str
) -> None:
    """step1 → step2 → map_step, step1 → sibling (timeout 1 s), step1 → reader_only.
    A message read with vt 1 s does reappear (control). After step2's violation, a worker
    polls past every visibility timeout (1 s reads, 3 s for the started sibling) and gets
    nothing; late start_tasks and completions are ignored."""
    install_realtime_stub(conn)
    build_flow(
        conn,
        "vt",
        [
            StepDef("step1"),
            StepDef("step2", ("step1",)),
            StepDef("map_step", ("step2",), "map"),
            StepDef("sibling", ("step1",), timeout=1),
            StepDef("reader_only", ("step1",)),
        ],
    )
    run_id = start_run(conn, "vt", {})
    finish_root(conn, "vt", run_id, {"x": 1})
    tasks = task_rows(conn, run_id)

    # reader_only's message (lowest id: steps are sent in slug order) is read but not started
    reader = connect(db)
    [read_row] = reader.execute("select msg_id, read_ct from pgmq.read('vt', 1, 1)").fetchall()
    assert read_row == (tasks[("reader_only", 0)]["message_id"], 1)
    time.sleep(1.2)
    again = reader.execute("select msg_id, read_ct from pgmq.read('vt', 1, 1)").fetchall()
    assert again == [(read_row[0], 2)], "control: an expired message must be readable again"

    [sib] = claim(conn, "vt", run_id, [("sibling", 0)], worker_id("S"), vt=1)
    vt_left = conn.execute(
        'select extract(epoch from vt - clock_timestamp()) from pgmq."q_vt" where msg_id = %s',
        (sib["msg_id"],),
    ).fetchone()
    assert vt_left is not None
    assert 1.5 < float(vt_left[0]) <= 3.1, "start_tasks sets vt to timeout + 2 s"
    claim(conn, "vt", run_id, [("step2", 0)], worker_id("A"), vt=1)

    polled: list[Any] = []

    def poll() -> None:
        with connect(db) as c:
            polled.extend(
                c.execute("select msg_id from pgmq.read_with_poll('vt', 1, 10, 4, 100)").fetchall()
            )

    poller = threading.Thread(target=poll)
    complete_at(conn, run_id, "step2", 0, None)
    poller.start()
    poller.join(10)
    assert not poller.is_alive()

    assert polled == [], "a message came back after the run failed"
    assert_type_violation(conn, run_id, "step2", "map_step", "null")
    assert conn.execute('select count(*) from pgmq."q_vt"').fetchone() == (0,)
    late_start = reader.execute(
        "select * from pgflow.start_tasks('vt', %s, %s)", ([read_row[0]], worker_id("R"))
    ).fetchall()
    assert late_start == []
    assert complete_at(reader, run_id, "sibling", 0, "late")[0]["status"] == "cancelled"
    reader.close()
    assert task_statuses(conn, run_id) == {
        ("step1", 0): "completed",
        ("step2", 0): "failed",
        ("sibling", 0): "cancelled",
        ("reader_only", 0): "cancelled",
    }
    assert_failed_run_is_clean(conn, "vt", run_id)
    assert_failed_run_frozen(conn, "vt", run_id)


@pytest.mark.parametrize("first", ["retry", "violation"])
def test_retry_racing_the_violation_is_not_resurrected(
    conn: psycopg.Connection, db: str, first: str
) -> None:
    """A worker's fail_task (attempts left: requeue after 2 s) races the violation. When the
    retry wins, its requeued message must still be archived and never be read again."""
    install_realtime_stub(conn)
    build_flow(
        conn,
        "retry",
        [
            StepDef("root"),
            StepDef("bad", ("root",)),
            StepDef("bad_map", ("bad",), "map"),
            StepDef("flaky", ("root",)),
        ],
        base_delay=1,
    )
    run_id = start_run(conn, "retry", {})
    finish_root(conn, "retry", run_id, 1)
    claim(conn, "retry", run_id, [("bad", 0)], worker_id("A"))
    claim(conn, "retry", run_id, [("flaky", 0)], worker_id("B"))

    def violate(c: psycopg.Connection) -> Any:
        return complete_at(c, run_id, "bad", 0, "oops")

    def retry(c: psycopg.Connection) -> Any:
        return fail_at(c, run_id, "flaky", 0, "transient")

    if first == "retry":
        seen = hold_then(db, conn, retry, {"violator": violate})
        assert seen.blocked == {"violator"}
        assert task_rows(conn, run_id)[("flaky", 0)]["error_message"] == "transient"
    else:
        seen = hold_then(db, conn, violate, {"retry": retry})
        assert seen.blocked == {"retry"}

    assert_type_violation(conn, run_id, "bad", "bad_map", "string")
    assert task_rows(conn, run_id)[("flaky", 0)]["status"] == "cancelled"
    polled = conn.execute(
        "select msg_id from pgmq.read_with_poll('retry', 1, 10, 3, 100)"
    ).fetchall()
    assert polled == []
    assert_failed_run_is_clean(conn, "retry", run_id)
    assert_failed_run_frozen(conn, "retry", run_id)


# -- 6. nested map chains ------------------------------------------------------------------


def test_nested_map_chain_then_violation(conn: psycopg.Connection, db: str) -> None:
    """items → m1 (map) → m2 (map) → agg → m3 (map), items → side (map). Workers drain m1
    and m2 concurrently (map→map is never type-checked), then agg's non-array output races
    side's completions: m1/m2 outputs stay ordered by task_index, side ends cancelled."""
    install_realtime_stub(conn)
    build_flow(
        conn,
        "nested",
        [
            StepDef("items"),
            StepDef("m1", ("items",), "map"),
            StepDef("m2", ("m1",), "map"),
            StepDef("agg", ("m2",)),
            StepDef("m3", ("agg",), "map"),
            StepDef("side", ("items",), "map"),
        ],
    )
    run_id = start_run(conn, "nested", {})
    finish_root(conn, "nested", run_id, [1, 2, 3, 4, 5, 6])

    def worker(step: str, indices: list[int], fn: Any) -> Any:
        def act(c: psycopg.Connection) -> None:
            records = claim(
                c, "nested", run_id, [(step, i) for i in indices], worker_id(f"{step}{indices}")
            )
            for record in sorted(records, key=lambda r: -int(r["task_index"])):
                complete_at(c, run_id, step, record["task_index"], fn(record["input"]))

        return act

    run_together(db, {f"m1-{k}": worker("m1", [k, k + 3], lambda x: x * 10) for k in range(3)})
    m1 = states(conn, run_id)["m1"]
    assert m1["status"] == "completed"
    assert m1["output"] == [10, 20, 30, 40, 50, 60]
    assert states(conn, run_id)["m2"]["initial_tasks"] == 6
    run_together(db, {f"m2-{k}": worker("m2", [k, k + 3], lambda x: f"v{x}") for k in range(3)})
    steps = states(conn, run_id)
    assert steps["m2"]["output"] == ["v10", "v20", "v30", "v40", "v50", "v60"]
    assert event_count(conn, run_id, "step:m2:completed") == 1

    [agg] = claim(conn, "nested", run_id, [("agg", 0)], worker_id("G"))
    assert agg["input"] == {"m2": ["v10", "v20", "v30", "v40", "v50", "v60"]}
    for index in range(3):
        claim(conn, "nested", run_id, [("side", index)], worker_id(f"side{index}"))

    seen = hold_then(
        db,
        conn,
        lambda c: complete_at(c, run_id, "agg", 0, {"count": 6}),
        {f"side{i}": completing(run_id, "side", i, i) for i in range(3)},
    )

    assert seen.blocked == {"side0", "side1", "side2"}
    assert_type_violation(conn, run_id, "agg", "m3", "object")
    got = task_statuses(conn, run_id)
    assert {got[("side", i)] for i in range(6)} == {"cancelled"}
    assert all(got[(s, i)] == "completed" for s in ("m1", "m2") for i in range(6))
    steps = states(conn, run_id)
    assert steps["m1"]["output"] == [10, 20, 30, 40, 50, 60]
    assert steps["side"]["status"] == "started"
    assert_failed_run_is_clean(conn, "nested", run_id)
    assert_failed_run_frozen(conn, "nested", run_id)


# -- 7. a completion racing the archival ------------------------------------------------------


@pytest.mark.parametrize("first", ["completion", "archival"])
def test_completion_racing_the_archival(conn: psycopg.Connection, db: str, first: str) -> None:
    """root → violator → vmap, root → worker_step → after. A third session locks
    ``pgmq.a_<flow>``, so whichever of the two calls goes first stops in the middle of
    archiving while holding the run; the other one queues behind it. Then the lock goes."""
    install_realtime_stub(conn)
    build_flow(
        conn,
        "arch",
        [
            StepDef("root"),
            StepDef("violator", ("root",)),
            StepDef("vmap", ("violator",), "map"),
            StepDef("worker_step", ("root",)),
            StepDef("after", ("worker_step",)),
        ],
    )
    run_id = start_run(conn, "arch", {})
    finish_root(conn, "arch", run_id, "start")
    claim(conn, "arch", run_id, [("violator", 0)], worker_id("V"))
    claim(conn, "arch", run_id, [("worker_step", 0)], worker_id("W"))

    blocker = connect(db)
    blocker.execute("begin")
    blocker.execute('lock table pgmq."a_arch" in exclusive mode')

    completion = Actor(db, "completion", lambda c: complete_at(c, run_id, "worker_step", 0, "w"))
    violation = Actor(db, "violation", lambda c: complete_at(c, run_id, "violator", 0, 7))
    one, two = (completion, violation) if first == "completion" else (violation, completion)
    one.start()
    assert wait_until_waiting(conn, [one.pid]) == {one.pid}, "first call never reached the archive"
    two.start()
    assert wait_until_waiting(conn, [two.pid]) == {two.pid}, "second call did not wait"
    assert task_statuses(conn, run_id)[("worker_step", 0)] == "started"
    blocker.execute("commit")
    blocker.close()
    one.join()
    two.join()

    assert_type_violation(conn, run_id, "violator", "vmap", "number")
    got = task_statuses(conn, run_id)
    if first == "completion":
        assert got[("worker_step", 0)] == "completed"
        assert got[("after", 0)] == "cancelled"
        assert event_count(conn, run_id, "step:worker_step:completed") == 1
    else:
        assert got[("worker_step", 0)] == "cancelled"
        assert ("after", 0) not in got
        assert event_count(conn, run_id, "step:worker_step:completed") == 0
    assert_failed_run_is_clean(conn, "arch", run_id)
    assert_failed_run_frozen(conn, "arch", run_id)


# -- draining big runs with many workers -------------------------------------------------------


DRAIN_FLOW = [
    StepDef("seed"),
    StepDef("big", ("seed",), "map"),
    StepDef("big2", ("big",), "map"),
    StepDef("total", ("big",)),
    StepDef("count", ("big",)),
    StepDef("a", ("seed",)),
    StepDef("b", ("seed",)),
    StepDef("c", ("seed",)),
    StepDef("fan_in", ("a", "b", "c", "total", "count")),
    StepDef("tail", ("big2",)),
]


def drain_handler(record: dict[str, Any]) -> Any:
    """What each step's handler computes from its input."""
    step, payload = record["step_slug"], record["input"]
    if step == "seed":
        return list(range(200))
    if step == "big":
        return payload * 2
    if step == "big2":
        return payload + 1
    if step == "total":
        return sum(payload["big"])
    if step == "count":
        return len(payload["big"])
    if step in ("a", "b", "c"):
        return {step: len(payload["seed"])}
    if step == "fan_in":
        return sorted(payload)
    if step == "tail":
        return payload["big2"][-1]
    raise AssertionError(step)


def test_workers_drain_a_200_element_map_exactly_once(conn: psycopg.Connection, db: str) -> None:
    """Six workers poll concurrently (read_with_poll → start_tasks, shuffled completions):
    every task starts and completes once, every step and the run complete once, and map
    outputs follow task_index."""
    install_realtime_stub(conn)
    build_flow(conn, "drain", DRAIN_FLOW)
    run_id = start_run(conn, "drain", {"size": 200})

    report = drain(db, "drain", run_id, drain_handler, workers=6, qty=10, seed=7)

    assert report.errors == []
    assert len(report.started) == len(set(report.started)) == 1 + 200 + 200 + 7
    assert sorted(report.completed) == sorted(report.started)
    big_order = [index for step, index in report.completed if step == "big"]
    assert big_order != sorted(big_order), "completions should arrive out of order"

    run = run_row(conn, run_id)
    assert run["status"] == "completed"
    assert run["remaining_steps"] == 0
    big = [2 * i for i in range(200)]
    assert run["output"] == {
        "fan_in": ["a", "b", "c", "count", "total"],
        "tail": big[-1] + 1,
    }
    steps = states(conn, run_id)
    assert steps["big"]["output"] == big
    assert steps["big2"]["output"] == [x + 1 for x in big]
    assert steps["total"]["output"] == sum(big)
    assert all(row["status"] == "completed" for row in steps.values())
    tasks = task_rows(conn, run_id)
    assert len(tasks) == 408
    assert {(row["status"], row["attempts_count"]) for row in tasks.values()} == {("completed", 1)}
    assert run_queue_ids(conn, "drain", run_id) == []

    events = [row["event"] for row in run_events(conn, run_id)]
    assert events.count("run:completed") == 1
    assert events.count("run:failed") == 0
    for slug in steps:
        assert events.count(f"step:{slug}:completed") == 1, slug
        assert events.count(f"step:{slug}:started") == 1, slug
    assert events[-1] == "run:completed"


def test_two_runs_drained_side_by_side(conn: psycopg.Connection, db: str) -> None:
    """Two runs of one flow share the queue; workers drain both at once and neither run
    sees the other's tasks or outputs."""
    install_realtime_stub(conn)
    build_flow(
        conn, "pair", [StepDef("seed"), StepDef("big", ("seed",), "map"), StepDef("sum", ("big",))]
    )
    first = start_run(conn, "pair", {"k": 1})
    second = start_run(conn, "pair", {"k": 2})

    def handler(record: dict[str, Any]) -> Any:
        if record["step_slug"] == "seed":
            factor = 1 if record["run_id"] == first else 1000
            return [factor * i for i in range(60)]
        if record["step_slug"] == "big":
            return record["input"] + 1
        return sum(record["input"]["big"])

    reports = run_together(
        db,
        {
            "first": lambda c: drain(db, "pair", first, handler, workers=3, seed=1),
            "second": lambda c: drain(db, "pair", second, handler, workers=3, seed=2),
        },
    )
    assert all(report.errors == [] for report in reports.values())
    for run_id, factor in [(first, 1), (second, 1000)]:
        run = run_row(conn, run_id)
        assert run["status"] == "completed"
        assert run["output"] == {"sum": sum(factor * i + 1 for i in range(60))}
        assert states(conn, run_id)["big"]["output"] == [factor * i + 1 for i in range(60)]
        assert event_count(conn, run_id, "run:completed") == 1
    assert conn.execute('select count(*) from pgmq."q_pair"').fetchone() == (0,)


# -- start_tasks racing the cancellation ---------------------------------------------------------


FAILURES: dict[str, Any] = {
    "type-violation": completing,
    "exhausted": lambda run_id, step, index, _: failing(run_id, step, index, "boom"),
    "condition": lambda run_id, step, index, _: completing(run_id, step, index, []),
}


@pytest.mark.parametrize("cause", list(FAILURES))
def test_start_tasks_racing_the_cancellation(conn: psycopg.Connection, db: str, cause: str) -> None:
    """root → bad → bad_map, bad → gate (condition, when_unmet fail), root → early. A worker
    read early's message and calls start_tasks while the run is being failed (type
    violation, attempts exhausted, or unmet condition) and its messages archived. A third
    session holds early's queue row, so the failing call waits for it first and the
    worker's start_tasks queues behind; then the row is let go. Both calls must finish
    without error (no deadlock between their lock orders) and early ends cancelled."""
    install_realtime_stub(conn)
    build_flow(
        conn,
        "cancel_race",
        [
            StepDef("root"),
            StepDef("bad", ("root",), max_attempts=1),
            StepDef("bad_map", ("bad",), "map"),
            StepDef("gate", ("bad",), required={"bad": {"ok": True}}, when_unmet="fail"),
            StepDef("early", ("root",)),
        ],
    )
    run_id = start_run(conn, "cancel_race", {})
    finish_root(conn, "cancel_race", run_id, {})
    claim(conn, "cancel_race", run_id, [("bad", 0)], worker_id("V"))
    early_msg = task_rows(conn, run_id)[("early", 0)]["message_id"]
    conn.execute("select pgmq.set_vt('cancel_race', %s, 30)", (early_msg,))  # the worker's read
    ensure_worker(conn, "cancel_race", worker_id("S"))

    blocker = connect(db)
    blocker.execute("begin")
    blocker.execute('select 1 from pgmq."q_cancel_race" where msg_id = %s for update', (early_msg,))
    failure = Actor(db, cause, FAILURES[cause](run_id, "bad", 0, "scalar")).start()
    assert wait_until_waiting(conn, [failure.pid]) == {failure.pid}
    starter = Actor(
        db,
        "start_tasks",
        lambda c: c.execute(
            "select * from pgflow.start_tasks('cancel_race', %s, %s)", ([early_msg], worker_id("S"))
        ).fetchall(),
    ).start()
    assert wait_until_waiting(conn, [starter.pid]) == {starter.pid}
    blocker.execute("commit")
    blocker.close()

    errors = []
    for actor in (failure, starter):
        try:
            actor.join()
        except psycopg.Error as exc:
            errors.append(f"{actor.name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    assert errors == []
    if cause == "type-violation":
        assert_type_violation(conn, run_id, "bad", "bad_map", "string")
    steps = states(conn, run_id)
    failed_step = "gate" if cause == "condition" else "bad"
    assert steps[failed_step]["status"] == "failed"
    assert task_statuses(conn, run_id)[("early", 0)] == "cancelled"
    assert_failed_run_is_clean(conn, "cancel_race", run_id)
    assert_failed_run_frozen(conn, "cancel_race", run_id)


# -- sibling tasks exhausting their attempts at the same instant ------------------------------


@pytest.mark.parametrize("mode", ["fail", "skip", "skip-cascade"])
def test_sibling_tasks_exhausted_at_once(conn: psycopg.Connection, db: str, mode: str) -> None:
    """items (root map of 4, max_attempts 1) → after. Four workers fail their tasks at the
    same instant: the step fails (or is skipped) exactly once, with one event, one counter
    move and one task failed; the other three end cancelled (fail) or skipped."""
    install_realtime_stub(conn)
    build_flow(
        conn,
        "siblings",
        [
            StepDef("items", (), "map", max_attempts=1, when_exhausted=mode),
            StepDef("after", ("items",)),
        ],
    )
    run_id = start_run(conn, "siblings", [1, 2, 3, 4])
    for index in range(4):
        claim(conn, "siblings", run_id, [("items", index)], worker_id(f"w{index}"))

    run_together(db, {f"w{i}": failing(run_id, "items", i, f"error {i}") for i in range(4)})

    tasks = task_rows(conn, run_id)
    items = [tasks[("items", i)] for i in range(4)]
    failed = [row for row in items if row["status"] == "failed"]
    assert len(failed) == 1
    others = {row["status"] for row in items if row["status"] != "failed"}
    assert others == ({"cancelled"} if mode == "fail" else {"skipped"})
    step = states(conn, run_id)["items"]
    run = run_row(conn, run_id)
    assert step["error_message"] == failed[0]["error_message"]
    if mode == "fail":
        assert step["status"] == "failed"
        assert event_count(conn, run_id, "step:items:failed") == 1
        assert_failed_run_is_clean(conn, "siblings", run_id)
        assert_failed_run_frozen(conn, "siblings", run_id)
        return
    assert step["status"] == "skipped"
    assert step["skip_reason"] == "handler_failed"
    assert event_count(conn, run_id, "step:items:skipped") == 1
    if mode == "skip":
        # after runs without the skipped step in its input, then the run completes once
        [record] = read_and_start(conn, "siblings", vt=30)
        assert record["input"] == {}
        complete_at(conn, run_id, "after", 0, "done")
        assert run_row(conn, run_id)["output"] == {"after": "done"}
    else:
        assert states(conn, run_id)["after"]["skip_reason"] == "dependency_skipped"
        assert run_row(conn, run_id)["output"] is None
    run = run_row(conn, run_id)
    assert run["status"] == "completed"
    assert run["remaining_steps"] == 0
    assert event_count(conn, run_id, "run:completed") == 1
    assert run_queue_ids(conn, "siblings", run_id) == []
