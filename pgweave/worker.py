"""The worker: polls a flow's queue, runs step handlers and reports outcomes to the engine.

One :class:`Worker` serves one flow. Its loop is pgflow's two-phase polling:
``pgmq.read_with_poll`` (at most as many messages as it has free slots) →
``pgflow.start_tasks`` → run each handler (``async`` ones on the event loop, plain ones in a
thread), at most ``max_concurrent`` at a time → ``pgflow.complete_task`` with the output or
``pgflow.fail_task`` with the exception text. Retries and backoff are the engine's business:
a worker never retries by itself.

Where the database offers the batch protocol (``pgflow.read_and_start_tasks`` and
``pgflow.complete_tasks``), a busy worker reads and starts a batch in one call (the long
poll is kept for an empty queue) and reports the outputs of handlers that finish together in
one ``complete_tasks`` call: the same effects as the per-task calls, fewer round trips and
commits. A batch the engine refuses is reported again task by task.

Around the loop it registers in ``pgflow.workers``, checks the flow with
``ensure_flow_compiled`` (a shape mismatch raises :class:`FlowShapeMismatchError` unless data
loss is allowed), heartbeats (a worker marked deprecated stops), calls
``requeue_stalled_tasks`` periodically, and on a stop request (SIGTERM/SIGINT via
:func:`run_workers`) stops polling, lets in-flight tasks finish within
``shutdown_timeout`` and records ``mark_worker_stopped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pgweave.config import WorkerConfig
from pgweave.dsl import Flow, StepContext, StepDefinition
from pgweave.handlers import to_json
from pgweave.logs import fields
from pgweave_client import AsyncPgflowClient, PgflowError

log = logging.getLogger("pgweave.worker")

T = TypeVar("T")
DB_RETRIES = 3
"""Attempts for reporting a task outcome when the connection fails."""
BATCH_PROTOCOL_CHECK = (
    "select to_regprocedure('pgflow.read_and_start_tasks(text, uuid, integer, integer)') is not null"
    " and to_regprocedure('pgflow.complete_tasks(uuid[], text[], integer[], jsonb[])') is not null"
    " and to_regprocedure('pgflow.poll_messages(text, integer, integer, integer, integer)') is not null"
)
# The long poll: pgweave's engine function (the worker role has no queue access), or
# pgmq directly on a database with pgflow's own schema.
LONG_POLL = "select * from pgflow.poll_messages(%s, %s, %s, %s, %s)"
PGMQ_LONG_POLL = "select msg_id from pgmq.read_with_poll(%s, %s, %s, %s, %s)"
READ_AND_START = (
    "select flow_slug, run_id, step_slug, input, msg_id, task_index, flow_input"
    " from pgflow.read_and_start_tasks(%s, %s, %s, %s)"
)
COMPLETE_MANY = (
    "select count(*) from pgflow.complete_tasks(%s::uuid[], %s::text[], %s::integer[], %s::jsonb[])"
)


class WorkerError(RuntimeError):
    """A worker cannot start (for example its flow does not match the database)."""


class FlowShapeMismatchError(WorkerError):
    """The flow stored in the database differs from the worker's definition."""

    def __init__(self, flow_slug: str, differences: Sequence[str]) -> None:
        self.flow_slug = flow_slug
        self.differences = list(differences)
        listed = "\n".join(f"  - {d}" for d in self.differences)
        super().__init__(
            f"flow {flow_slug!r} in the database does not match this worker's definition "
            f"(this definition first, the database second):\n{listed}\n"
            "Deploy the flow under a new slug, or restart the worker with data loss allowed "
            "(--allow-data-loss / WorkerConfig(allow_data_loss=True)) to drop the stored flow "
            "with its runs and recreate it."
        )


@dataclass(frozen=True)
class TaskRecord:
    """One started task, as ``pgflow.start_tasks`` returns it."""

    flow_slug: str
    run_id: uuid.UUID
    step_slug: str
    input: Any
    msg_id: int
    task_index: int
    flow_input: Any


@dataclass
class WorkerStats:
    """Counters of what a worker did (for tests, logs and the final summary)."""

    polls: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    abandoned: int = 0
    requeued: int = 0


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


