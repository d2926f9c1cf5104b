"""prune_data_older_than_batched: bounded batches of finished runs (with their states and
tasks), silent workers and archived messages; runs in progress, rows held by another
transaction and recent data are kept; bad arguments change nothing; admins only."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.engine.helpers import archived_messages, fetch
from tests.engine.logins import Connect, refused
from tests.engine.test_maintenance import (
    age_run,
    completed_run,
    counts,
    in_progress_run,
    two_step_flow,
)

ENGINE_TABLES = ["pgflow.runs", "pgflow.step_states", "pgflow.step_tasks", "pgflow.workers"]


def prune_batched(conn: psycopg.Connection, *args: Any) -> dict[str, int]:
    """Rows removed per table by one call (arguments after the interval as given)."""
    placeholders = ", ".join(["%s::interval"] + ["%s"] * (len(args) - 1))
    rows = conn.execute(
        f"select * from pgflow.prune_data_older_than_batched({placeholders})", args
    ).fetchall()
    return {str(name): int(n) for name, n in rows}


def old_runs(conn: psycopg.Connection, slug: str, n: int) -> list[Any]:
    """``n`` completed runs of ``slug`` moved 30 days into the past; their ids."""
    ids = [completed_run(conn, slug)["run_id"] for _ in range(n)]
    for run_id in ids:
        age_run(conn, run_id, 30)
    return ids


def test_each_call_removes_at_most_one_batch_of_each_kind(conn: psycopg.Connection) -> None:
    two_step_flow(conn, "f")
    old = old_runs(conn, "f", 5)
    recent = completed_run(conn, "f")
    running = in_progress_run(conn, "f")
    age_run(conn, running["run_id"], 30)

    calls = [prune_batched(conn, "7 days", 2, 1) for _ in range(6)]

    # runs come with their 2 states and 2 tasks; archives hold 2 messages per old run
    assert [c["pgflow.runs"] for c in calls] == [2, 2, 1, 0, 0, 0]
    assert [c["pgflow.step_states"] for c in calls] == [4, 4, 2, 0, 0, 0]
    assert [c["pgflow.step_tasks"] for c in calls] == [4, 4, 2, 0, 0, 0]
    assert [c["pgmq.a_f"] for c in calls] == [2, 2, 2, 2, 2, 0]
    assert list(calls[0]) == [*ENGINE_TABLES, "pgmq.a_f"]
    assert all(counts(conn, run_id) == (0, 0, 0) for run_id in old)
    assert counts(conn, running["run_id"]) == (1, 2, 2)
    assert counts(conn, recent["run_id"]) == (1, 2, 2)
    # the 30-day-old message of the run in progress stays, as do the recent run's
    assert sorted(m["message"]["run_id"] for m in archived_messages(conn, "f")) == sorted(
        [str(running["run_id"])] + [str(recent["run_id"])] * 2
    )


def test_without_a_batch_limit_one_call_prunes_everything_old(
    conn: psycopg.Connection,
) -> None:
    two_step_flow(conn, "f")
    two_step_flow(conn, "g")
    old = old_runs(conn, "f", 3) + old_runs(conn, "g", 2)
    conn.execute(
        "insert into pgflow.workers (worker_id, queue_name, function_name, last_heartbeat_at)"
        " select gen_random_uuid(), 'f', 'fn', now() - interval '20 days'"
        " from generate_series(1, 3)"
    )

    removed = prune_batched(conn, "7 days", 2, None)

    assert removed == {
        "pgflow.runs": 5,
        "pgflow.step_states": 10,
        "pgflow.step_tasks": 10,
        "pgflow.workers": 3,
        "pgmq.a_f": 6,
        "pgmq.a_g": 4,
    }
    assert all(counts(conn, run_id) == (0, 0, 0) for run_id in old)
    assert archived_messages(conn, "f") == archived_messages(conn, "g") == []
    assert prune_batched(conn, "7 days") == dict.fromkeys(
        [*ENGINE_TABLES, "pgmq.a_f", "pgmq.a_g"], 0
    )


def test_the_one_argument_function_prunes_through_the_batches(
    conn: psycopg.Connection,
) -> None:
    two_step_flow(conn, "f")
    old = old_runs(conn, "f", 1)
    # more finished runs than one batch of the default size (bare rows are enough here)
    conn.execute(
        "insert into pgflow.runs (flow_slug, status, input, started_at, completed_at)"
        " select 'f', 'completed', '{}', now() - interval '31 days', now() - interval '30 days'"
        " from generate_series(1, 1500)"
    )
    recent = completed_run(conn, "f")

    conn.execute("select pgflow.prune_data_older_than('7 days')")

    assert [r["run_id"] for r in fetch(conn, "select run_id from pgflow.runs")] == [
        recent["run_id"]
    ]
    assert counts(conn, old[0]) == (0, 0, 0)
    assert len(archived_messages(conn, "f")) == 2


def test_a_run_held_by_another_transaction_is_skipped_not_waited_for(
    conn: psycopg.Connection, db: str
) -> None:
    two_step_flow(conn, "f")
    held, free = old_runs(conn, "f", 2)
    conn.execute("set lock_timeout = '5s'")  # a wait would fail the call, not hang it
    with psycopg.connect(db) as other:  # e.g. a retry_run of the held run, not yet committed
        other.execute("select 1 from pgflow.runs where run_id = %s for update", (held,))

        removed = prune_batched(conn, "7 days", 10, None)

        assert removed["pgflow.runs"] == 1
        assert counts(conn, free) == (0, 0, 0)
        assert counts(conn, held) == (1, 2, 2)
        other.commit()
    assert prune_batched(conn, "7 days", 10, None)["pgflow.runs"] == 1
    assert counts(conn, held) == (0, 0, 0)


def test_a_do_block_can_commit_after_every_batch(conn: psycopg.Connection) -> None:
    two_step_flow(conn, "f")
    old = old_runs(conn, "f", 5)
    conn.execute("create table batch_log (n bigint, xid xid8)")

    conn.execute(
        """
        do $$
        declare
          removed bigint;
        begin
          loop
            select sum(rows_deleted) into removed
            from pgflow.prune_data_older_than_batched('7 days', 2);
            insert into batch_log values (removed, pg_current_xact_id());
            commit;
            exit when removed = 0;
          end loop;
        end
        $$
        """
    )

    log = fetch(conn, "select n, xid::text as xid from batch_log")
    # 2 + 2 + 1 runs (5 rows each with their states and tasks) beside 2 archived messages
    # per batch (10 in all), then an empty batch; every batch in its own transaction
    assert [r["n"] for r in log] == [12, 12, 7, 2, 2, 0]
    assert len({r["xid"] for r in log}) == len(log)
    assert all(counts(conn, run_id) == (0, 0, 0) for run_id in old)


@pytest.mark.parametrize(
    ("batch_size", "max_batches", "message"),
    [
        (0, 1, "batch_size must be a positive integer (got 0)"),
        (None, 1, "batch_size must be a positive integer (got null)"),
        (10, 0, "max_batches must be a positive integer or null (got 0)"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(
    conn: psycopg.Connection, batch_size: int | None, max_batches: int, message: str
) -> None:
    two_step_flow(conn, "f")
    [run_id] = old_runs(conn, "f", 1)

    with pytest.raises(psycopg.errors.RaiseException) as raised:
        prune_batched(conn, "7 days", batch_size, max_batches)

    assert raised.value.diag.message_primary == message
    assert counts(conn, run_id) == (1, 2, 2)
    assert len(archived_messages(conn, "f")) == 2


def test_only_admins_may_prune_in_batches(conn: psycopg.Connection, connect_as: Connect) -> None:
    two_step_flow(conn, "f")
    [run_id] = old_runs(conn, "f", 1)
    for role in ("pgflow_worker", "pgflow_client", None):
        refused(connect_as(role), "select * from pgflow.prune_data_older_than_batched('1 day')")
    assert counts(conn, run_id) == (1, 2, 2)

    admin = connect_as("pgflow_admin")
    removed = prune_batched(admin, "1 day")

    assert removed["pgflow.runs"] == 1
    assert counts(conn, run_id) == (0, 0, 0)
