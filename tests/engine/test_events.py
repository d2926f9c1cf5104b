"""Engine events: exact names, payload keys and order (contract 3.2), once per transition.

With Supabase's realtime.send present (here a stub recording each call) every event is one
call; on plain PostgreSQL the same events arrive as NOTIFY on the run's topic, where
payloads over NOTIFY's 8000-byte limit lose their large values instead of failing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgweave_generator.ir import EventIR
from pgweave_generator.render.event_helpers import helper_stem
from tests.engine.event_catalogue import catalogue, catalogue_ir
from tests.engine.helpers import (
    CASCADE_SKIPPED_KEYS,
    RUN_COMPLETED_KEYS,
    RUN_FAILED_KEYS,
    RUN_STARTED_KEYS,
    STEP_COMPLETED_KEYS,
    STEP_FAILED_KEYS,
    STEP_STARTED_KEYS,
    TASKLESS_COMPLETED_KEYS,
    Row,
    add_step,
    complete,
    create_flow,
    fail,
    fetch,
    install_realtime_stub,
    notify_events,
    read_and_start,
    realtime_events,
    run_row,
    scalar,
    start_flow,
    states,
    take_events,
)


def names(events: list[Row]) -> list[str]:
    """The event names (realtime.send's second argument)."""
    return [event["event"] for event in events]


def by_name(events: list[Row]) -> dict[str, dict[str, Any]]:
    """Payloads keyed by event name (names are unique within the checked calls)."""
    payloads = {event["event"]: event["payload"] for event in events}
    assert len(payloads) == len(events)
    return payloads


@pytest.fixture
def rt(conn: psycopg.Connection) -> psycopg.Connection:
    """The test connection with the realtime stub installed."""
    install_realtime_stub(conn)
    return conn


@pytest.fixture
def listener(db: str) -> Iterator[psycopg.Connection]:
    """A second connection that LISTENs (channels are added by each test)."""
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


def listen(listener: psycopg.Connection, run_id: uuid.UUID) -> None:
    """LISTEN on a run's topic."""
    listener.execute(f'listen "pgflow:run:{run_id}"')


def start_listened(
    conn: psycopg.Connection, listener: psycopg.Connection, flow: str, flow_input: Any
) -> uuid.UUID:
    """start_flow with a run_id chosen beforehand, on whose topic ``listener`` LISTENs."""
    run_id = uuid.uuid4()
    listen(listener, run_id)
    [_run] = fetch(
        conn, "select * from pgflow.start_flow(%s, %s, %s)", flow, Jsonb(flow_input), run_id
    )
    return run_id


# -- realtime.send path ---------------------------------------------------------------------


def test_start_flow_sends_run_started_then_step_started(rt: psycopg.Connection) -> None:
    create_flow(rt, "f")
    add_step(rt, "f", "a")
    add_step(rt, "f", "b", ["a"])

    run = start_flow(rt, "f", {"k": "v"})
    events = take_events(rt)

    assert names(events) == ["run:started", "step:a:started"]
    payloads = by_name(events)
    started = payloads["run:started"]
    assert set(started) == RUN_STARTED_KEYS
    assert started["event_type"] == "run:started"
    assert started["run_id"] == str(run["run_id"])
    assert started["flow_slug"] == "f"
    assert started["input"] == {"k": "v"}
    assert started["status"] == "started"
    assert started["remaining_steps"] == 2
    step = payloads["step:a:started"]
    assert set(step) == STEP_STARTED_KEYS
    assert step["event_type"] == "step:started"
    assert step["run_id"] == str(run["run_id"])
    assert step["step_slug"] == "a"
    assert step["status"] == "started"
    assert (step["remaining_tasks"], step["remaining_deps"]) == (1, 0)
    stored = rt.execute(
        "select to_jsonb(r.started_at) #>> '{}', to_jsonb(s.started_at) #>> '{}'"
        " from pgflow.runs r join pgflow.step_states s using (run_id)"
        " where r.run_id = %s and s.step_slug = 'a'",
        (run["run_id"],),
    ).fetchone()
    assert stored == (started["started_at"], step["started_at"])


def test_completing_steps_sends_completion_then_what_it_unlocks(rt: psycopg.Connection) -> None:
    create_flow(rt, "f")
    add_step(rt, "f", "a")
    add_step(rt, "f", "m", ["a"], step_type="map")
    run = start_flow(rt, "f", {})
    take_events(rt)

    (task_a,) = read_and_start(rt, "f")
    complete(rt, task_a, [1, 2])
    after_a = take_events(rt)
    for task in read_and_start(rt, "f", qty=2):
        complete(rt, task, task["input"] * 10)
    after_m = take_events(rt)

    assert names(after_a) == ["step:a:completed", "step:m:started"]
    a_done = by_name(after_a)["step:a:completed"]
    assert set(a_done) == STEP_COMPLETED_KEYS
    assert (a_done["event_type"], a_done["status"], a_done["output"]) == (
        "step:completed",
        "completed",
        [1, 2],
    )
    m_started = by_name(after_a)["step:m:started"]
    assert (m_started["remaining_tasks"], m_started["remaining_deps"]) == (2, 0)
    assert names(after_m) == ["step:m:completed", "run:completed"]
    assert by_name(after_m)["step:m:completed"]["output"] == [10, 20]
    run_done = by_name(after_m)["run:completed"]
    assert set(run_done) == RUN_COMPLETED_KEYS
    assert run_done["event_type"] == "run:completed"
    assert run_done["status"] == "completed"
    assert run_done["flow_slug"] == "f"
    assert run_done["output"] == {"m": [10, 20]}
    assert run_done["output"] == run_row(rt, run["run_id"])["output"]


def test_start_flow_event_order_across_cascades(rt: psycopg.Connection) -> None:
    create_flow(rt, "f")
    add_step(rt, "f", "solo")
    add_step(rt, "f", "each", step_type="map")
    add_step(rt, "f", "after", ["each"])
    add_step(rt, "f", "cond", required_input_pattern={"x": 1})

    run = start_flow(rt, "f", [])
    events = take_events(rt)

    assert names(events) == [
        "run:started",
        "step:cond:skipped",
        "step:each:completed",
        "step:after:started",
        "step:solo:started",
    ]
    payloads = by_name(events)
    skipped = payloads["step:cond:skipped"]
    assert set(skipped) == CASCADE_SKIPPED_KEYS
    assert skipped == {
        **skipped,
        "event_type": "step:skipped",
        "run_id": str(run["run_id"]),
        "flow_slug": "f",
        "step_slug": "cond",
        "status": "skipped",
        "skip_reason": "condition_unmet",
    }
    taskless = payloads["step:each:completed"]
    assert set(taskless) == TASKLESS_COMPLETED_KEYS
    assert taskless["output"] == []
    assert (taskless["remaining_tasks"], taskless["remaining_deps"]) == (0, 0)
    assert taskless["started_at"] == taskless["completed_at"]


def test_run_completing_inside_start_flow(rt: psycopg.Connection) -> None:
    create_flow(rt, "f")
    add_step(rt, "f", "m", step_type="map")

    start_flow(rt, "f", [])

    assert names(take_events(rt)) == ["run:started", "step:m:completed", "run:completed"]


def test_unmet_condition_with_fail_sends_step_then_run_failed(rt: psycopg.Connection) -> None:
    create_flow(rt, "f")
    add_step(rt, "f", "guard", required_input_pattern={"ok": True}, when_unmet="fail")

    run = start_flow(rt, "f", {"ok": False})
    events = take_events(rt)

    assert names(events) == ["run:started", "step:guard:failed", "run:failed"]
    payloads = by_name(events)
    step = payloads["step:guard:failed"]
    assert set(step) == STEP_FAILED_KEYS
    assert (step["event_type"], step["status"], step["error_message"]) == (
        "step:failed",
        "failed",
        "Condition not met",
    )
    run_failed = payloads["run:failed"]
    assert set(run_failed) == RUN_FAILED_KEYS
    assert (run_failed["event_type"], run_failed["status"], run_failed["error_message"]) == (
        "run:failed",
        "failed",
        "Condition not met",
    )
    assert run_failed["run_id"] == str(run["run_id"])
    assert run_failed["flow_slug"] == "f"


def test_skip_cascade_sends_parent_before_children(rt: psycopg.Connection) -> None:
    create_flow(rt, "f")
    add_step(rt, "f", "z_top", required_input_pattern={"go": True}, when_unmet="skip-cascade")
    add_step(rt, "f", "b_mid", ["z_top"])
    add_step(rt, "f", "a_low", ["b_mid"])

    start_flow(rt, "f", {})
    events = take_events(rt)

    assert names(events) == [
        "run:started",
        "step:z_top:skipped",
        "step:b_mid:skipped",
        "step:a_low:skipped",
        "run:completed",
    ]
    reasons = {e["payload"]["step_slug"]: e["payload"]["skip_reason"] for e in events[1:4]}
    assert reasons == {
        "z_top": "condition_unmet",
        "b_mid": "dependency_skipped",
        "a_low": "dependency_skipped",
    }
    assert all(set(e["payload"]) == CASCADE_SKIPPED_KEYS for e in events[1:4])


def test_force_skip_events_once(rt: psycopg.Connection) -> None:
    create_flow(rt, "f")
    add_step(rt, "f", "a")
    add_step(rt, "f", "b", ["a"])
    run = start_flow(rt, "f", {})
    take_events(rt)

    rt.execute(
        "select pgflow._cascade_force_skip_steps(%s, 'a', 'handler_failed')", (run["run_id"],)
    )
    first = take_events(rt)
    rt.execute(
        "select pgflow._cascade_force_skip_steps(%s, 'a', 'handler_failed')", (run["run_id"],)
    )

    assert names(first) == ["step:a:skipped", "step:b:skipped"]
    assert first[0]["payload"]["skip_reason"] == "handler_failed"
    assert take_events(rt) == []


def test_replayed_calls_send_nothing(rt: psycopg.Connection) -> None:
    create_flow(rt, "f")
    add_step(rt, "f", "a")
    add_step(rt, "f", "b")
    run = start_flow(rt, "f", {})
    run_id = run["run_id"]
    task_a, _ = sorted(read_and_start(rt, "f", qty=2), key=lambda t: t["step_slug"])
    complete(rt, task_a, "x")
    take_events(rt)

    complete(rt, task_a, "x")
    rt.execute("select pgflow.start_ready_steps(%s)", (run_id,))
    rt.execute("select pgflow.maybe_complete_run(%s)", (run_id,))
    rt.execute("select pgflow.cascade_complete_taskless_steps(%s)", (run_id,))
    rt.execute("select pgflow.cascade_resolve_conditions(%s)", (run_id,))

    assert take_events(rt) == []
    assert states(rt, run_id)["b"]["status"] == "started"


def test_realtime_present_means_no_notify(
    rt: psycopg.Connection, listener: psycopg.Connection
) -> None:
    create_flow(rt, "f")
    add_step(rt, "f", "a")
    # one row per realtime.send call, counted by a trigger as pgflow's tests do
    rt.execute(
        """
        create table realtime.calls (n int);
        create function realtime.count_call() returns trigger language plpgsql as
          $$ begin insert into realtime.calls values (1); return new; end $$;
        create trigger count_call after insert on realtime.messages
          for each row execute function realtime.count_call();
        """
    )

    start_listened(rt, listener, "f", {})

    assert len(realtime_events(rt)) == 2
    assert rt.execute("select count(*) from realtime.calls").fetchone() == (2,)
    assert notify_events(listener) == []


# -- pg_notify path -------------------------------------------------------------------------


def test_notify_delivers_the_same_events_in_order(
    conn: psycopg.Connection, listener: psycopg.Connection
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    add_step(conn, "f", "skip_me", required_input_pattern={"never": True})

    run_id = start_listened(conn, listener, "f", {"n": 1})
    (task,) = read_and_start(conn, "f")
    complete(conn, task, {"r": 2})
    events = notify_events(listener)

    assert [e["channel"] for e in events] == [f"pgflow:run:{run_id}"] * 5
    assert [e["event"] for e in events] == [
        "run:started",
        "step:skip_me:skipped",
        "step:a:started",
        "step:a:completed",
        "run:completed",
    ]
    assert [e["payload"]["event_type"] for e in events] == [
        "run:started",
        "step:skipped",
        "step:started",
        "step:completed",
        "run:completed",
    ]


def test_notify_events_match_realtime_payloads(
    conn: psycopg.Connection, listener: psycopg.Connection
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")

    start_listened(conn, listener, "f", {"n": 1})
    (task,) = read_and_start(conn, "f")
    complete(conn, task, {"r": 2})
    events = notify_events(listener)

    assert [e["event"] for e in events] == [
        "run:started",
        "step:a:started",
        "step:a:completed",
        "run:completed",
    ]
    assert all(set(e) == {"channel", "event", "payload"} for e in events)
    payloads = {e["event"]: e["payload"] for e in events}
    assert set(payloads["run:started"]) == RUN_STARTED_KEYS
    assert payloads["run:started"]["input"] == {"n": 1}
    assert set(payloads["step:a:started"]) == STEP_STARTED_KEYS
    assert set(payloads["step:a:completed"]) == STEP_COMPLETED_KEYS
    assert payloads["step:a:completed"]["output"] == {"r": 2}
    assert set(payloads["run:completed"]) == RUN_COMPLETED_KEYS
    assert payloads["run:completed"]["output"] == {"a": {"r": 2}}
    assert all("truncated" not in p for p in payloads.values())


def test_large_output_is_dropped_from_notify_not_failing(
    conn: psycopg.Connection, listener: psycopg.Connection
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    big = {"blob": "x" * 9000}

    run_id = start_listened(conn, listener, "f", {})
    (task,) = read_and_start(conn, "f")
    complete(conn, task, big)
    events = notify_events(listener)

    # the transaction went through and stored everything
    run = run_row(conn, run_id)
    assert run["status"] == "completed"
    assert run["output"] == {"a": big}
    assert states(conn, run_id)["a"]["output"] == big
    assert [e["event"] for e in events] == [
        "run:started",
        "step:a:started",
        "step:a:completed",
        "run:completed",
    ]
    payloads = {e["event"]: e["payload"] for e in events}
    for name in ("step:a:completed", "run:completed"):
        assert payloads[name]["truncated"] is True
        assert "output" not in payloads[name]
        assert payloads[name]["run_id"] == str(run_id)
        assert payloads[name]["status"] == "completed"
    assert payloads["step:a:completed"]["step_slug"] == "a"
    assert "truncated" not in payloads["step:a:started"]


def test_large_input_is_dropped_from_run_started(
    conn: psycopg.Connection, listener: psycopg.Connection
) -> None:
    create_flow(conn, "f")
    add_step(conn, "f", "each", step_type="map")
    # multibyte text: 3000 characters but 9000 bytes
    flow_input = ["€" * 3000]

    run_id = start_listened(conn, listener, "f", flow_input)
    events = notify_events(listener)

    assert [e["event"] for e in events] == ["run:started", "step:each:started"]
    started = events[0]["payload"]
    assert started["truncated"] is True
    assert "input" not in started
    assert set(started) == (RUN_STARTED_KEYS - {"input"}) | {"truncated"}
    assert run_row(conn, run_id)["input"] == flow_input


def test_huge_error_message_is_shortened(
    conn: psycopg.Connection, listener: psycopg.Connection
) -> None:
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "a")
    message = "boom " * 3000

    run_id = start_listened(conn, listener, "f", {})
    (task,) = read_and_start(conn, "f")
    fail(conn, task, message)
    events = notify_events(listener)

    assert run_row(conn, run_id)["status"] == "failed"
    assert states(conn, run_id)["a"]["error_message"] == message
    assert [e["event"] for e in events] == [
        "run:started",
        "step:a:started",
        "step:a:failed",
        "run:failed",
    ]
    for event in events[2:]:
        payload = event["payload"]
        assert payload["truncated"] is True
        assert message.startswith(payload["error_message"])
        assert 0 < len(payload["error_message"]) < len(message)


def test_broadcast_never_fails_on_oversized_payloads(
    conn: psycopg.Connection, listener: psycopg.Connection
) -> None:
    run_id = uuid.uuid4()
    listen(listener, run_id)
    payload = {
        "event_type": "step:completed",
        "run_id": str(run_id),
        "step_slug": "a",
        "status": "completed",
        "unknown_big_key": "y" * 10000,
    }

    conn.execute(
        "select pgflow._broadcast(%s, 'step:a:completed', %s)",
        (Jsonb(payload), f"pgflow:run:{run_id}"),
    )
    (event,) = notify_events(listener)

    assert event["event"] == "step:a:completed"
    assert event["payload"] == {
        "event_type": "step:completed",
        "run_id": str(run_id),
        "step_slug": "a",
        "status": "completed",
        "truncated": True,
    }


SAMPLES: dict[str, Any] = {
    "uuid": uuid.UUID("22222222-2222-2222-2222-222222222222"),
    "text": "some_slug",
    "jsonb": Jsonb({"k": [1, 2]}),
    "integer": 3,
    "timestamptz": "2026-01-02T03:04:05.5+00:00",
}
SENT: dict[str, Any] = {
    "uuid": "22222222-2222-2222-2222-222222222222",
    "text": "some_slug",
    "jsonb": {"k": [1, 2]},
    "integer": 3,
    "timestamptz": "2026-01-02T03:04:05.5+00:00",
}


def _event_ir(name: str) -> EventIR:
    return next(e for e in catalogue_ir().events if e.name == name)


@pytest.mark.parametrize(
    ("event", "shape"),
    [(name, index) for name, d in catalogue().items() for index in range(len(d.shapes))],
)
def test_each_generated_helper_sends_exactly_its_declared_payload(
    rt: psycopg.Connection, event: str, shape: int
) -> None:
    declared = catalogue()[event]
    keys = declared.shapes[shape]
    variant = (None, *(v.name for v in _event_ir(event).variants))[shape]
    stem = helper_stem(event, variant)
    arguments = [k for k in keys if k != "event_type"]
    placeholders = ", ".join(f"{k} => %s" for k in arguments)
    values = [SAMPLES[keys[k]] for k in arguments]
    expected = {"event_type": event} | {k: SENT[keys[k]] for k in arguments}

    rt.execute("set timezone = 'UTC'")
    rt.execute(f"select pgflow._emit_{stem}({placeholders})", values)
    built = scalar(rt, f"select pgflow._event_{stem}({placeholders})", *values)

    (sent,) = realtime_events(rt)
    rt.execute("delete from realtime.messages")
    assert sent["payload"] == expected
    assert built == {"event": sent["event"], "topic": sent["topic"], "payload": expected}


def test_an_event_off_the_catalogue_is_caught(rt: psycopg.Connection) -> None:
    run_id = uuid.uuid4()
    # run:completed without its output, then with a text where a timestamp belongs
    for payload in (
        {"event_type": "run:completed", "run_id": str(run_id), "flow_slug": "f",
         "status": "completed", "completed_at": "2026-01-01T00:00:00+00:00"},
        {"event_type": "run:completed", "run_id": str(run_id), "flow_slug": "f",
         "status": "completed", "output": None, "completed_at": "yesterday"},
    ):  # fmt: skip
        rt.execute(
            "select pgflow._broadcast(%s, 'run:completed', %s)",
            (Jsonb(payload), f"pgflow:run:{run_id}"),
        )
        with pytest.raises(AssertionError):
            realtime_events(rt)
        rt.execute("delete from realtime.messages")
