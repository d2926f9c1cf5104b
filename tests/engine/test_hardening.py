"""Engine defects found by adversarial use (issue 15, items 1, 4, 5 and 6; issue 13, item 11).

- A task's start time never precedes its queue time, also when the starting transaction
  began before the task was queued (two real connections).
- add_step refuses duplicate dependencies, and re-adding a step never changes the flow.
- A flow slug pgmq cannot give a queue of its own (equal to another one ignoring case, or
  longer than pgmq's 47-character limit) is refused at definition time.
- fail_task on a still queued task pushes its message back by the retry delay.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgweave_client import PgflowClient, errors
from tests.engine.concurrency import Actor, wait_until_blocked
from tests.engine.helpers import (
    DEFAULT_WORKER,
    Row,
    add_step,
    archive_ids,
    calculate_retry_delay,
    complete,
    create_flow,
    ensure_worker,
    fail,
    fail_at,
    fetch,
    make_visible,
    queue_messages,
    queues,
    read_and_start,
    retry_delay_seconds,
    run_row,
    scalar,
    shape_step,
    start_flow,
    start_tasks,
    step_row,
    task_row,
)

# -- a task never starts before it was queued ----------------------------------------------


def begin_early(dsn: str) -> tuple[psycopg.Connection, Any]:
    """A connection inside a transaction that has fixed its now(); returns it and that now()."""
    early = psycopg.connect(dsn)
    began = scalar(early, "select now()")
    return early, began


def assert_started_at_queue_time(conn: psycopg.Connection, queued: Row, began: Any) -> None:
    task = task_row(conn, queued["run_id"], "a")
    assert task["status"] == "started"
    assert began < task["queued_at"]
    # the start cannot be dated before the queueing: it gets the queue time
    assert task["started_at"] == task["queued_at"]


def test_read_and_start_tasks_started_at_is_never_before_queued_at(
    conn: psycopg.Connection, db: str
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    ensure_worker(conn, "f")
    early, began = begin_early(db)
    with early:
        run = start_flow(conn, "f", {})  # committed after `early` fixed its now()
        queued = task_row(conn, run["run_id"], "a")
        started = fetch(
            early, "select * from pgflow.read_and_start_tasks('f', %s, 10)", DEFAULT_WORKER
        )
        early.commit()
    assert [t["run_id"] for t in started] == [run["run_id"]]
    assert_started_at_queue_time(conn, queued, began)
    # the worker completes it in a later transaction, as a worker does
    complete(conn, started[0], "done")
    assert run_row(conn, run["run_id"])["status"] == "completed"


def test_start_tasks_started_at_is_never_before_queued_at(
    conn: psycopg.Connection, db: str
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    ensure_worker(conn, "f")
    early, began = begin_early(db)
    with early:
        run = start_flow(conn, "f", {})
        queued = task_row(conn, run["run_id"], "a")
        # both polling phases of pgflow's protocol in the one early transaction
        ids = [r[0] for r in early.execute("select msg_id from pgmq.read('f', 30, 10)")]
        started = start_tasks(early, "f", ids, DEFAULT_WORKER)
        early.commit()
    assert len(started) == 1
    assert_started_at_queue_time(conn, queued, began)


def test_a_start_in_the_queueing_transaction_keeps_its_now(conn: psycopg.Connection) -> None:
    """As pgflow's pgTAP files run (one transaction, constant now()): started_at = now()."""
    with conn.transaction(force_rollback=True):
        create_flow(conn, "f")
        add_step(conn, "f", "a")
        run = start_flow(conn, "f", {})
        [task] = read_and_start(conn, "f")
        row = task_row(conn, run["run_id"], "a")
        assert row["started_at"] == row["queued_at"] == scalar(conn, "select now()")
        assert complete(conn, task, 1)["completed_at"] == row["started_at"]


# -- add_step: duplicate dependencies ------------------------------------------------------


def definition(conn: psycopg.Connection) -> dict[str, list[Row]]:
    """Every definition row (flows, steps, deps)."""
    return {
        table: fetch(conn, f"select * from pgflow.{table} order by 1, 2")
        for table in ("flows", "steps", "deps")
    }


@pytest.mark.parametrize(
    ("deps", "listed"),
    [
        (["a", "a"], "a"),
        (["c", "a", "c", "a", "c"], "c, a"),
        (["a", "c", "c"], "c"),
    ],
)
def test_add_step_refuses_duplicate_dependencies(
    conn: psycopg.Connection, deps: list[str], listed: str
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "c")
    before = definition(conn)
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        add_step(conn, "f", "b", deps)
    assert caught.value.sqlstate == "P0001"
    assert caught.value.diag.message_primary == (
        f'Step "b" lists a dependency more than once: {listed}'
    )
    assert definition(conn) == before