class Worker:
    """Serves one flow: register, verify/compile, poll, run handlers, report, stop gracefully."""

    def __init__(
        self,
        flow: Flow[Any],
        pool: AsyncConnectionPool,
        config: WorkerConfig | None = None,
        *,
        worker_id: uuid.UUID | None = None,
    ) -> None:
        self.flow = flow
        self.pool = pool
        self.config = config or WorkerConfig()
        self.worker_id = worker_id or uuid.uuid4()
        self.function_name = self.config.function_name or f"pgweave:{flow.slug}"
        self.stats = WorkerStats()
        self.stopping = asyncio.Event()
        self.shutdown_event = threading.Event()
        self.api = AsyncPgflowClient(pool)
        self._steps = {step.slug: step for step in flow.steps}
        self._inflight: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(
            max_workers=self.config.max_concurrent,
            thread_name_prefix=f"pgweave-{flow.slug}",
        )
        self._flow_inputs: OrderedDict[uuid.UUID, Any] = OrderedDict()
        self._log_fields = {"worker_id": self.worker_id, "flow": flow.slug}
        self._batch_protocol = False
        self._completions: list[_Completion] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        """Stop polling; in-flight tasks finish (see :meth:`run`). Safe to call repeatedly."""
        if not self.stopping.is_set():
            log.info("worker.stopping", extra=fields(**self._log_fields, reason=reason))
        self.stopping.set()
        self.shutdown_event.set()

    async def prepare(self) -> str:
        """Check (or create) the flow in the database and register; returns the compile status."""
        status = "skipped"
        if self.config.compile_flow:
            status = await self._ensure_compiled()
        await self.api.register_worker(self.worker_id, self.flow.slug, self.function_name)
        self._batch_protocol = await self._has_batch_protocol()
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

    async def _has_batch_protocol(self) -> bool:
        """Whether the engine offers read_and_start_tasks and complete_tasks (pgweave)."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(BATCH_PROTOCOL_CHECK)).fetchone()
        return bool(row and row[0])

    async def _ensure_compiled(self) -> str:
        result = await self.api.ensure_flow_compiled(
            self.flow.slug,
            Jsonb(self.flow.shape(with_options=True)),
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
        background = [asyncio.create_task(self._heartbeat_loop(), name="heartbeat")]
        if self.config.requeue_interval > 0:
            background.append(asyncio.create_task(self._requeue_loop(), name="requeue"))
        try:
            await self._poll_loop()
        finally:
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._mark_stopped()
            self._executor.shutdown(wait=False, cancel_futures=True)
            log.info(
                "worker.stopped",
                extra=fields(
                    **self._log_fields,
                    completed=self.stats.completed,
                    failed=self.stats.failed,
                    abandoned=self.stats.abandoned,
                ),
            )
        return self.stats

    async def _drain(self) -> None:
        if not self._inflight:
            return
        log.info(
            "worker.draining",
            extra=fields(
                **self._log_fields,
                in_flight=len(self._inflight),
                timeout=self.config.shutdown_timeout,
            ),
        )
        _done, pending = await asyncio.wait(
            set(self._inflight), timeout=self.config.shutdown_timeout
        )
        if pending:
            self.stats.abandoned += len(pending)
            log.warning(
                "worker.abandoned_tasks",
                extra=fields(**self._log_fields, count=len(pending)),
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _mark_stopped(self) -> None:
        try:
            await self.api.mark_worker_stopped(self.worker_id)
        except (
            psycopg.Error,
            PgflowError,
            OSError,
        ) as exc:  # best effort: heartbeats have stopped anyway
            log.warning("worker.mark_stopped_failed", extra=fields(**self._log_fields, error=exc))

    def cancel_in_flight(self) -> None:
        """Cancel the running handlers now (a second signal); their tasks are requeued later."""
        for task in list(self._inflight):
            task.cancel()

    @property
    def abandoned_threads(self) -> bool:
        """True when sync handlers were still running at the shutdown deadline."""
        return self.stats.abandoned > 0

    # -- polling --------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while not self.stopping.is_set():
            free = self.config.max_concurrent - len(self._inflight)
            if free <= 0:
                await self._wait_for_slot()
                continue
            try:
                tasks = await self._poll(min(self.config.batch_size, free))
            except (psycopg.OperationalError, PgflowError, OSError) as exc:
                log.error("worker.poll_failed", extra=fields(**self._log_fields, error=exc))
                await self._sleep_unless_stopping(1.0)
                continue
            for record in tasks:
                task = asyncio.create_task(self._execute(record))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _wait_for_slot(self) -> None:
        stop = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({stop, *self._inflight}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def _poll(self, qty: int) -> list[TaskRecord]:
        """Read up to ``qty`` messages and start their tasks (ignored ids start nothing)."""
        self.stats.polls += 1
        if self._batch_protocol:
            # Busy queue: read and start in one call; an empty result falls through to
            # the long poll below.
            async with self.pool.connection() as conn:
                rows = await (
                    await conn.execute(
                        READ_AND_START,
                        (self.flow.slug, self.worker_id, qty, self.config.visibility_timeout),
                    )
                ).fetchall()
            if rows:
                records = [_record(row) for row in rows]
                self.stats.started += len(records)
                return records
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    LONG_POLL if self._batch_protocol else PGMQ_LONG_POLL,
                    (
                        self.flow.slug,
                        self.config.visibility_timeout,
                        qty,
                        self.config.max_poll_seconds,
                        self.config.poll_interval_ms,
                    ),
                )
            ).fetchall()
            if not rows:
                return []
        if self.stopping.is_set():
            # Read during shutdown: leave them; they reappear after the visibility timeout.
            return []
        ids = [row[0] for row in rows]
        records = [
            TaskRecord(
                flow_slug=str(task.flow_slug),
                run_id=_required(task.run_id),
                step_slug=str(task.step_slug),
                input=task.input,
                msg_id=_required(task.msg_id),
                task_index=_required(task.task_index),
                flow_input=task.flow_input,
            )
            for task in await self.api.start_tasks(self.flow.slug, ids, self.worker_id)
        ]
        self.stats.started += len(records)
        if len(records) < len(ids):
            log.debug(
                "worker.messages_ignored",
                extra=fields(**self._log_fields, read=len(ids), started=len(records)),
            )
        return records

    # -- executing ------------------------------------------------------------------------

    async def _execute(self, record: TaskRecord) -> None:
        task_fields = {
            **self._log_fields,
            "run_id": record.run_id,
            "step": record.step_slug,
            "task_index": record.task_index,
        }
        step = self._steps.get(record.step_slug)
        try:
            if step is None:
                raise WorkerError(
                    f"step {record.step_slug!r} is not defined in this worker's flow "
                    f"{self.flow.slug!r}"
                )
            log.debug("task.started", extra=fields(**task_fields))
            output = await self._call_handler(step, record)
        except asyncio.CancelledError:
            log.warning("task.cancelled", extra=fields(**task_fields))
            raise
        except Exception as exc:
            message = _error_text(exc)
            log.warning(
                "task.failed",
                exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
                extra=fields(**task_fields, error=message),
            )
            await _with_retries(
                lambda: self.api.fail_task(
                    record.run_id, record.step_slug, record.task_index, message
                ),
                task_fields,
            )
            self.stats.failed += 1
            return
        if self._batch_protocol:
            await self._complete_batched(record, output, task_fields)
        else:
            await self._complete_one(record, output, task_fields)
        self.stats.completed += 1
        log.info("task.completed", extra=fields(**task_fields))

    async def _complete_one(
        self, record: TaskRecord, output: Any, task_fields: dict[str, Any]
    ) -> None:
        await _with_retries(
            lambda: self.api.complete_task(
                record.run_id, record.step_slug, record.task_index, Jsonb(output)
            ),
            task_fields,
        )

    async def _complete_batched(
        self, record: TaskRecord, output: Any, task_fields: dict[str, Any]
    ) -> None:
        """Queue the output for the next complete_tasks call and wait until it is reported."""
        done = asyncio.get_running_loop().create_future()
        self._completions.append(_Completion(record, output, task_fields, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_completions(), name="complete")
        await asyncio.shield(done)

    async def _flush_completions(self) -> None:
        """Report queued outputs, one complete_tasks call per batch of what finished meanwhile."""
        while self._completions:
            batch, self._completions = self._completions, []
            try:
                await self._complete_many(batch)
            finally:
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)

    async def _complete_many(self, batch: list[_Completion]) -> None:
        params = (
            [c.record.run_id for c in batch],
            [c.record.step_slug for c in batch],
            [c.record.task_index for c in batch],
            [Jsonb(c.output) for c in batch],
        )
        for attempt in range(1, DB_RETRIES + 1):
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(COMPLETE_MANY, params)
                return
            except (psycopg.OperationalError, OSError) as exc:
                if attempt == DB_RETRIES:
                    for item in batch:
                        log.error("task.report_failed", extra=fields(**item.task_fields, error=exc))
                    return
                await asyncio.sleep(0.5 * attempt)
            except psycopg.Error as exc:
                # The engine refused the batch (one bad output sinks the whole call): report
                # each task on its own, as without the batch protocol.
                log.warning(
                    "tasks.batch_refused",
                    extra=fields(**self._log_fields, count=len(batch), error=exc),
                )
                for item in batch:
                    await self._complete_one(item.record, item.output, item.task_fields)
                return

    async def _call_handler(self, step: StepDefinition, record: TaskRecord) -> Any:
        info = step.info
        # start_tasks hands a root single step {} as input and the run's input separately.
        raw = record.flow_input if step.step_type == "single" and step.is_root else record.input
        value = info.convert_input(raw)
        args: list[Any] = [value]
        if info.takes_context:
            flow_input = record.flow_input
            if flow_input is None:
                flow_input = await self._flow_input(record.run_id)
            args.append(
                StepContext(
                    run_id=record.run_id,
                    flow_slug=record.flow_slug,
                    step_slug=record.step_slug,
                    task_index=record.task_index,
                    msg_id=record.msg_id,
                    flow_input=flow_input,
                    worker_id=self.worker_id,
                    shutdown_event=self.shutdown_event,
                )
            )
        if info.is_async:
            result = await step.handler(*args)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, lambda: step.handler(*args))
            if inspect.isawaitable(result):
                result = await result
        return to_json(result)

    async def _flow_input(self, run_id: uuid.UUID) -> Any:
        if run_id in self._flow_inputs:
            self._flow_inputs.move_to_end(run_id)
            return self._flow_inputs[run_id]
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute("select input from pgflow.runs where run_id = %s", (run_id,))
            ).fetchone()
        value = row[0] if row else None
        self._flow_inputs[run_id] = value
        while len(self._flow_inputs) > 256:
            self._flow_inputs.popitem(last=False)
        return value

    # -- background duties ----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while not self.stopping.is_set():
            await self._sleep_unless_stopping(self.config.heartbeat_interval)
            if self.stopping.is_set():
                return
            try:
                alive = await self.api.worker_heartbeat(self.worker_id)
            except (psycopg.Error, PgflowError, OSError) as exc:
                log.warning("worker.heartbeat_failed", extra=fields(**self._log_fields, error=exc))
                continue
            if alive is not True:
                self.request_stop("deprecated")
                return

    async def _requeue_loop(self) -> None:
        while not self.stopping.is_set():
            await self._sleep_unless_stopping(self.config.requeue_interval)
            if self.stopping.is_set():
                return
            try:
                count = await self.api.requeue_stalled_tasks() or 0
            except (psycopg.Error, PgflowError, OSError) as exc:
                log.warning("worker.requeue_failed", extra=fields(**self._log_fields, error=exc))
                continue
            if count:
                self.stats.requeued += count
                log.info("tasks.requeued", extra=fields(**self._log_fields, count=count))


@dataclass
class _Completion:
    """A handler's output waiting for the next complete_tasks call."""

    record: TaskRecord
    output: Any
    task_fields: dict[str, Any]
    done: asyncio.Future[None]


