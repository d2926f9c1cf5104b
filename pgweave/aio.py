"""The asyncio twin of :mod:`pgweave.client`: start runs, read them, wait for them by events.

    client = AsyncClient(dsn)
    run = await client.start_flow("analyze_website", {"url": "https://example.com"})
    runs = await client.start_flows("analyze_website", [{"url": u} for u in urls])
    final = await run.wait(timeout=60)
    async for event in client.events(run.run_id):
        ...

Same guarantees as the sync client: LISTEN first, then read the run; re-read whenever an
event arrives truncated, and once the run has ended; a lost connection is replaced.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Iterable
from datetime import datetime, timedelta
from typing import Any, Self, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from pgweave.client import state_of_row
from pgweave.dsl import Flow
from pgweave.handlers import to_json
from pgweave.kept import MAX_SIZE, MIN_SIZE, AsyncKeptConnections
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
    RunTimeoutError,
    apply_events,
    end_event,
    listen_statement,
    missed_events,
    state_of,
)
from pgweave_client import AsyncPgflowClient
from pgweave_client.models import FlowsRow, RunsRow, StepTasksRow

T = TypeVar("T")


class AsyncClient:
    """An asyncio client over a DSN, safe to share between tasks of one event loop.

    It keeps a few connections between calls (see :mod:`pgweave.kept`); a wait uses two of
    its own. ``await close()`` when done, or ``async with AsyncClient(dsn) as client: ...``.
    """

    def __init__(self, dsn: str, *, min_size: int = MIN_SIZE, max_size: int = MAX_SIZE) -> None:
        self.dsn = dsn
        self._kept = AsyncKeptConnections(dsn, min_size, max_size)

    async def close(self) -> None:
        """Close the connections kept between calls."""
        await self._kept.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connect(self) -> psycopg.AsyncConnection:
        """A connection of its own (a wait's listener and reader)."""
        return await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)

    async def start_flow(
        self,
        flow: str | Flow[Any],
        input: Any,
        *,
        run_id: uuid.UUID | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncFlowRun:
        """Start a run and return its handle; with ``idempotency_key`` or ``run_id`` a run
        they already name is returned (see :meth:`pgweave.client.Client.start_flow`)."""
        slug = flow.slug if isinstance(flow, Flow) else flow
        flow_input = Jsonb(to_json(input))
        if idempotency_key is None and run_id is None:
            async with self._kept.connection() as conn:
                result = await AsyncPgflowClient(conn).start_flow_with_states(slug, flow_input)
            state = state_of(result, f"start_flow_with_states returned {result!r}")
            return AsyncFlowRun(self, state.run_id, state)
        return await self._new_run(
            lambda api: api.start_flow_idempotent(slug, flow_input, idempotency_key, run_id)
        )

    async def cancel_run(self, run_id: uuid.UUID | str, reason: str | None = None) -> RunsRow:
        """Cancel a started or paused run (``pgflow.cancel_run``); its row. Idempotent."""
        return await self._call(lambda api: api.cancel_run(uuid.UUID(str(run_id)), reason))

    async def pause_run(self, run_id: uuid.UUID | str) -> RunsRow:
        """Pause a started run (``pgflow.pause_run``): none of its tasks starts; its row."""
        return await self._call(lambda api: api.pause_run(uuid.UUID(str(run_id))))

    async def unpause_run(self, run_id: uuid.UUID | str) -> RunsRow:
        """Let a paused run go on (``pgflow.unpause_run``); its row."""
        return await self._call(lambda api: api.unpause_run(uuid.UUID(str(run_id))))

    async def pause_flow(self, flow: str) -> FlowsRow:
        """Pause every run of a flow, present and future (``pgflow.pause_flow``; admin)."""
        return await self._call(lambda api: api.pause_flow(flow))

    async def unpause_flow(self, flow: str) -> FlowsRow:
        """Let a paused flow go on (``pgflow.unpause_flow``; admin)."""
        return await self._call(lambda api: api.unpause_flow(flow))

    async def retry_run(self, run_id: uuid.UUID | str) -> AsyncFlowRun:
        """A new run of a failed or cancelled run's flow and input (``pgflow.retry_run``)."""
        return await self._new_run(lambda api: api.retry_run(uuid.UUID(str(run_id))))

    async def resume_run(self, run_id: uuid.UUID | str) -> AsyncFlowRun:
        """A new run going on from where a failed or cancelled run stopped
        (``pgflow.resume_run``): its completed work is carried over."""
        return await self._new_run(lambda api: api.resume_run(uuid.UUID(str(run_id))))

    async def list_runs(
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
        return await self._fetch(query)

    async def list_flows(self) -> list[FlowSummary]:
        """Every flow with its step count and number of started runs."""
        return await self._fetch(flows_query())

    async def list_workers(
        self, *, flow: str | None = None, include_stopped: bool = False
    ) -> list[WorkerSummary]:
        """Registered workers, newest first (reading ``pgflow.workers`` needs an admin)."""
        return await self._fetch(workers_query(flow=flow, include_stopped=include_stopped))

    async def get_tasks(
        self, run_id: uuid.UUID | str, *, status: str | None = None
    ) -> list[StepTasksRow]:
        """A run's tasks with their failure details (``error_type``, ``error_traceback``)."""
        return await self._fetch(tasks_query(uuid.UUID(str(run_id)), status=status))

    async def _call(self, call: Callable[[AsyncPgflowClient], Awaitable[T]]) -> T:
        async with self._kept.connection() as conn:
            return await call(AsyncPgflowClient(conn))

    async def _fetch(self, query: Query[T]) -> list[T]:
        async with self._kept.connection() as conn:
            return await query.run_async(conn)

    async def _new_run(
        self, call: Callable[[AsyncPgflowClient], Awaitable[RunsRow]]
    ) -> AsyncFlowRun:
        async with self._kept.connection() as conn:
            row = await call(AsyncPgflowClient(conn))
            state = await _read_run(conn, row.run_id)
        return AsyncFlowRun(self, state.run_id, state)

    async def start_flows(self, flow: str | Flow[Any], inputs: Iterable[Any]) -> list[AsyncFlowRun]:
        """Start one run per input in one call and one transaction (``pgflow.start_flows``:
        all runs or, on an engine error, none); the handles in input order. Their states
        hold the run row without steps (``refresh`` reads the steps)."""
        slug = flow.slug if isinstance(flow, Flow) else flow
        async with self._kept.connection() as conn:
            rows = await AsyncPgflowClient(conn).start_flows(
                slug, [Jsonb(to_json(i)) for i in inputs]
            )
        return [AsyncFlowRun(self, row.run_id, state_of_row(row)) for row in rows]

    async def get_run(self, run_id: uuid.UUID | str) -> RunState:
        """The run with its steps (``pgflow.get_run_with_states``)."""
        async with self._kept.connection() as conn:
            return await _read_run(conn, uuid.UUID(str(run_id)))

    async def wait(
        self,
        run_id: uuid.UUID | str,
        *,
        status: Container[str] = ("completed", "failed"),
        timeout: float | None = None,
        on_event: Callable[[RunEvent, RunState], None] | None = None,
        known: RunState | None = None,
    ) -> RunState:
        """Wait until the run's status is in ``status`` (or it ended); :class:`RunTimeoutError`.
        With ``known`` (a state of the run the caller saw), ``on_event`` is first given what
        happened since, replayed (see :meth:`events`)."""
        state: RunState | None = None
        async for state in self._follow(uuid.UUID(str(run_id)), timeout, on_event, known):
            if state.reached(status):
                return state
        raise RunTimeoutError.waiting_for(run_id, timeout, state)

    async def events(
        self,
        run_id: uuid.UUID | str,
        *,
        timeout: float | None = None,
        known: RunState | None = None,
    ) -> AsyncIterator[RunEvent]:
        """The run's events as they happen, until it completes, fails or is cancelled (or
        ``timeout``). What happened after ``known`` (a state of the run the caller saw) is
        replayed first; a run that had already ended gives its end event (replayed)."""
        received: list[RunEvent] = []
        last: RunState | None = None
        async for state in self._follow(
            uuid.UUID(str(run_id)), timeout, lambda e, _s: received.append(e), known
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

    async def _follow(
        self,
        run_id: uuid.UUID,
        timeout: float | None,
        on_event: Callable[[RunEvent, RunState], None] | None,
        known: RunState | None = None,
    ) -> AsyncIterator[RunState]:
        deadline = None if timeout is None else time.monotonic() + timeout
        reconnection = Reconnection(deadline)
        seen = known  # the last state the caller saw, kept across reconnects
        while True:
            try:
                async with await self._connect() as listener, await self._connect() as reader:
                    await listener.execute(listen_statement(run_id))
                    state = await _read_run(reader, run_id)
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
                            async for note in listener.notifies(timeout=remaining, stop_after=1)
                        ]
                        if not batch:
                            continue
                        state, reread = apply_events(state, batch)
                        if reread:
                            state = await _read_run(reader, run_id)
                        for event in batch:
                            if on_event is not None:
                                on_event(event, state)
                        seen = state
                        yield state
                    return
            except psycopg.OperationalError:
                if not reconnection.retry():
                    raise
                await asyncio.sleep(RECONNECT_PAUSE)


async def _read_run(conn: psycopg.AsyncConnection, run_id: uuid.UUID) -> RunState:
    result = await AsyncPgflowClient(conn).get_run_with_states(run_id)
    return state_of(result, f"no run {run_id}")


class AsyncFlowRun(RunHandle[AsyncClient]):
    """A handle on one run for asyncio code."""

    async def refresh(self) -> RunState:
        """Re-read the run from the database."""
        self.state = await self.client.get_run(self.run_id)
        return self.state

    async def wait(
        self,
        *,
        status: Container[str] = ("completed", "failed"),
        timeout: float | None = None,
        on_event: Callable[[RunEvent, RunState], None] | None = None,
    ) -> RunState:
        """Wait until the run completes or fails (or reaches ``status``); ``on_event`` is
        first given what happened since the handle's state (replayed)."""
        self.state = await self.client.wait(
            self.run_id, status=status, timeout=timeout, on_event=on_event, known=self.state
        )
        return self.state

    def events(self, *, timeout: float | None = None) -> AsyncIterator[RunEvent]:
        """The run's events since this handle's state was read, until it ends."""
        return self.client.events(self.run_id, timeout=timeout, known=self.state)
