"""The client: starting runs, reading them, waiting and following events (LISTEN/NOTIFY)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgweave.client import Client, RunNotFoundError, RunTimeoutError
from pgweave.compile import compile_statements
from pgweave.dsl import Flow
from pgweave.runs import RunEvent, RunState
from pgweave_client import errors
from tests.engine.helpers import complete, read_and_start
from tests.runtime.processes import wait_for


def h(value: Any) -> Any:
    return value


CHAIN = Flow[Any]("chain").step("a", h).step("b", h, depends_on=["a"])


@pytest.fixture
def chain(conn: psycopg.Connection) -> Flow[Any]:
    for statement in compile_statements(CHAIN):
        conn.execute(statement.encode())
    return CHAIN


def listening(conn: psycopg.Connection, run_id: uuid.UUID) -> Callable[[], bool]:
    """True once some session LISTENs on the run's channel."""

    def check() -> bool:
        row = conn.execute(
            "select count(*) from pg_stat_activity where query ilike %s",
            (f'listen "pgflow:run:{run_id}"%',),
        ).fetchone()
        return row is not None and row[0] > 0

    return check


def work_in_background(
    db: str, run_id: uuid.UUID, outputs: dict[str, Any]
) -> Iterator[threading.Thread]:
    """A thread that waits for a listener, then completes the flow's tasks one by one."""

    def drive() -> None:
        with psycopg.connect(db, autocommit=True) as worker:
            wait_for(listening(worker, run_id), 30, "the client to listen")
            for _ in range(len(outputs)):
                for task in read_and_start(worker, "chain", qty=10):
                    complete(worker, task, outputs[task["step_slug"]])

    thread = threading.Thread(target=drive)
    thread.start()
    yield thread
    thread.join(30)


def test_start_flow_returns_a_handle_with_states(db: str, chain: Flow[Any]) -> None:
    client = Client(db)
    run = client.start_flow(chain, {"n": 1})
    assert run.status == "started"
    assert run.state.input == {"n": 1}
    assert list(run.state.steps) == ["a", "b"]
    assert run.state.step("a").status == "started"
    assert run.state.step("b").status == "created"
    again = client.get_run(run.run_id)
    assert again.run_id == run.run_id
    assert again.step("a").initial_tasks == 1
    chosen = uuid.uuid4()
    assert client.start_flow("chain", {}, run_id=chosen).run_id == chosen


def test_wait_is_driven_by_events(db: str, chain: Flow[Any]) -> None:
    client = Client(db)
    run = client.start_flow(chain, {"n": 1})
    seen: list[str] = []
    for _thread in work_in_background(db, run.run_id, {"a": {"x": 1}, "b": [2]}):
        final = run.wait(timeout=30, on_event=lambda e, _s: seen.append(e.event))
    assert final.status == "completed"
    assert final.output == {"b": [2]}
    assert final.step("a").output == {"x": 1}
    assert seen == ["step:a:completed", "step:b:started", "step:b:completed", "run:completed"]


def test_events_are_yielded_in_order_until_the_run_ends(db: str, chain: Flow[Any]) -> None:
    client = Client(db)
    run = client.start_flow(chain, None)
    for _thread in work_in_background(db, run.run_id, {"a": 1, "b": 2}):
        events = list(run.events(timeout=30))
    assert [(e.event, e.event_type, e.step_slug, e.status) for e in events] == [
        ("step:a:completed", "step:completed", "a", "completed"),
        ("step:b:started", "step:started", "b", "started"),
        ("step:b:completed", "step:completed", "b", "completed"),
        ("run:completed", "run:completed", None, "completed"),
    ]
    assert all(e.run_id == run.run_id for e in events)


def test_a_run_finished_before_waiting_is_seen_by_the_re_read(
    db: str, conn: psycopg.Connection, chain: Flow[Any]
) -> None:
    client = Client(db)
    run = client.start_flow(chain, None)
    for _ in range(2):
        for task in read_and_start(conn, "chain"):
            complete(conn, task, "done")
    final = run.wait(timeout=5)
    assert (final.status, final.output) == ("completed", {"b": "done"})


def test_events_of_a_run_that_ended_before_following_are_replayed(
    db: str, conn: psycopg.Connection, chain: Flow[Any]
) -> None:
    client = Client(db)
    run = client.start_flow(chain, None)
    for _ in range(2):
        for task in read_and_start(conn, "chain"):
            complete(conn, task, "done")
    # the handle knows the state start_flow returned: everything after it is replayed
    events = list(run.events(timeout=5))
    assert [(e.event, e.payload.get("replayed")) for e in events] == [
        ("step:a:completed", True),
        ("step:b:started", True),
        ("step:b:completed", True),
        ("run:completed", True),
    ]
    assert events[-1].payload["output"] == {"b": "done"}
    # by id alone nothing is known: the stream is the end of the run
    [end] = list(client.events(run.run_id, timeout=5))
    assert (end.event, end.status, end.payload["output"]) == (
        "run:completed",
        "completed",
        {"b": "done"},
    )