def test_duplicate_dependencies_are_refused_for_an_existing_step_too(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    before = definition(conn)
    with pytest.raises(
        psycopg.errors.RaiseException, match='Step "b" lists a dependency more than once: a\n'
    ):
        add_step(conn, "f", "b", ["a", "a"])
    assert definition(conn) == before


def test_a_shape_with_duplicate_dependencies_leaves_no_flow(conn: psycopg.Connection) -> None:
    shape = {"steps": [shape_step("a"), shape_step("b", ["a", "a"])]}
    with pytest.raises(psycopg.errors.RaiseException, match='Step "b" lists a dependency'):
        conn.execute("select pgflow.ensure_flow_compiled('f', %s)", (Jsonb(shape),))
    assert definition(conn) == {"flows": [], "steps": [], "deps": []}
    assert queues(conn) == []


def test_the_client_maps_the_new_definition_errors(conn: psycopg.Connection) -> None:
    client = PgflowClient(conn)
    client.create_flow("CaseFlow")
    client.add_step("CaseFlow", "a")
    with pytest.raises(errors.DuplicateDependenciesError) as duplicate:
        client.add_step("CaseFlow", "b", ["a", "a"])
    assert duplicate.value.params == {"step_slug": "b", "deps": "a"}
    with pytest.raises(errors.FlowSlugCaseConflictError) as conflict:
        client.create_flow("caseflow")
    assert conflict.value.params == {"flow_slug": "caseflow", "existing_slug": "CaseFlow"}
    with pytest.raises(errors.FlowSlugTooLongError) as too_long:
        client.create_flow("x" * 60)
    assert too_long.value.params == {"flow_slug": "x" * 60, "length": "60", "limit": "47"}


# -- add_step: re-adding a step changes nothing --------------------------------------------


def test_re_adding_a_step_adds_no_dependency(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "c")
    [first] = fetch(conn, "select * from pgflow.add_step('f', 'b', array['a'])")
    before = definition(conn)
    [again] = fetch(conn, "select * from pgflow.add_step('f', 'b', array['a', 'c'])")
    assert again == first
    assert first["deps_count"] == 1
    assert definition(conn) == before

    # the flow still runs to its end: b waits for a only
    ensure_worker(conn, "f")
    run = start_flow(conn, "f", {})
    for task in read_and_start(conn, "f", qty=2):
        complete(conn, task, task["step_slug"])
    [b] = read_and_start(conn, "f")
    assert (b["step_slug"], b["input"]) == ("b", {"a": "a"})
    complete(conn, b, "b")
    assert run_row(conn, run["run_id"])["status"] == "completed"


def test_re_adding_a_step_cannot_close_a_cycle(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    before = definition(conn)
    [again] = fetch(conn, "select * from pgflow.add_step('f', 'a', array['b'])")
    assert again["deps_count"] == 0
    assert definition(conn) == before
    run = start_flow(conn, "f", {})
    assert step_row(conn, run["run_id"], "a")["status"] == "started"


def test_re_adding_a_step_names_no_unknown_dependency(conn: psycopg.Connection) -> None:
    """The existing step is returned before its (ignored) dependencies are looked up."""
    create_flow(conn, "f")
    [first] = fetch(conn, "select * from pgflow.add_step('f', 'a')")
    [again] = fetch(conn, "select * from pgflow.add_step('f', 'a', array['ghost'])")
    assert again == first
    assert fetch(conn, "select * from pgflow.deps") == []


# -- flow slugs pgmq cannot keep apart -----------------------------------------------------


def test_a_slug_equal_ignoring_case_is_refused(conn: psycopg.Connection) -> None:
    create_flow(conn, "CaseFlow")
    conn.execute("select pgmq.send('CaseFlow', '{\"keep\": 1}')")
    before = definition(conn)
    for slug in ("caseflow", "CASEFLOW", "caseFlow"):
        with pytest.raises(psycopg.errors.RaiseException) as caught:
            create_flow(conn, slug)
        assert caught.value.sqlstate == "P0001"
        assert caught.value.diag.message_primary == (
            f'Flow slug "{slug}" differs only in case from the existing flow "CaseFlow"'
            " (pgmq queue names ignore case)"
        )
    assert definition(conn) == before
    assert queues(conn) == ["CaseFlow"]
    assert [m["message"] for m in queue_messages(conn, "caseflow")] == [{"keep": 1}]
    # the same slug again is still the idempotent re-creation
    create_flow(conn, "CaseFlow")
    assert definition(conn) == before


def test_ensure_flow_compiled_refuses_a_slug_equal_ignoring_case(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "CaseFlow")
    before = definition(conn)
    shape = {"steps": [shape_step("a")]}
    with pytest.raises(psycopg.errors.RaiseException, match="differs only in case"):
        conn.execute("select pgflow.ensure_flow_compiled('caseflow', %s)", (Jsonb(shape),))
    assert definition(conn) == before


def test_concurrent_definitions_differing_in_case_leave_one_flow(
    conn: psycopg.Connection, db: str
) -> None:
    """The second definition waits for the first one's commit, then is refused."""

    def define(slug: str) -> Any:
        def act(actor_conn: psycopg.Connection) -> Any:
            return actor_conn.execute("select flow_slug from pgflow.create_flow(%s)", (slug,))

        return act

    first = Actor(db, "first", define("CaseFlow"), in_transaction=True).start()
    assert first.holding.wait(30)
    second = Actor(db, "second", define("caseflow")).start()
    wait_until_blocked(conn, second.pid)
    first.release.set()
    first.join()
    with pytest.raises(psycopg.errors.RaiseException, match='existing flow "CaseFlow"'):
        second.join()
    assert [f["flow_slug"] for f in fetch(conn, "select * from pgflow.flows")] == ["CaseFlow"]
    assert queues(conn) == ["CaseFlow"]


@pytest.mark.parametrize("length", [48, 64, 128])
def test_a_slug_longer_than_a_pgmq_queue_name_is_refused(
    conn: psycopg.Connection, length: int
) -> None:
    slug = "f" * length
    assert scalar(conn, "select pgflow.is_valid_slug(%s)", slug) is True
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        create_flow(conn, slug)
    assert caught.value.diag.message_primary == (
        f'Flow slug "{slug}" is {length} characters long,'
        " but pgmq queue names allow at most 47 characters"
    )
    assert definition(conn) == {"flows": [], "steps": [], "deps": []}
    assert queues(conn) == []


def test_the_limit_is_pgmqs_own(conn: psycopg.Connection) -> None:
    """47 characters is exactly what the installed pgmq accepts."""
    create_flow(conn, "f" * 47)
    assert queues(conn) == ["f" * 47]
    with pytest.raises(psycopg.errors.RaiseException, match="too long"):
        conn.execute("select pgmq.create(%s)", ("g" * 48,))


# -- fail_task on a queued task -------------------------------------------------------------


def test_failing_a_never_started_task_delays_its_message_by_base_delay(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f", base_delay=7)
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", [1, 2])
    [first] = read_and_start(conn, "f")
    queued = task_row(conn, run["run_id"], "m", 1)
    assert scalar(
        conn, "select vt <= clock_timestamp() from pgmq.q_f where msg_id = %s", queued["message_id"]
    )

    assert fail(conn, {**first, "task_index": 1}, "not started") == queued

    assert task_row(conn, run["run_id"], "m", 1) == queued
    assert retry_delay_seconds(conn, "f", queued["message_id"]) == (
        calculate_retry_delay(conn, 7, 0)
    )
    # the started sibling's message is untouched by it
    assert task_row(conn, run["run_id"], "m", 0)["status"] == "started"


def test_failing_a_requeued_task_delays_it_by_its_attempts_backoff(
    conn: psycopg.Connection,
) -> None:
    create_flow(conn, "f", base_delay=3, max_attempts=5)
    add_step(conn, "f", "a")
    run = start_flow(conn, "f", {})
    [task] = read_and_start(conn, "f")
    fail(conn, task, "first")  # requeued after attempt 1
    make_visible(conn, "f")
    queued = task_row(conn, run["run_id"], "a")
    assert (queued["status"], queued["attempts_count"]) == ("queued", 1)

    [returned] = fail_at(conn, run["run_id"], "a", 0, "while queued")

    assert returned == queued == task_row(conn, run["run_id"], "a")
    assert retry_delay_seconds(conn, "f", queued["message_id"]) == (
        calculate_retry_delay(conn, 3, 1)
    )


def test_failing_a_finished_task_moves_no_message(conn: psycopg.Connection) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "m", step_type="map")
    run = start_flow(conn, "f", [1, 2])
    tasks = read_and_start(conn, "f", qty=2)
    complete(conn, tasks[0], "one")
    done = task_row(conn, run["run_id"], "m", 0)
    assert done["message_id"] in archive_ids(conn, "f")
    assert fail(conn, tasks[0], "late") == done
    assert done["message_id"] in archive_ids(conn, "f")
