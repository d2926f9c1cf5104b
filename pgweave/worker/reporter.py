"""The completion reporter: tells the engine each task's outcome.

Outputs go to ``complete_task`` one by one, or, with the batch protocol, the outputs of
handlers finishing together go in one ``complete_tasks`` call (the same effects, fewer
round trips and commits). A batch the engine refuses is reported again task by task, and
an output the engine refuses on its own fails that task with the engine's error, so it
counts as an attempt instead of being re-run forever. Failures go to
``fail_task_with_details`` (with the exception's type, its bounded traceback and a
handler-chosen retry delay) where the engine offers it, else to ``fail_task``.

Connection problems are retried (:mod:`pgweave.worker.retry`); when they persist the
outcome is *unreported*: the task stays started and ``requeue_stalled_tasks`` hands it out
again later. Each report says what became of the task (:class:`Reported`), so nothing is
logged as completed that was not.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgweave.logs import fields
from pgweave.worker.executor import Outcome, error_text
from pgweave.worker.records import Reported, TaskRecord
from pgweave.worker.retry import is_transient, with_retries
from pgweave_client import AsyncPgflowClient, PgflowError

log = logging.getLogger("pgweave.worker")

ATTEMPTS = 3
"""Calls per report when the connection fails."""


def _verbatim(text: str) -> str:
    return text


def json_text(text: str) -> Jsonb:
    """A ``jsonb`` parameter from JSON text that is already serialised."""
    return Jsonb(text, dumps=_verbatim)


@dataclass
class _Pending:
    """An output waiting for the next ``complete_tasks`` call."""

    record: TaskRecord
    output: str
    done: asyncio.Future[Reported]


class Reporter:
    """Reports the outcomes of one worker's tasks."""

    def __init__(self, api: AsyncPgflowClient, log_fields: dict[str, Any]) -> None:
        self.api = api
        self.batch = False
        """Use ``complete_tasks`` (set once the engine is known to offer it)."""
        self.details = False
        """Use ``fail_task_with_details`` (set once the engine is known to offer it)."""
        self._log_fields = log_fields
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def complete(self, record: TaskRecord, output: str) -> Reported:
        """Record a task's output (JSON text); what became of the task."""
        if not self.batch:
            return await self._complete_one(record, output)
        done: asyncio.Future[Reported] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(record, output, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="complete_tasks")
        return await asyncio.shield(done)

    async def fail(
        self, record: TaskRecord, message: str, outcome: Outcome | None = None
    ) -> Reported:
        """Fail a task with ``message`` and the ``outcome``'s details (the engine retries it
        or fails its step)."""

        def call() -> Any:
            if not self.details:
                return self.api.fail_task(
                    record.run_id, record.step_slug, record.task_index, message
                )
            return self.api.fail_task_with_details(
                record.run_id,
                record.step_slug,
                record.task_index,
                message,
                outcome.retry_delay if outcome else None,
                outcome.error_type if outcome else None,
                outcome.traceback if outcome else None,
            )

        try:
            await with_retries(call, attempts=ATTEMPTS)
        except (psycopg.Error, PgflowError, OSError) as exc:
            self._report_failed(record, exc)
            return Reported.UNREPORTED
        return Reported.FAILED

    async def _complete_one(self, record: TaskRecord, output: str) -> Reported:
        try:
            await with_retries(
                lambda: self.api.complete_task_execrows(
                    record.run_id, record.step_slug, record.task_index, json_text(output)
                ),
                attempts=ATTEMPTS,
            )
        except (psycopg.Error, PgflowError, OSError) as exc:
            if is_transient(exc):
                self._report_failed(record, exc)
                return Reported.UNREPORTED
            # The engine refused this output: fail the task with its reason (an attempt).
            reason = f"the engine refused the handler's output: {error_text(exc)}"
            log.warning(
                "task.output_refused",
                extra=fields(**self._log_fields, **task_fields(record), error=reason),
            )
            return await self.fail(record, reason)
        return Reported.COMPLETED

    async def _flush(self) -> None:
        """Report what is pending, one complete_tasks call per batch of what finished meanwhile."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._complete_many(batch)
            except BaseException:
                for item in batch:
                    if not item.done.done():
                        item.done.cancel()
                raise
            for item, result in zip(batch, results, strict=True):
                if not item.done.done():
                    item.done.set_result(result)

    async def _complete_many(self, batch: list[_Pending]) -> list[Reported]:
        records = [item.record for item in batch]
        try:
            await with_retries(
                lambda: self.api.complete_tasks_execrows(
                    [r.run_id for r in records],
                    [r.step_slug for r in records],
                    [r.task_index for r in records],
                    [json_text(item.output) for item in batch],
                ),
                attempts=ATTEMPTS,
            )
        except (psycopg.Error, PgflowError, OSError) as exc:
            if is_transient(exc):
                for record in records:
                    self._report_failed(record, exc)
                return [Reported.UNREPORTED] * len(batch)
            # One output the engine refuses sinks the whole call: report each on its own.
            log.warning(
                "tasks.batch_refused",
                extra=fields(**self._log_fields, count=len(batch), error=exc),
            )
            return [await self._complete_one(item.record, item.output) for item in batch]
        return [Reported.COMPLETED] * len(batch)

    def _report_failed(self, record: TaskRecord, exc: BaseException) -> None:
        log.error(
            "task.report_failed",
            extra=fields(**self._log_fields, **task_fields(record), error=exc),
        )


def task_fields(record: TaskRecord) -> dict[str, Any]:
    """The log fields naming a task."""
    return {"run_id": record.run_id, "step": record.step_slug, "task_index": record.task_index}