def test_a_wait_on_a_handle_replays_what_happened_since_its_state(
    db: str, conn: psycopg.Connection, chain: Flow[Any]
) -> None:
    """A run that ends before the wait subscribes (a fast worker) still reaches on_event:
    `pgweave start --wait` prints its progress from it."""
    client = Client(db)
    run = client.start_flow(chain, None)
    for _ in range(2):
        for task in read_and_start(conn, "chain"):
            complete(conn, task, "done")
    seen: list[tuple[str, str]] = []
    final = run.wait(timeout=5, on_event=lambda e, s: seen.append((e.event, s.status)))
    assert final.status == "completed"
    assert seen == [
        ("step:a:completed", "completed"),
        ("step:b:started", "completed"),
        ("step:b:completed", "completed"),
        ("run:completed", "completed"),
    ]
    # by id alone nothing is known, so nothing is replayed
    seen.clear()
    client.wait(run.run_id, timeout=5, on_event=lambda e, s: seen.append((e.event, s.status)))
    assert seen == []


def test_truncated_events_trigger_a_re_read(db: str, chain: Flow[Any]) -> None:
    big = {"blob": "x" * 20000}
    client = Client(db)
    run = client.start_flow(chain, None)
    truncated: list[bool] = []
    for _thread in work_in_background(db, run.run_id, {"a": big, "b": big}):
        final = run.wait(timeout=30, on_event=lambda e, _s: truncated.append(e.truncated))
    assert True in truncated
    assert final.output == {"b": big}
    assert final.step("a").output == big


def test_timeout_and_unknown_runs(db: str, chain: Flow[Any]) -> None:
    client = Client(db)
    run = client.start_flow(chain, None)
    with pytest.raises(RunTimeoutError) as caught:
        run.wait(timeout=0.3)
    assert caught.value.state is not None
    assert caught.value.state.status == "started"
    with pytest.raises(RunNotFoundError):
        client.get_run(uuid.uuid4())
    with pytest.raises(errors.FlowNotFoundError):
        client.start_flow("nope", {})


def test_wait_for_step(db: str, chain: Flow[Any]) -> None:
    client = Client(db)
    run = client.start_flow(chain, None)
    for _thread in work_in_background(db, run.run_id, {"a": 1, "b": 2}):
        state = run.wait_for_step("b", status={"started", "completed"}, timeout=30)
        assert state.step("a").status == "completed"
        run.wait(timeout=30)


# -- applying events to states (pure) ------------------------------------------------------


def _state() -> RunState:
    return RunState.from_json(
        {
            "run": {
                "run_id": "00000000-0000-0000-0000-000000000001",
                "flow_slug": "f",
                "status": "started",
                "input": 1,
                "remaining_steps": 2,
                "started_at": "2026-01-01T00:00:00+00:00",
            },
            "steps": [
                {"step_slug": "a", "status": "started", "remaining_tasks": 1, "initial_tasks": 1},
                {"step_slug": "b", "status": "created", "remaining_deps": 1},
            ],
        }
    )


def _event(name: str, **payload: Any) -> RunEvent:
    return RunEvent(name, {"run_id": "00000000-0000-0000-0000-000000000001", **payload})


def test_apply_moves_forward_only_and_is_idempotent() -> None:
    state = _state()
    done = _event(
        "step:a:completed",
        step_slug="a",
        status="completed",
        output=5,
        completed_at="2026-01-01T00:00:01+00:00",
    )
    after = state.apply(done)
    assert after.step("a").status == "completed"
    assert after.step("a").output == 5
    assert after.step("a").completed_at is not None
    assert after.apply(done) == after
    # an older event arriving late never moves a status back
    stale = _event("step:a:started", step_slug="a", status="started", remaining_tasks=1)
    assert after.apply(stale) == after
    finished = after.apply(_event("run:completed", status="completed", output={"b": 1}))
    assert (finished.status, finished.output, finished.is_terminal) == (
        "completed",
        {"b": 1},
        True,
    )
    assert finished.apply(_event("run:failed", status="failed")) == finished
    failed = state.apply(_event("run:failed", status="failed", error_message="boom"))
    assert (failed.status, failed.error_message) == ("failed", "boom")
    assert RunEvent.from_notify(
        '{"event": "run:started", "payload": {"truncated": true}}'
    ).truncated
