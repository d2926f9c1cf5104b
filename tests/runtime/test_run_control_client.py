"""Run control on the synchronous client (issue 13 items 6, 8, 9): listing runs, flows,
workers and tasks, cancel, pause/unpause of runs and flows, retry, resume and idempotent
starts, against live PostgreSQL; the documented errors as the generated error classes."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta

import psycopg
import pytest

from pgweave.client import Client
from pgweave.listing import parse_since
from pgweave.runs import RunState
from pgweave_client import errors
from tests.engine.helpers import ensure_worker, fetch, read_and_start
from tests.runtime.run_control import (
    TRACEBACK,
    completed_chain,
    failed_chain,
    make_flows,
    partly_mapped,
    waiting_run,
)


@pytest.fixture
def client(db: str, conn: psycopg.Connection) -> Client:
    make_flows(conn)
    return Client(db)


def test_list_runs_filters_newest_first_and_pages(client: Client, conn: psycopg.Connection) -> None:
    done = completed_chain(conn)
    failed = failed_chain(conn)
    waiting = [waiting_run(conn, {"i": i}) for i in range(3)]
    newest_first = [*reversed(waiting), failed, done]

    assert [r.run_id for r in client.list_runs()] == newest_first
    assert [r.run_id for r in client.list_runs(flow="chain")] == [failed, done]
    assert [r.run_id for r in client.list_runs(status="failed")] == [failed]
    assert [r.run_id for r in client.list_runs(flow="waiting", status="completed")] == []
    assert [r.run_id for r in client.list_runs(since=timedelta(hours=1))] == newest_first
    assert client.list_runs(since=timedelta(0)) == []  # nothing started at or after now()
    [first] = client.list_runs(flow="chain", status="completed")
    assert [r.run_id for r in client.list_runs(since=first.started_at)] == newest_first
    later = first.started_at + timedelta(microseconds=1)
    assert done not in [r.run_id for r in client.list_runs(since=later)]

    pages: list[uuid.UUID] = []
    page = client.list_runs(limit=2)
    while page:
        assert len(page) <= 2
        pages += [r.run_id for r in page]
        page = client.list_runs(limit=2, before=page[-1])
    assert pages == newest_first

    with pytest.raises(ValueError, match="limit must be at least 1"):
        client.list_runs(limit=0)
    with pytest.raises(ValueError, match="unknown run status 'done'"):
        client.list_runs(status="done")


def test_parse_since() -> None:
    assert parse_since("90s") == timedelta(seconds=90)
    assert parse_since("1h") == timedelta(hours=1)
    assert parse_since("2d") == timedelta(days=2)
    assert parse_since("1.5m") == timedelta(seconds=90)
    moment = parse_since("2026-12-06T10:00:00+00:00")
    assert isinstance(moment, datetime)
    assert moment.utcoffset() == timedelta(0)
    naive = parse_since("2026-12-06T10:00")
    assert isinstance(naive, datetime)
    assert naive.tzinfo is not None
    with pytest.raises(ValueError, match="neither a duration like 30s"):
        parse_since("yesterday")


def test_cancel_ends_a_wait_and_is_idempotent(client: Client, conn: psycopg.Connection) -> None:
    run_id = waiting_run(conn)
    seen: list[RunState] = []
    listening = threading.Event()

    def cancelled(state: RunState) -> bool:
        listening.set()  # called first with the state read after LISTEN
        return state.status == "cancelled"

    waiter = threading.Thread(
        target=lambda: seen.append(client.wait_until(run_id, cancelled, timeout=30))
    )
    waiter.start()
    assert listening.wait(30)
    assert client.run(run_id).status == "started"
    row = client.cancel_run(run_id, reason="not needed")
    waiter.join(timeout=30)
    assert row.status == "cancelled"
    assert row.cancel_reason == "not needed"
    [final] = seen  # the wait ended on the run:cancelled event
    assert final.status == "cancelled"
    assert final.is_terminal
    assert final.cancel_reason == "not needed"
    assert final.cancelled_at == row.cancelled_at
    assert final.step("only").status == "cancelled"
    again = client.cancel_run(str(run_id), reason="other")
    assert again.cancelled_at == row.cancelled_at
    assert again.cancel_reason == "not needed"
    assert [t.status for t in client.get_tasks(run_id)] == ["cancelled"]


def test_a_follower_sees_pause_unpause_and_cancel(client: Client, conn: psycopg.Connection) -> None:
    run_id = waiting_run(conn)
    names: list[str] = []
    paused: list[bool] = []
    listening = threading.Event()

    def until_ended(state: RunState) -> bool:
        listening.set()
        paused.append(state.paused_at is not None)
        return state.is_terminal

    waiter = threading.Thread(
        target=lambda: client.wait_until(
            run_id, until_ended, timeout=30, on_event=lambda event, _: names.append(event.event)
        )
    )
    waiter.start()
    assert listening.wait(30)
    client.pause_run(run_id)
    client.unpause_run(run_id)
    client.cancel_run(run_id)
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert names == ["run:paused", "run:unpaused", "run:cancelled"]
    assert paused == [False, True, False, False]


def test_cancel_errors(client: Client, conn: psycopg.Connection) -> None:
    done = completed_chain(conn)
    with pytest.raises(errors.RunNotCancellableError) as refused:
        client.cancel_run(done)
    assert refused.value.params == {"run_id": str(done), "status": "completed"}
    missing = uuid.uuid4()
    with pytest.raises(errors.RunNotFoundError, match=f"Run not found: {missing}"):
        client.cancel_run(missing)


def test_pause_and_unpause_a_run_and_a_flow(client: Client, conn: psycopg.Connection) -> None:
    run_id = waiting_run(conn)
    paused = client.pause_run(run_id)
    assert paused.paused_at is not None
    assert client.get_run(run_id).paused_at == paused.paused_at
    assert read_and_start(conn, "waiting") == []  # nothing of a paused run starts
    assert client.pause_run(run_id).paused_at == paused.paused_at  # idempotent
    assert client.unpause_run(run_id).paused_at is None
    assert client.get_run(run_id).paused_at is None

    flow = client.pause_flow("waiting")
    assert flow.flow_slug == "waiting"
    assert flow.paused_at is not None
    assert [f.flow.paused_at is not None for f in client.list_flows()] == [False, False, True]
    assert client.unpause_flow("waiting").paused_at is None
    [task] = read_and_start(conn, "waiting")
    assert str(task["run_id"]) == str(run_id)

    with pytest.raises(errors.UnknownFlowError, match="Flow not found: nope"):
        client.pause_flow("nope")
    with pytest.raises(errors.UnknownFlowError):
        client.unpause_flow("nope")
    with pytest.raises(errors.RunNotPausableError, match="it is completed"):
        client.pause_run(completed_chain(conn))


def test_retry_and_resume(client: Client, conn: psycopg.Connection) -> None:
    failed = failed_chain(conn, {"n": 7})
    retry = client.retry_run(failed)
    assert retry.run_id != failed
    assert retry.status == "started"
    assert retry.state.restart_of_run_id == failed
    assert retry.state.input == {"n": 7}
    assert retry.state.step("a").status == "started"
    client.cancel_run(retry.run_id)
    retry_of_retry = client.retry_run(str(retry.run_id))
    assert retry_of_retry.state.restart_of_run_id == retry.run_id
    client.cancel_run(retry_of_retry.run_id)

    mapped = partly_mapped(conn)
    resumed = client.resume_run(mapped)
    assert resumed.state.restart_of_run_id == mapped
    assert resumed.status == "started"
    statuses = [(t.task_index, t.status) for t in client.get_tasks(resumed.run_id)]
    assert statuses == [(0, "completed"), (1, "completed"), (2, "queued")]
    assert client.get_run(mapped).status == "failed"  # the source is never modified

    with pytest.raises(errors.RunNotRestartableError, match="it is started"):
        client.retry_run(resumed.run_id)
    with pytest.raises(errors.RunNotRestartableError, match="it is completed"):
        client.resume_run(completed_chain(conn))
    with pytest.raises(errors.RunNotFoundError):
        client.resume_run(uuid.uuid4())


def test_idempotent_start(client: Client, conn: psycopg.Connection) -> None:
    first = client.start_flow("waiting", {"order": 1}, idempotency_key="order-1")
    again = client.start_flow("waiting", {"order": 1}, idempotency_key="order-1")
    assert again.run_id == first.run_id
    assert again.state.idempotency_key == "order-1"
    assert [r.run_id for r in client.list_runs(flow="waiting")] == [first.run_id]
    with pytest.raises(errors.IdempotencyConflictError) as conflict:
        client.start_flow("waiting", {"order": 2}, idempotency_key="order-1")
    assert conflict.value.params["run_id"] == str(first.run_id)
    chosen = uuid.uuid4()
    by_id = client.start_flow("waiting", {"order": 3}, run_id=chosen)
    assert client.start_flow("waiting", {"order": 3}, run_id=chosen).run_id == by_id.run_id
    assert len(client.list_runs(flow="waiting")) == 2


def test_failure_details_of_tasks(client: Client, conn: psycopg.Connection) -> None:
    run_id = failed_chain(conn)
    [task] = client.get_tasks(run_id, status="failed")
    assert (task.step_slug, task.error_message) == ("a", "bad input 42")
    assert task.error_type == "ValueError"
    assert task.error_traceback == TRACEBACK
    assert client.get_tasks(run_id, status="completed") == []
    with pytest.raises(ValueError, match="unknown task status"):
        client.get_tasks(run_id, status="done")


def test_list_flows_and_workers(client: Client, conn: psycopg.Connection) -> None:
    waiting_run(conn)
    completed_chain(conn)
    summary = {f.flow.flow_slug: (f.step_count, f.active_runs) for f in client.list_flows()}
    assert summary == {"chain": (2, 0), "spread": (1, 0), "waiting": (1, 1)}

    alive = ensure_worker(conn, "waiting", uuid.uuid4())
    stopped = ensure_worker(conn, "spread", uuid.uuid4())
    fetch(conn, "select * from pgflow.mark_worker_stopped(%s)", stopped)
    listed = {w.worker.worker_id: w for w in client.list_workers()}
    assert alive in listed
    assert stopped not in listed
    assert listed[alive].heartbeat_age < timedelta(minutes=1)
    everyone = [w.worker.worker_id for w in client.list_workers(include_stopped=True)]
    assert alive in everyone
    assert stopped in everyone
    assert [w.worker.worker_id for w in client.list_workers(flow="waiting")] == [alive]