def _record(row: Sequence[Any]) -> TaskRecord:
    flow_slug, run_id, step_slug, task_input, msg_id, task_index, flow_input = row
    return TaskRecord(
        flow_slug=str(flow_slug),
        run_id=_required(run_id),
        step_slug=str(step_slug),
        input=task_input,
        msg_id=_required(msg_id),
        task_index=_required(task_index),
        flow_input=flow_input,
    )


def _required(value: T | None) -> T:
    if value is None:
        raise WorkerError("start_tasks returned a task record with a NULL key column")
    return value


async def _with_retries(call: Callable[[], Awaitable[object]], task_fields: dict[str, Any]) -> None:
    for attempt in range(1, DB_RETRIES + 1):
        try:
            await call()
            return
        except (psycopg.OperationalError, OSError) as exc:
            if attempt == DB_RETRIES:
                log.error("task.report_failed", extra=fields(**task_fields, error=exc))
                return
            await asyncio.sleep(0.5 * attempt)
        except (psycopg.Error, PgflowError) as exc:
            log.error("task.report_failed", extra=fields(**task_fields, error=exc))
            return


def pool_size_for(flows: int, config: WorkerConfig) -> int:
    """Connections enough for every worker to poll, heartbeat and report at once."""
    return flows * (3 + min(config.max_concurrent, 8))


