"""delete_flow_and_data: drops the flow's queue and every row of the flow, and nothing else.

It must also work when the queue is already gone, and do nothing (without failing) for an
unknown flow, whatever characters its slug has.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tests.engine.helpers import (
    add_step,
    complete,
    create_flow,
    ensure_worker,
    fetch,
    pgmq_tables,
    queue_messages,
    queues,
    read_and_start,
    scalar,
    start_flow,
)

TABLES = ("flows", "steps", "deps", "runs", "step_states", "step_tasks")


def define(conn: psycopg.Connection, flow: str) -> None:
    """first -> second (single steps)."""
    create_flow(conn, flow)
    add_step(conn, flow, "first")
    add_step(conn, flow, "second", ["first"])


def rows_of(conn: psycopg.Connection, flow: str) -> dict[str, int]:
    """How many rows each definition/runtime table holds for ``flow``."""
    return {
        table: scalar(conn, f"select count(*) from pgflow.{table} where flow_slug = %s", flow)
        for table in TABLES
    }


def populate(conn: psycopg.Connection, flow: str) -> list[Any]:
    """Two runs: one with its first task completed (an archived message), one untouched."""
    runs = [start_flow(conn, flow, {"n": 1})["run_id"], start_flow(conn, flow, {"n": 2})["run_id"]]
    task = read_and_start(conn, flow)[0]
    complete(conn, task, {"done": True})
    return runs


def delete(conn: psycopg.Connection, flow: str) -> None:
    conn.execute("select pgflow.delete_flow_and_data(%s)", (flow,))


def test_deletes_the_flow_its_runs_and_its_queue(conn: psycopg.Connection) -> None:
    define(conn, "doomed")
    populate(conn, "doomed")
    counts = rows_of(conn, "doomed")
    assert all(counts[t] > 0 for t in TABLES), counts
    assert {"q_doomed", "a_doomed"} <= pgmq_tables(conn)

    delete(conn, "doomed")

    assert rows_of(conn, "doomed") == dict.fromkeys(TABLES, 0)
    assert queues(conn) == []
    assert {"q_doomed", "a_doomed"}.isdisjoint(pgmq_tables(conn))


def test_other_flows_and_workers_are_untouched(conn: psycopg.Connection) -> None:
    define(conn, "doomed")
    define(conn, "kept")
    populate(conn, "doomed")
    kept_runs = populate(conn, "kept")
    ensure_worker(conn, "doomed")
    kept_before = rows_of(conn, "kept")
    kept_messages = queue_messages(conn, "kept")
    states_query = (
        "select * from pgflow.step_states where flow_slug = 'kept' order by run_id, step_slug"
    )
    kept_states = fetch(conn, states_query)

    delete(conn, "doomed")

    assert rows_of(conn, "kept") == kept_before
    assert queue_messages(conn, "kept") == kept_messages
    assert fetch(conn, states_query) == kept_states
    assert sorted(r["run_id"] for r in fetch(conn, "select run_id from pgflow.runs")) == sorted(
        kept_runs
    )
    assert queues(conn) == ["kept"]
    assert fetch(conn, "select queue_name from pgflow.workers") == [{"queue_name": "doomed"}]


def test_works_when_the_queue_is_already_gone(conn: psycopg.Connection) -> None:
    define(conn, "doomed")
    populate(conn, "doomed")
    conn.execute("select pgmq.drop_queue('doomed')")
    assert queues(conn) == []

    delete(conn, "doomed")

    assert rows_of(conn, "doomed") == dict.fromkeys(TABLES, 0)


def test_unknown_flow_is_a_no_op(conn: psycopg.Connection) -> None:
    define(conn, "kept")
    populate(conn, "kept")
    before = rows_of(conn, "kept")
    tables = pgmq_tables(conn)
    conn.execute("create table public.y (id int)")

    for slug in ("missing", "", 'x"; drop table y; --', "q_kept; --", "kept'"):
        delete(conn, slug)

    assert rows_of(conn, "kept") == before
    assert pgmq_tables(conn) == tables
    assert queues(conn) == ["kept"]
    assert fetch(conn, "select to_regclass('public.y') is not null as present") == [
        {"present": True}
    ]


def test_drops_a_queue_without_a_flow(conn: psycopg.Connection) -> None:
    """The queue is dropped by name, as pgflow does, even if no flow row is left."""
    conn.execute("select pgmq.create('orphan')")
    delete(conn, "orphan")
    assert queues(conn) == []
    assert {"q_orphan", "a_orphan"}.isdisjoint(pgmq_tables(conn))


def test_mixed_case_slug(conn: psycopg.Connection) -> None:
    """pgmq lower-cases table names; the queue of a mixed-case flow still goes."""
    define(conn, "MixedCase")
    populate(conn, "MixedCase")
    delete(conn, "MixedCase")
    assert rows_of(conn, "MixedCase") == dict.fromkeys(TABLES, 0)
    assert queues(conn) == []
    assert {"q_mixedcase", "a_mixedcase"}.isdisjoint(pgmq_tables(conn))


def test_flow_can_be_defined_again_afterwards(conn: psycopg.Connection) -> None:
    define(conn, "again")
    populate(conn, "again")
    delete(conn, "again")

    define(conn, "again")
    run = start_flow(conn, "again", {"n": 3})
    messages = queue_messages(conn, "again")
    assert [m["message"] for m in messages] == [
        {"flow_slug": "again", "run_id": str(run["run_id"]), "step_slug": "first", "task_index": 0}
    ]
    assert rows_of(conn, "again") == {
        "flows": 1,
        "steps": 2,
        "deps": 1,
        "runs": 1,
        "step_states": 2,
        "step_tasks": 1,
    }


def test_deletes_within_the_callers_transaction(conn: psycopg.Connection, db: str) -> None:
    """Rolled back with the caller's transaction: queue and rows come back together."""
    define(conn, "kept")
    populate(conn, "kept")
    before = rows_of(conn, "kept")
    messages = queue_messages(conn, "kept")
    with psycopg.connect(db) as other:
        delete(other, "kept")
        assert rows_of(other, "kept") == dict.fromkeys(TABLES, 0)
        other.rollback()
    assert rows_of(conn, "kept") == before
    assert queue_messages(conn, "kept") == messages
