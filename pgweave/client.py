"""Start flows and follow their runs, driven by the engine's events (no busy polling).

    client = Client(dsn)
    run = client.start_flow("analyze_website", {"url": "https://example.com"})
    runs = client.start_flows("analyze_website", [{"url": u} for u in urls])  # one call
    final = run.wait(timeout=60)            # RunState, completed or failed
    for event in run.events():  # since start_flow (replayed), then live, until the run ends
        print(event.event, event.payload)
    client.cancel_run(run.run_id, reason="not needed")   # run control (see the README)
    again = client.resume_run(run.run_id)                  # a handle on the new run
    for row in client.list_runs(flow="analyze_website", status="failed", limit=20):
        print(row.run_id, row.started_at)

Waiting LISTENs on the run's channel (``pgflow:run:<run_id>``) first and then reads the run,
so no event can slip between the two; it reads the run again whenever an event arrives
truncated (its large values left out), so outputs are always complete.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Container, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Self, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from pgweave.dsl import Flow
from pgweave.handlers import to_json
from pgweave.kept import MAX_SIZE, MIN_SIZE, KeptConnections
from pgweave.listing import (
    FlowSummary,
    Query,
    WorkerSummary,
    flows_query,
    runs_query,
    tasks_query,
    workers_query,
)
from pgweave.runs import (
    RECONNECT_PAUSE,
    Reconnection,
    RunEvent,
    RunHandle,
    RunState,
    apply_events,
    end_event,
    listen_statement,
    missed_events,
    state_of,
)
from pgweave.runs import RunNotFoundError as RunNotFoundError  # the errors of Client
from pgweave.runs import RunTimeoutError as RunTimeoutError
from pgweave_client import PgflowClient
from pgweave_client.models import FlowsRow, RunsRow, StepTasksRow

T = TypeVar("T")


class Client:
    """A synchronous client over a DSN, safe to share between threads.

    It keeps a few connections between calls (see :mod:`pgweave.kept`: none until the first
    call, at most ``max_size``); a wait uses two of its own. ``close()`` them when done, or
    use the client as a context manager (``with Client(dsn) as client: ...``).
    """

    def __init__(self, dsn: str, *, min_size: int = MIN_SIZE, max_size: int = MAX_SIZE) -> None:
        self.dsn = dsn
        self._kept = KeptConnections(dsn, min_size, max_size)

    def close(self) -> None:
        """Close the connections kept between calls."""
        self._kept.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> psycopg.Connection:
        """A connection of its own (a wait's listener and reader)."""
        return psycopg.connect(self.dsn, autocommit=True)

    def start_flow(
        self,
        flow: str | Flow[Any],
        input: Any,
        *,
        run_id: uuid.UUID | None = None,
        idempotency_key: str | None = None,
    ) -> FlowRun:
        """Start a run and return its handle.

        With an ``idempotency_key`` or a ``run_id`` the start can be repeated safely
        (``pgflow.start_flow_idempotent``): a run that key or id already names is returned
        when flow and input match, else ``IdempotencyConflictError``. Engine errors are raised
        as the generated client's errors (e.g. ``pgweave_client.errors.FlowNotFoundError``).
        """
        slug = flow.slug if isinstance(flow, Flow) else flow
        flow_input = Jsonb(to_json(input))
        if idempotency_key is None and run_id is None:
            with self._kept.connection() as conn:
                result = PgflowClient(conn).start_flow_with_states(slug, flow_input)
            state = state_of(result, f"start_flow_with_states returned {result!r}")
            return FlowRun(self, state.run_id, state)
        return self._new_run(
            lambda api: api.start_flow_idempotent(slug, flow_input, idempotency_key, run_id)
        )

    def cancel_run(self, run_id: uuid.UUID | str, reason: str | None = None) -> RunsRow:
        """Cancel a started or paused run (``pgflow.cancel_run``); its row. Idempotent."""
        return self._call(lambda api: api.cancel_run(uuid.UUID(str(run_id)), reason))

    def pause_run(self, run_id: uuid.UUID | str) -> RunsRow:
        """Pause a started run (``pgflow.pause_run``): none of its tasks starts; its row."""
        return self._call(lambda api: api.pause_run(uuid.UUID(str(run_id))))

    def unpause_run(self, run_id: uuid.UUID | str) -> RunsRow:
        """Let a paused run go on (``pgflow.unpause_run``); its row."""
        return self._call(lambda api: api.unpause_run(uuid.UUID(str(run_id))))

    def pause_flow(self, flow: str) -> FlowsRow:
        """Pause every run of a flow, present and future (``pgflow.pause_flow``; admin)."""
        return self._call(lambda api: api.pause_flow(flow))

    def unpause_flow(self, flow: str) -> FlowsRow:
        """Let a paused flow go on (``pgflow.unpause_flow``; admin)."""
        return self._call(lambda api: api.unpause_flow(flow))

    def retry_run(self, run_id: uuid.UUID | str) -> FlowRun:
        """A new run of a failed or cancelled run's flow and input (``pgflow.retry_run``)."""
        return self._new_run(lambda api: api.retry_run(uuid.UUID(str(run_id))))

    def resume_run(self, run_id: uuid.UUID | str) -> FlowRun:
        """A new run going on from where a failed or cancelled run stopped
        (``pgflow.resume_run``): its completed work is carried over."""
        return self._new_run(lambda api: api.resume_run(uuid.UUID(str(run_id))))

    def list_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | timedelta | None = None,
        limit: int = 50,
        before: RunsRow | None = None,
    ) -> list[RunsRow]:
        """Runs newest first, filtered (see :func:`pgweave.listing.runs_query`); pass the last
        row as ``before`` for the next page."""
        query = runs_query(flow=flow, status=status, since=since, limit=limit, before=before)
        return self._fetch(query)

    def list_flows(self) -> list[FlowSummary]:
        """Every flow with its step count and number of started runs."""
        return self._fetch(flows_query())

    def list_workers(
        self, *, flow: str | None = None, include_stopped: bool = False
    ) -> list[WorkerSummary]:
        """Registered workers, newest first (reading ``pgflow.workers`` needs an admin)."""
        return self._fetch(workers_query(flow=flow, include_stopped=include_stopped))

    def get_tasks(
        self, run_id: uuid.UUID | str, *, status: str | None = None
    ) -> list[StepTasksRow]:
        """A run's tasks with their failure details (``error_type``, ``error_traceback``)."""
        return self._fetch(tasks_query(uuid.UUID(str(run_id)), status=status))

    def _call(self, call: Callable[[PgflowClient], T]) -> T:
        with self._kept.connection() as conn:
            return call(PgflowClient(conn))

    def _fetch(self, query: Query[T]) -> list[T]:
        with self._kept.connection() as conn:
            return query.run(conn)

    def _new_run(self, call: Callable[[PgflowClient], RunsRow]) -> FlowRun:
        with self._kept.connection() as conn:
            state = _read_run(conn, call(PgflowClient(conn)).run_id)
        return FlowRun(self, state.run_id, state)

    def start_flows(self, flow: str | Flow[Any], inputs: Iterable[Any]) -> list[FlowRun]:
        """Start one run per input in one call and one transaction (``pgflow.start_flows``:
        all runs or, on an engine error, none); the handles in input order. Their states
        hold the run row without steps (``refresh`` reads the steps)."""
        slug = flow.slug if isinstance(flow, Flow) else flow
        with self._kept.connection() as conn:
            rows = PgflowClient(conn).start_flows(slug, [Jsonb(to_json(i)) for i in inputs])
        return [FlowRun(self, row.run_id, state_of_row(row)) for row in rows]

    def get_run(self, run_id: uuid.UUID | str) -> RunState:
        """The run with its steps (``pgflow.get_run_with_states``)."""
        with self._kept.connection() as conn:
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
        known: RunState | None = None,
    ) -> RunState:
        """Block until the run's status is in ``status``; :class:`RunTimeoutError` otherwise.
        With ``known`` (a state of the run the caller saw), ``on_event`` is first given what
        happened since, replayed (see :meth:`events`)."""
        return self.wait_until(
            run_id,
            lambda state: state.reached(status),
            timeout=timeout,
            on_event=on_event,
            known=known,
        )

    def wait_until(
        self,
        run_id: uuid.UUID | str,
        predicate: Callable[[RunState], bool],
        *,
        timeout: float | None = None,
        on_event: Callable[[RunEvent, RunState], None] | None = None,
        known: RunState | None = None,
    ) -> RunState:
        """Block until ``predicate(state)`` holds, moving the state by the run's events
        (``known``: as in :meth:`wait`)."""
        state: RunState | None = None
        follow = self._follow(
            uuid.UUID(str(run_id)), timeout=timeout, on_event=on_event, known=known
        )
        for state in follow:
            if predicate(state):
                return state
        raise RunTimeoutError.waiting_for(run_id, timeout, state)

    def events(
        self,
        run_id: uuid.UUID | str,
        *,
        timeout: float | None = None,
        known: RunState | None = None,
    ) -> Iterator[RunEvent]:
        """The run's events as they happen, until it completes, fails or is cancelled (or
        ``timeout``). What happened after ``known`` (a state of the run the caller saw) is
        replayed first; a run that had already ended gives its end event (replayed)."""
        received: list[RunEvent] = []
        last: RunState | None = None
        for state in self._follow(
            uuid.UUID(str(run_id)),
            timeout=timeout,
            on_event=lambda e, _s: received.append(e),
            known=known,
        ):
            last = state
            while received:
                event = received.pop(0)
                yield event
                if event.is_run_terminal:
                    return
        end = None if last is None else end_event(last)
        if end is not None:
            yield end

    def _follow(
        self,
        run_id: uuid.UUID,
        *,
        timeout: float | None,
        on_event: Callable[[RunEvent, RunState], None] | None,
        known: RunState | None = None,
    ) -> Iterator[RunState]:
        """Yield the run's state: once after subscribing, then after each batch of events.

        Stops after a terminal state (or when ``timeout`` expires). A lost connection is
        replaced (see :class:`~pgweave.runs.Reconnection`): it subscribes again and re-reads
        the run, and replays what it missed as events rebuilt from the two states (see
        :func:`~pgweave.runs.missed_events`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        reconnection = Reconnection(deadline)
        seen = known  # the last state the caller saw, kept across reconnects
        while True:
            try:
                with self._connect() as listener, self._connect() as reader:
                    # (Re-)subscribe first, then read: nothing missed while away stays unseen.
                    listener.execute(listen_statement(run_id))
                    state = _read_run(reader, run_id)
                    reconnection.subscribed()
                    if seen is not None and on_event is not None:
                        for event in missed_events(seen, state):
                            on_event(event, state)
                    seen = state
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
                        seen = state
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
        """Block until the run completes or fails (or reaches ``status``); ``on_event`` is
        first given what happened since the handle's state (replayed)."""
        self.state = self.client.wait(
            self.run_id, status=status, timeout=timeout, on_event=on_event, known=self.state
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
        """The run's events since this handle's state was read, until it ends."""
        return self.client.events(self.run_id, timeout=timeout, known=self.state)
