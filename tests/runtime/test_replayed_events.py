"""Replayed events carry the payload keys of the events the engine sends live.

A follower that missed events (across a reconnect, or a run that ended before it followed)
gets them rebuilt from two reads of the run (:func:`pgweave.runs.missed_events`). Here the
same run is also listened to, and every rebuilt event is compared with the NOTIFY payload
the engine sent for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from pgweave.client import Client
from pgweave.runs import listen_statement, missed_events
from tests.engine.helpers import (
    add_step,
    complete,
    create_flow,
    fail,
    notify_events,
    read_and_start,
)

Finish = Callable[[psycopg.Connection, Client, uuid.UUID], None]


def complete_both(conn: psycopg.Connection, _client: Client, _run_id: uuid.UUID) -> None:
    """Complete step a, then step b (which it started)."""
    for output in ({"x": 1}, [2]):
        [task] = read_and_start(conn, "f")
        complete(conn, task, output)


def fail_a(conn: psycopg.Connection, _client: Client, _run_id: uuid.UUID) -> None:
    """Fail step a's only attempt: the step and the run fail."""
    [task] = read_and_start(conn, "f")
    fail(conn, task, "boom")


def cancel(_conn: psycopg.Connection, client: Client, run_id: uuid.UUID) -> None:
    """Cancel the run while step a is queued."""
    client.cancel_run(run_id, "not needed")


def pause(_conn: psycopg.Connection, client: Client, run_id: uuid.UUID) -> None:
    """Pause the run while step a is queued."""
    client.pause_run(run_id)


@pytest.fixture
def listener(db: str) -> Iterator[psycopg.Connection]:
    """A second connection for LISTEN."""
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        (
            complete_both,
            ["step:a:completed", "step:b:started", "step:b:completed", "run:completed"],
        ),
        (fail_a, ["step:a:failed", "run:failed"]),
        (cancel, ["run:cancelled"]),
        (pause, ["run:paused"]),
    ],
)
def test_replayed_payload_keys_are_the_live_ones(
    db: str,
    conn: psycopg.Connection,
    listener: psycopg.Connection,
    finish: Finish,
    expected: list[str],
) -> None:
    create_flow(conn, "f", max_attempts=1)
    add_step(conn, "f", "a")
    add_step(conn, "f", "b", ["a"])
    client = Client(db)
    run_id = uuid.uuid4()
    listener.execute(listen_statement(run_id))
    before = client.start_flow("f", None, run_id=run_id).state
    finish(conn, client, run_id)
    live = {event["event"]: event["payload"] for event in notify_events(listener)}
    replayed = missed_events(before, client.get_run(run_id))
    assert [event.event for event in replayed] == expected
    for event in replayed:
        assert event.payload["replayed"] is True
        assert event.payload["event_type"] == live[event.event]["event_type"]
        assert set(event.payload) - {"replayed"} == set(live[event.event]), event.event


def test_a_replayed_unpause_has_the_live_keys(
    db: str, conn: psycopg.Connection, listener: psycopg.Connection
) -> None:
    """A run paused and unpaused while unfollowed: the states before and after the outage
    are alike but for the pause, so the follower is told of it by comparing a paused read
    with the unpaused one (unpaused_at is not stored: it is replayed as null)."""
    create_flow(conn, "f")
    add_step(conn, "f", "a")
    client = Client(db)
    run_id = uuid.uuid4()
    listener.execute(listen_statement(run_id))
    client.start_flow("f", None, run_id=run_id)
    pause(conn, client, run_id)
    paused = client.get_run(run_id)
    client.unpause_run(run_id)
    live = {event["event"]: event["payload"] for event in notify_events(listener)}
    [replayed] = missed_events(paused, client.get_run(run_id))
    assert replayed.event == "run:unpaused"
    assert set(replayed.payload) - {"replayed"} == set(live["run:unpaused"])
    assert replayed.payload["status"] == live["run:unpaused"]["status"]
    assert replayed.payload["unpaused_at"] is None
