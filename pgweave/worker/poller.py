"""The poller: reads a flow's queue and starts the tasks behind the messages.

pgflow's two phases: ``pgmq.read_with_poll`` (a long poll: waits up to ``max_poll_seconds``
for messages; on pgweave through ``poll_messages``, as workers have no queue access) then
``start_tasks`` on the ids read. Where the engine offers the batch
protocol, a busy queue is read and started in one call (``read_and_start_tasks``) and the
long poll is kept for an empty queue. Rows come from the generated client's ``_raw``
variants: plain dicts, not validated into models, on this hot path. A wake-up (new messages
announced) ends the long poll by cancelling its statement in the database; whatever the
long poll read before is still used.

For handlers that take a :class:`~pgweave.dsl.StepContext`, one more query per poll loads
each task's real attempt number and its run's input.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgweave.config import WorkerConfig
from pgweave.worker.executor import TaskContext
from pgweave.worker.records import TaskRecord
from pgweave_client import AsyncPgflowClient

BATCH_PROTOCOL_CHECK = (
    "select to_regprocedure('pgflow.read_and_start_tasks(text, uuid, integer, integer)') is not null"
    " and to_regprocedure('pgflow.complete_tasks(uuid[], text[], integer[], jsonb[])') is not null"
    " and to_regprocedure('pgflow.poll_messages(text, integer, integer, integer, integer)') is not null,"
    " to_regprocedure('pgflow.fail_task_with_details(uuid, text, integer, text, numeric, text, text)')"
    " is not null"
)
# pgflow's own schema has no poll_messages: there the worker long-polls pgmq directly.
READ_WITH_POLL = "select msg_id from pgmq.read_with_poll(%s, %s, %s, %s, %s)"
# Ends a long poll's wait early (the worker's role may cancel its own sessions' statements).
INTERRUPT = "select pg_cancel_backend(%s)"
INTERRUPT_FIRST_PAUSE = 0.01
INTERRUPT_MAX_PAUSE = 1.0
"""Seconds to wait for a cancelled long poll to end before cancelling it again."""
TASK_CONTEXTS = (
    "select t.run_id, t.step_slug, t.task_index, t.attempts_count, r.input"
    " from unnest(%s::uuid[], %s::text[], %s::integer[]) as k(run_id, step_slug, task_index)"
    " join pgflow.step_tasks t on (t.run_id, t.step_slug, t.task_index)"
    " = (k.run_id, k.step_slug, k.task_index)"
    " join pgflow.runs r on r.run_id = t.run_id"
)

ContextKey = tuple[uuid.UUID, str, int]


class Poller:
    """Reads and starts one flow's tasks for one worker."""

    def __init__(
        self,
        api: AsyncPgflowClient,
        pool: AsyncConnectionPool,
        flow_slug: str,
        worker_id: uuid.UUID,
        config: WorkerConfig,
    ) -> None:
        self.api = api
        self.pool = pool
        self.flow_slug = flow_slug
        self.worker_id = worker_id
        self.config = config
        self.batch_protocol = False
        self.fail_details = False
        """The engine offers ``fail_task_with_details`` (retry delays, failure details)."""
        self.ignored = 0
        """Messages read whose tasks could not be started (late, cancelled, …)."""

    async def detect_protocol(self) -> bool:
        """Use the batch protocol when the engine offers it (pgweave does, pgflow does not);
        also notes whether it offers ``fail_task_with_details``."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(BATCH_PROTOCOL_CHECK)).fetchone()
        self.batch_protocol = bool(row and row[0])
        self.fail_details = bool(row and row[1])
        return self.batch_protocol

    async def poll(
        self, qty: int, stopping: Callable[[], bool], wake: asyncio.Event | None = None
    ) -> list[TaskRecord]:
        """Start up to ``qty`` tasks; [] after an empty long poll, when ``stopping()``, or
        when ``wake`` ended the long poll before it read anything (the caller then polls
        again at once)."""
        if wake is not None:
            wake.clear()  # what arrives from now on ends the long poll below
        if self.batch_protocol:
            rows = await self.api.read_and_start_tasks_raw(
                self.flow_slug, self.worker_id, qty, self.config.visibility_timeout
            )
            if rows:
                return [TaskRecord.from_row(row) for row in rows]
        if stopping():
            return []
        ids = await self._long_poll(qty, wake)
        if not ids or stopping():
            # Read during shutdown: left alone, they reappear after the visibility timeout.
            return []
        rows = await self.api.start_tasks_raw(self.flow_slug, ids, self.worker_id)
        self.ignored += len(ids) - len(rows)
        return [TaskRecord.from_row(row) for row in rows]

    async def _long_poll(self, qty: int, wake: asyncio.Event | None) -> list[int]:
        """The ids a long poll read; a ``wake`` ends its wait early.

        The wait is ended in the database (its statement is cancelled there), never by
        dropping the call: its outcome is always read, so messages the database read
        before the cancel arrived are returned, not lost until their visibility timeout.
        """
        async with self.pool.connection() as conn:
            call = asyncio.ensure_future(self._read_with_poll(conn, qty))
            if wake is None:
                return await call
            woken = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({call, woken}, return_when=asyncio.FIRST_COMPLETED)
                if call.done():
                    return call.result()
                await self._interrupt(conn.info.backend_pid, call)
                try:
                    return await call
                except psycopg.errors.QueryCanceled:
                    return []
            finally:
                woken.cancel()
                if not call.done():  # this poll itself is cancelled (a forced stop)
                    call.cancel()
                    await asyncio.gather(call, return_exceptions=True)

    async def _interrupt(self, backend_pid: int, call: asyncio.Future[list[int]]) -> None:
        """Cancel ``call``'s statement in its backend until it ends.

        A cancel reaching the backend before the statement executes (between the messages
        of the extended protocol) is ignored, so it is sent again after a growing pause.
        Each is sent while ``call`` is unfinished, and the caller hands the connection back
        only after ``call`` ended: a cancel arriving after the statement is ignored by the
        idle backend, never hits another statement.
        """
        pause = INTERRUPT_FIRST_PAUSE
        while not call.done():
            async with self.pool.connection() as conn:
                await conn.execute(INTERRUPT, (backend_pid,))
            await asyncio.wait({call}, timeout=pause)
            pause = min(2 * pause, INTERRUPT_MAX_PAUSE)

    async def _read_with_poll(self, conn: psycopg.AsyncConnection[Any], qty: int) -> list[int]:
        if self.batch_protocol:  # pgweave: the worker role reads queues only through the engine
            return await AsyncPgflowClient(conn).poll_messages(
                self.flow_slug,
                self.config.visibility_timeout,
                qty,
                self.config.max_poll_seconds,
                self.config.poll_interval_ms,
            )
        cursor = await conn.execute(
            READ_WITH_POLL,
            (
                self.flow_slug,
                self.config.visibility_timeout,
                qty,
                self.config.max_poll_seconds,
                self.config.poll_interval_ms,
            ),
        )
        return [row[0] for row in await cursor.fetchall()]

    async def contexts(self, records: Sequence[TaskRecord]) -> dict[ContextKey, TaskContext]:
        """Each started task's attempt number (``attempts_count``) and its run's input."""
        if not records:
            return {}
        params: tuple[list[Any], ...] = (
            [r.run_id for r in records],
            [r.step_slug for r in records],
            [r.task_index for r in records],
        )
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(TASK_CONTEXTS, params)).fetchall()
        return {
            (run_id, step_slug, task_index): TaskContext(attempt=attempts, flow_input=run_input)
            for run_id, step_slug, task_index, attempts, run_input in rows
        }