def make_pool(dsn: str, max_size: int) -> AsyncConnectionPool:
    """An (unopened) autocommit pool for workers."""
    return AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True},
        open=False,
        name="pgweave-worker",
    )


async def run_workers(
    flows: Sequence[Flow[Any]],
    dsn: str,
    config: WorkerConfig | None = None,
    *,
    replicas: int = 1,
    handle_signals: bool = True,
    on_ready: Callable[[list[Worker]], None] | None = None,
) -> list[Worker]:
    """Run ``replicas`` workers per flow in this process until SIGTERM/SIGINT (or all stop).

    A second signal cancels in-flight tasks at once. Returns the workers once all stopped;
    a worker that fails to start (e.g. :class:`FlowShapeMismatchError`) stops the others and
    its error is raised.
    """
    config = config or WorkerConfig()
    if not flows:
        raise WorkerError("no flows to serve")
    async with make_pool(dsn, pool_size_for(len(flows) * replicas, config)) as pool:
        await pool.wait()
        workers = [Worker(flow, pool, config) for flow in flows for _ in range(replicas)]
        loop = asyncio.get_running_loop()
        signals_seen = 0

        def on_signal(signum: int) -> None:
            nonlocal signals_seen
            signals_seen += 1
            name = signal.Signals(signum).name
            for worker in workers:
                worker.request_stop(name)
            if signals_seen > 1:
                for worker in workers:
                    worker.cancel_in_flight()

        installed: list[int] = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, int(sig))
                installed.append(int(sig))
        try:
            # Prepare one at a time: replicas of a flow would race to compile it otherwise
            # (ensure_flow_compiled serialises that, this just keeps the logs tidy).
            prepared: list[Worker] = []
            try:
                for worker in workers:
                    await worker.prepare()
                    prepared.append(worker)
            except BaseException:
                for worker in prepared:  # registered but never run: record them as stopped
                    await worker._mark_stopped()
                raise
            if on_ready is not None:
                on_ready(workers)
            runs = [asyncio.create_task(_serve(worker, workers)) for worker in workers]
            results = await asyncio.gather(*runs, return_exceptions=True)
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return workers


