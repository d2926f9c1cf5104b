"""One :class:`Worker` serves one flow, composed of the parts of this package.

Its life: :meth:`Worker.prepare` checks (or creates) the flow with ``ensure_flow_compiled``
(a shape mismatch raises :class:`FlowShapeMismatchError` unless data loss is allowed) and
registers in ``pgflow.workers``; :meth:`Worker.run` starts the maintenance loops and polls
(:class:`Poller`) while the executor has free slots, hands each started task to the
:class:`Executor` and its outcome to the :class:`Reporter`. A failed poll is logged and
retried after a growing pause: nothing that happens while polling ends the worker.

A stop request stops polling (a poll waiting for an unreachable database is cancelled at
once) and lets in-flight tasks finish within ``shutdown_timeout``; a forced stop (a second
signal) cancels them at once. Tasks not finished are reported as abandoned (the engine
requeues them later), then the worker records ``mark_worker_stopped``.

A worker is a :class:`~pgweave.worker.events.Subscriber` of the process's engine events: a
cancelled run's handlers are stopped and their results discarded (:meth:`Worker.on_cancel`),
and a wake-up ends an idle long poll so new messages are read at once (:meth:`Worker.on_wake`;
a completed task of a step others depend on and a stop request wake the worker too).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pgweave.compile import flow_shape
from pgweave.config import WorkerConfig
from pgweave.dsl import Flow
from pgweave.logs import fields
from pgweave.telemetry import TaskMetrics
from pgweave.worker.executor import Executor, TaskContext
from pgweave.worker.maintenance import Maintenance, sleep_unless
from pgweave.worker.poller import Poller
from pgweave.worker.records import (
    FlowShapeMismatchError,
    Reported,
    TaskRecord,
    WorkerError,
    WorkerStats,
)
from pgweave.worker.reporter import Reporter, task_fields
from pgweave.worker.retry import Backoff
from pgweave_client import AsyncPgflowClient, PgflowError

log = logging.getLogger("pgweave.worker")

T = TypeVar("T")
MARK_STOPPED_TIMEOUT = 2.0
"""Seconds ``mark_worker_stopped`` may take at the end (the database may be gone)."""
CANCELLED_AMONG = "select run_id from pgflow.runs where run_id = any(%s) and status = 'cancelled'"


class Worker:
    """Serves one flow: register, verify/compile, poll, run handlers, report, stop gracefully."""

    def __init__(
        self,
        flow: Flow[Any],
        pool: AsyncConnectionPool,
        config: WorkerConfig | None = None,
        *,
        worker_id: uuid.UUID | None = None,
        metrics: TaskMetrics | None = None,
    ) -> None:
        self.flow = flow
        self.flow_slug = flow.slug
        self.pool = pool
        self.config = config or WorkerConfig()
        self.worker_id = worker_id or uuid.uuid4()
        self.function_name = self.config.function_name or f"pgweave:{flow.slug}"
        self.stats = WorkerStats()
        self.stopping = asyncio.Event()
        self.forced = asyncio.Event()
        self.shutdown_event = threading.Event()
        self.wake = asyncio.Event()
        """Set when this flow's queue may have new messages (engine events, completions
        of steps others depend on) and by a stop: ends an idle long poll."""
        self._feeding = frozenset(dep for step in flow.steps for dep in step.dependencies)
        """The steps whose completion may start others."""
        self._checks: set[asyncio.Task[None]] = set()
        self.api = AsyncPgflowClient(pool)
        self._log_fields: dict[str, Any] = {"worker_id": self.worker_id, "flow": flow.slug}
        self.poller = Poller(self.api, pool, flow.slug, self.worker_id, self.config)
        self.executor = Executor(
            flow, self.worker_id, self.config.max_concurrent, self.shutdown_event, metrics
        )
        self.reporter = Reporter(self.api, self._log_fields)
        self.maintenance = Maintenance(
            self.api,
            self.worker_id,
            self.config,
            self.stats,
            self.stopping,
            lambda: self.request_stop("deprecated"),
            self._log_fields,
        )
        self._database_down = False

    # -- lifecycle ------------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        """Stop polling; in-flight tasks finish (see :meth:`run`). Safe to call repeatedly."""
        if not self.stopping.is_set():
            log.info("worker.stopping", extra=fields(**self._log_fields, reason=reason))
        self.stopping.set()
        self.shutdown_event.set()
        self.wake.set()

    def force_stop(self, reason: str = "forced") -> None:
        """Stop now: in-flight tasks are cancelled and reported as abandoned."""
        self.request_stop(reason)
        self.forced.set()

    async def prepare(self) -> str:
        """Check (or create) the flow in the database and register; returns the compile status."""
        status = "skipped"
        if self.config.compile_flow:
            status = await self._ensure_compiled()
        await self.api.register_worker(self.worker_id, self.flow.slug, self.function_name)
        self.reporter.batch = await self.poller.detect_protocol()
        self.reporter.details = self.poller.fail_details
        log.info(
            "worker.started",
            extra=fields(
                **self._log_fields,
                function_name=self.function_name,
                compile=status,
                max_concurrent=self.config.max_concurrent,
            ),
        )
        return status

    # -- engine events --------------------------------------------------------------------

    def on_cancel(self, run_id: uuid.UUID) -> None:
        """The run was cancelled: stop its handlers here; their results are discarded."""
        stopped = self.executor.cancel_run(run_id)
        if stopped:
            log.info(
                "run.cancelled",
                extra=fields(**self._log_fields, run_id=run_id, stopped_tasks=len(stopped)),
            )

    def on_wake(self) -> None:
        """New messages may wait in this flow's queue: end an idle long poll."""
        self.wake.set()

    def on_resubscribed(self) -> None:
        """Events may have been missed: look up cancelled runs among those in flight."""
        self.wake.set()
        run_ids = self.executor.run_ids()
        if run_ids:
            check = asyncio.create_task(self._cancel_missed(list(run_ids)))
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)

    async def _cancel_missed(self, run_ids: list[uuid.UUID]) -> None:
        try:
            async with self.pool.connection() as conn:
                rows = await (await conn.execute(CANCELLED_AMONG, (run_ids,))).fetchall()
        except (psycopg.Error, OSError) as exc:
            log.warning("worker.cancel_check_failed", extra=fields(**self._log_fields, error=exc))
            return
        for (run_id,) in rows:
            self.on_cancel(run_id)

    @property
    def batch_protocol(self) -> bool:
        """Whether this worker reads and completes in batches (the engine offers it)."""
        return self.poller.batch_protocol

    async def _ensure_compiled(self) -> str:
        result = await self.api.ensure_flow_compiled(
            self.flow.slug,
            Jsonb(flow_shape(self.flow, with_options=True)),
            self.config.allow_data_loss,
        )
        if not isinstance(result, dict):
            raise WorkerError(f"unexpected ensure_flow_compiled result {result!r}")
        status = str(result["status"])
        differences = result.get("differences")
        if status == "mismatch":
            listed = differences if isinstance(differences, list) else []
            raise FlowShapeMismatchError(self.flow.slug, [str(d) for d in listed])
        if status == "recompiled":
            log.warning(
                "flow.recompiled",
                extra=fields(**self._log_fields, differences=differences),
            )
        return status

    async def run(self, *, prepared: bool = False) -> WorkerStats:
        """Prepare (unless done already), then poll until stopped; returns the stats."""
        if not prepared:
            await self.prepare()
        self.maintenance.start()
        try:
            await self._poll_loop()
        finally:
            await self._drain()
            await self.maintenance.stop()
            await self.mark_stopped()
            self.executor.close()
            log.info(
                "worker.stopped",
                extra=fields(
                    **self._log_fields,
                    completed=self.stats.completed,
                    failed=self.stats.failed,
                    unreported=self.stats.unreported,
                    abandoned=self.stats.abandoned,
                ),
            )
        return self.stats

    async def _drain(self) -> None:
        """Wait for in-flight tasks (until the shutdown timeout or a forced stop)."""
        if self.executor.running:
            log.info(
                "worker.draining",
                extra=fields(
                    **self._log_fields,
                    in_flight=len(self.executor.running),
                    timeout=self.config.shutdown_timeout,
                ),
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_timeout
        while self.executor.running and not self.forced.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self.executor.wait_for_slot(self.forced, remaining)
        abandoned = await self.executor.cancel_all()
        if abandoned:
            self.stats.abandoned += len(abandoned)
            log.warning(
                "worker.abandoned_tasks",
                extra=fields(
                    **self._log_fields,
                    count=len(abandoned),
                    tasks=[f"{r.run_id}/{r.step_slug}/{r.task_index}" for r in abandoned],
                ),
            )

    async def mark_stopped(self) -> None:
        """Record ``mark_worker_stopped`` (best effort: the database may be unreachable)."""
        try:
            await asyncio.wait_for(
                self.api.mark_worker_stopped(self.worker_id), MARK_STOPPED_TIMEOUT
            )
        except (psycopg.Error, PgflowError, OSError, TimeoutError) as exc:
            log.warning(
                "worker.mark_stopped_failed",
                extra=fields(**self._log_fields, error=_describe(exc)),
            )

    @property
    def abandoned_threads(self) -> bool:
        """True when tasks were abandoned or stopped handlers' threads still run."""
        return self.stats.abandoned > 0 or self.executor.threads_busy

    # -- polling --------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        backoff = Backoff(first=0.5, cap=15.0)
        while not self.stopping.is_set():
            free = self.executor.free_slots
            if free <= 0:
                await self.executor.wait_for_slot(self.stopping)
                continue
            self.stats.polls += 1
            try:
                polled = await self._unless_stopping(self._poll(min(self.config.batch_size, free)))
            except Exception as exc:  # nothing that happens while polling ends the worker
                self.stats.poll_failures += 1
                self._database_down = True
                delay = backoff.next()
                log.error(
                    "worker.poll_failed",
                    extra=fields(**self._log_fields, error=_describe(exc), retry_in=delay),
                )
                await sleep_unless(self.stopping, delay)
                continue
            if self._database_down:
                self._database_down = False
                backoff.reset()
                log.info("worker.poll_recovered", extra=fields(**self._log_fields))
            if polled is None:
                return
            records, contexts = polled
            self.stats.started += len(records)
            for record in records:
                work = functools.partial(self._run_task, record, contexts.get(record.key))
                self.executor.submit(record, work)

    async def _poll(
        self, qty: int
    ) -> tuple[list[TaskRecord], dict[tuple[uuid.UUID, str, int], TaskContext]]:
        records = await self.poller.poll(qty, self.stopping.is_set, self.wake)
        needing = [r for r in records if self.executor.needs_context(r)]
        return records, await self.poller.contexts(needing)

    async def _unless_stopping(self, call: Coroutine[Any, Any, T]) -> T | None:
        """``call``'s result, or None when a stop cut it short.

        On a stop a healthy poll may finish (the stop wakes its long poll, see
        :meth:`request_stop`); one waiting for an unreachable database (or any poll, on a
        forced stop) is cancelled at once.
        """
        task = asyncio.create_task(call)
        stop = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                grace = 0.0 if self._database_down else self.config.max_poll_seconds + 1.0
                forced = asyncio.create_task(self.forced.wait())
                await asyncio.wait(
                    {task, forced}, timeout=grace, return_when=asyncio.FIRST_COMPLETED
                )
                forced.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return None
            return task.result()
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()

    # -- one task -------------------------------------------------------------------------

    async def _run_task(self, record: TaskRecord, context: TaskContext | None) -> None:
        try:
            await self._handle(record, context)
        except asyncio.CancelledError:
            if record.key not in self.executor.discarded:
                log.warning("task.cancelled", extra=self._task_log(record))
                raise
            self.stats.discarded += 1  # its run was cancelled: nothing to report
            log.info("task.discarded", extra=self._task_log(record, reason="run cancelled"))

    async def _handle(self, record: TaskRecord, context: TaskContext | None) -> None:
        if log.isEnabledFor(logging.DEBUG):  # skips building the record's fields on a hot path
            log.debug("task.started", extra=self._task_log(record))
        outcome = await self.executor.execute(record, context)
        if outcome.ok:
            assert outcome.output is not None
            reported = await self.reporter.complete(record, outcome.output)
        else:
            log.warning(
                "task.failed",
                exc_info=outcome.exception if log.isEnabledFor(logging.DEBUG) else None,
                extra=self._task_log(record, error=outcome.error),
            )
            reported = await self.reporter.fail(record, outcome.error or "", outcome)
        self.stats.count(reported)
        if reported is Reported.COMPLETED:
            if record.step_slug in self._feeding:
                self.wake.set()  # the steps depending on it may have been started
            if log.isEnabledFor(logging.INFO):
                log.info("task.completed", extra=self._task_log(record))

    def _task_log(self, record: TaskRecord, **more: Any) -> dict[str, Any]:
        """``extra=`` of a log record about one task (built only when logged)."""
        return fields(**self._log_fields, **task_fields(record), **more)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
