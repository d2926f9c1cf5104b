"""Start flows and follow their runs, driven by the engine's events (no busy polling).

    client = Client(dsn)
    run = client.start_flow("analyze_website", {"url": "https://example.com"})
    runs = client.start_flows("analyze_website", [{"url": u} for u in urls])  # one call
    final = run.wait(timeout=60)            # RunState, completed or failed
    for event in client.events(run.run_id):  # live events until the run ends
        print(event.event, event.payload)

Waiting LISTENs on the run's channel (``pgflow:run:<run_id>``) first and then reads the run,
so no event can slip between the two; it reads the run again whenever an event arrives
truncated (its large values left out), so outputs are always complete.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgweave.dsl import Flow
from pgweave.handlers import to_json
from pgweave.runs import (
    RECONNECT_PAUSE,
    Reconnection,
    RunEvent,
    RunHandle,
    RunState,
    apply_events,
    listen_statement,
    state_of,
)
from pgweave.runs import RunNotFoundError as RunNotFoundError  # the errors of Client
from pgweave.runs import RunTimeoutError as RunTimeoutError
from pgweave_client import PgflowClient
from pgweave_client.models import RunsRow


class Client:
    """A synchronous client over a DSN (one short connection per call, two while waiting)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)

    def start_flow(
        self, flow: str | Flow[Any], input: Any, *, run_id: uuid.UUID | None = None
    ) -> FlowRun:
        """Start a run (``pgflow.start_flow_with_states``) and return its handle.

        Engine errors are raised as the generated client's errors (e.g.
        ``pgweave_client.errors.FlowNotFoundError``).
        """
        slug = flow.slug if isinstance(flow, Flow) else flow
        with self._connect() as conn:
            result = PgflowClient(conn).start_flow_with_states(slug, Jsonb(to_json(input)), run_id)
        state = state_of(result, f"start_flow_with_states returned {result!r}")
        return FlowRun(self, state.run_id, state)

    def start_flows(self, flow: str | Flow[Any], inputs: Iterable[Any]) -> list[FlowRun]:
        """Start one run per input in one call and one transaction (``pgflow.start_flows``:
        all runs or, on an engine error, none); the handles in input order. Their states
        hold the run row without steps (``refresh`` reads the steps)."""
        slug = flow.slug if isinstance(flow, Flow) else flow
        with self._connect() as conn:
            rows = PgflowClient(conn).start_flows(slug, [Jsonb(to_json(i)) for i in inputs])
        return [FlowRun(self, row.run_id, state_of_row(row)) for row in rows]

    def get_run(self, run_id: uuid.UUID | str) -> RunState:
        """The run with its steps (``pgflow.get_run_with_states``)."""
        with self._connect() as conn:
            return _read_run(conn, uuid.UUID(str(run_id)))

    def run(self, run_id: uuid.UUID | str) -> FlowRun:
        """A handle on an existing run."""
        state = self.get_run(run_id)
        return FlowRun(self, state.run_id, state)

    def wait(
        self,
        run_id: uuid.UUID | str,
        *,
        status: Container[str] = ("completed", "failed"),
        timeout: float | None = None,
        on_event: Callable[[RunEvent, RunState], None] | None = None,
    ) -> RunState:
        """Block until the run's status is in ``status``; :class:`RunTimeoutError` otherwise."""
        return self.wait_until(
            run_id, lambda state: state.reached(status), timeout=timeout, on_event=on_event
        )

    def wait_until(
        self,
        run_id: uuid.UUID | str,
        predicate: Callable[[RunState], bool],
        *,
        timeout: float | None = None,
        on_event: Callable[[RunEvent, RunState], None] | None = None,
    ) -> RunState:
        """Block until ``predicate(state)`` holds, moving the state by the run's events."""
        state: RunState | None = None
        for state in self._follow(uuid.UUID(str(run_id)), timeout=timeout, on_event=on_event):
            if predicate(state):
                return state
        raise RunTimeoutError.waiting_for(run_id, timeout, state)

    def events(
        self, run_id: uuid.UUID | str, *, timeout: float | None = None
    ) -> Iterator[RunEvent]:
        """The run's events as they happen, until it completes or fails (or ``timeout``)."""
        received: list[RunEvent] = []
        for _state in self._follow(
            uuid.UUID(str(run_id)), timeout=timeout, on_event=lambda e, _s: received.append(e)
        ):
            while received:
                event = received.pop(0)
                yield event
                if event.is_run_terminal:
                    return

    def _follow(
        self,
        run_id: uuid.UUID,
        *,
        timeout: float | None,
        on_event: Callable[[RunEvent, RunState], None] | None,
    ) -> Iterator[RunState]:
        """Yield the run's state: once after subscribing, then after each batch of events.

        Stops after a terminal state (or when ``timeout`` expires). A lost connection is
        replaced (see :class:`~pgweave.runs.Reconnection`): it subscribes again and re-reads
        the run, so events of the outage are not replayed but the state is complete.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        reconnection = Reconnection(deadline)
        while True:
            try:
                with self._connect() as listener, self._connect() as reader:
                    # (Re-)subscribe first, then read: nothing missed while away stays unseen.
                    listener.execute(listen_statement(run_id))
                    state = _read_run(reader, run_id)
                    reconnection.subscribed()
                    yield state
                    while not state.is_terminal:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            return
                        batch = [
                            RunEvent.from_notify(note.payload)
                            for note in listener.notifies(timeout=remaining, stop_after=1)
                        ]
                        if not batch:
                            continue
                        state, reread = apply_events(state, batch)
                        if reread:
                            state = _read_run(reader, run_id)
                        for event in batch:
                            if on_event is not None:
                                on_event(event, state)
                        yield state
                    return
            except psycopg.OperationalError:
                if not reconnection.retry():
                    raise
                time.sleep(RECONNECT_PAUSE)


def state_of_row(row: RunsRow) -> RunState:
    """A run's state from its ``pgflow.runs`` row alone (no steps)."""
    return RunState.from_json({"run": row.model_dump(mode="json"), "steps": []})


def _read_run(conn: psycopg.Connection, run_id: uuid.UUID) -> RunState:
    return state_of(PgflowClient(conn).get_run_with_states(run_id), f"no run {run_id}")


class FlowRun(RunHandle[Client]):
    """A handle on one run: its id, the last state seen, and ways to wait for it."""

    def refresh(self) -> RunState:
        """Re-read the run from the database."""
        self.state = self.client.get_run(self.run_id)
        return self.state

    def wait(
        self,
        *,
        status: Container[str] = ("completed", "failed"),
        timeout: float | None = None,
        on_event: Callable[[RunEvent, RunState], None] | None = None,
    ) -> RunState:
        """Block until the run completes or fails (or reaches ``status``)."""
        self.state = self.client.wait(
            self.run_id, status=status, timeout=timeout, on_event=on_event
        )
        return self.state

    def wait_for_step(
        self, step_slug: str, *, status: Container[str], timeout: float | None = None
    ) -> RunState:
        """Block until a step's status is in ``status`` (or the run ends)."""

        def reached(state: RunState) -> bool:
            step = state.steps.get(step_slug)
            return state.is_terminal or (step is not None and step.status in status)

        self.state = self.client.wait_until(self.run_id, reached, timeout=timeout)
        return self.state

    def events(self, *, timeout: float | None = None) -> Iterator[RunEvent]:
        """The run's events from now on, until it ends."""
        return self.client.events(self.run_id, timeout=timeout)