async def _serve(worker: Worker, everyone: Sequence[Worker]) -> WorkerStats:
    """Run a prepared worker; if it crashes, stop the others too (the process is broken)."""
    try:
        return await worker.run(prepared=True)
    except BaseException:
        for other in everyone:
            other.request_stop("another worker failed")
        raise


class WorkerThread:
    """Workers running in a background thread (own event loop), for embedding and demos.

    with WorkerThread([flow], dsn) as workers:
        client.start_flow(...).wait()
    """

    def __init__(
        self,
        flows: Sequence[Flow[Any]],
        dsn: str,
        config: WorkerConfig | None = None,
        *,
        replicas: int = 1,
        ready_timeout: float = 30.0,
    ) -> None:
        self._flows = list(flows)
        self._dsn = dsn
        self._config = config
        self._replicas = replicas
        self._ready_timeout = ready_timeout
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.workers: list[Worker] = []

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()

            def ready(workers: list[Worker]) -> None:
                self.workers = workers
                self._ready.set()

            await run_workers(
                self._flows,
                self._dsn,
                self._config,
                replicas=self._replicas,
                handle_signals=False,
                on_ready=ready,
            )

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> WorkerThread:
        """Start the thread; returns once every worker is registered (or raises its error)."""
        self._thread = threading.Thread(target=self._main, name="pgweave-workers", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._ready_timeout):
            raise WorkerError(f"workers not ready within {self._ready_timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the workers to stop gracefully and wait for the thread to end."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for worker in self.workers:
                with contextlib.suppress(RuntimeError):  # the loop may have just finished
                    loop.call_soon_threadsafe(worker.request_stop, "stopped by owner")
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> WorkerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
