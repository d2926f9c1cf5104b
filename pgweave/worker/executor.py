"""The executor: runs step handlers, at most ``max_concurrent`` at once.

``async`` handlers run on the event loop, plain ones in a thread pool of the same size. A
handler's outcome is its output as storable JSON text (see
:func:`pgweave.handlers.stored_json`) or the error text to fail the task with: an output
PostgreSQL would reject fails the task like an exception does, so the engine counts it as
an attempt and retries it per the step's options.

A handler runs at most its step's ``timeout`` (the flow's, else 60 s): past it an ``async``
handler is cancelled, a plain one's result is discarded while its thread finishes (its
:attr:`~pgweave.dsl.StepContext.cancelled` turns true), and the task fails with a timeout
error. :meth:`Executor.cancel_run` stops every handler of a cancelled run the same way; its
tasks are then never reported. Each handler runs in a :func:`~pgweave.telemetry.task_span`.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import traceback
import uuid
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pgweave.dsl import Flow, RetryAfter, StepContext, StepDefinition
from pgweave.handlers import storable_text, stored_json
from pgweave.telemetry import TaskMetrics, TaskRef, task_span
from pgweave.worker.records import TaskRecord, WorkerError

DEFAULT_TIMEOUT = 60
"""Seconds a handler may run when neither its step nor its flow sets ``timeout`` (SQL's)."""
TRACEBACK_LIMIT = 8000
"""Characters of a failure's traceback sent to the engine (its last ones)."""


@dataclass(frozen=True)
class TaskContext:
    """What a handler's :class:`StepContext` needs beyond the task record."""

    attempt: int
    flow_input: Any


@dataclass(slots=True)
class Outcome:
    """A handler's result: JSON text to complete the task with, or an error to fail it with."""

    output: str | None = None
    error: str | None = None
    exception: BaseException | None = None
    error_type: str | None = None
    traceback: str | None = None
    retry_delay: float | None = None
    """Seconds before the next attempt, chosen by the handler (:class:`RetryAfter`)."""

    @classmethod
    def failed(cls, exc: BaseException, message: str | None = None) -> Outcome:
        """The outcome of a handler that raised ``exc``."""
        kind = type(exc)
        module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
        return cls(
            error=message or error_text(exc),
            exception=exc,
            error_type=f"{module}{kind.__qualname__}",
            traceback=storable_text("".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:]),
            retry_delay=exc.seconds if isinstance(exc, RetryAfter) else None,
        )

    @property
    def ok(self) -> bool:
        """Whether the handler produced a storable output."""
        return self.error is None


def error_text(exc: BaseException) -> str:
    """The message a failed task records: the exception's text (its type when empty)."""
    return storable_text(str(exc) or type(exc).__name__)


class Executor:
    """Runs the handlers of one flow's steps with bounded concurrency."""

    def __init__(
        self,
        flow: Flow[Any],
        worker_id: uuid.UUID,
        max_concurrent: int,
        shutdown_event: threading.Event,
        metrics: TaskMetrics | None = None,
    ) -> None:
        self.flow = flow
        self.worker_id = worker_id
        self.max_concurrent = max_concurrent
        self.shutdown_event = shutdown_event
        self.metrics = metrics
        self._steps = {step.slug: step for step in flow.steps}
        self._timeouts = {
            step.slug: step.options.timeout or flow.options.timeout or DEFAULT_TIMEOUT
            for step in flow.steps
        }
        self._cancel_events: dict[tuple[uuid.UUID, str, int], threading.Event] = {}
        self.discarded: set[tuple[uuid.UUID, str, int]] = set()
        """Tasks of cancelled runs stopped here: never reported (see :meth:`cancel_run`)."""
        self._threads = ThreadPoolExecutor(
            max_workers=max_concurrent, thread_name_prefix=f"pgweave-{flow.slug}"
        )
        self._running: dict[asyncio.Task[None], TaskRecord] = {}
        self._busy_threads: set[Future[Any]] = set()

    # -- what needs a context -------------------------------------------------------------

    def needs_context(self, record: TaskRecord) -> bool:
        """Whether the record's handler takes a :class:`StepContext` (needs attempt, input)."""
        step = self._steps.get(record.step_slug)
        return step is not None and step.info.takes_context

    # -- running --------------------------------------------------------------------------

    @property
    def free_slots(self) -> int:
        """How many more tasks may start now."""
        return self.max_concurrent - len(self._running)

    @property
    def running(self) -> Mapping[asyncio.Task[None], TaskRecord]:
        """The tasks in flight and their records."""
        return self._running

    def submit(self, record: TaskRecord, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` (the handler and its report) as a task counted against the limit."""
        task = asyncio.create_task(work())
        self._running[task] = record
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        record = self._running.pop(task)
        self._cancel_events.pop(record.key, None)
        self.discarded.discard(record.key)

    def run_ids(self) -> set[uuid.UUID]:
        """The runs with a task in flight."""
        return {record.run_id for record in self._running.values()}

    def cancel_run(self, run_id: uuid.UUID) -> list[TaskRecord]:
        """Stop the run's handlers now (async ones cancelled, sync ones told through
        ``ctx.cancelled``); their results are discarded. Returns the tasks stopped."""
        stopped = []
        for task, record in self._running.items():
            if record.run_id == run_id and record.key not in self.discarded:
                self.discarded.add(record.key)
                self._cancel_event(record.key).set()
                task.cancel()
                stopped.append(record)
        return stopped

    async def wait_for_slot(self, event: asyncio.Event, timeout: float | None = None) -> None:
        """Return once a task finished, ``event`` is set, or ``timeout`` s passed."""
        waiter = asyncio.create_task(event.wait())
        try:
            await asyncio.wait(
                {waiter, *self._running}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()

    async def cancel_all(self) -> list[TaskRecord]:
        """Cancel every running task now; returns their records (their threads may run on)."""
        tasks = set(self._running)
        records = [self._running[task] for task in tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return records

    @property
    def threads_busy(self) -> bool:
        """Whether sync handlers still run in threads (e.g. stopped ones finishing)."""
        return any(not thread.done() for thread in list(self._busy_threads))

    def close(self) -> None:
        """Stop the thread pool without waiting for handlers still running in it."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- one handler ----------------------------------------------------------------------

    async def execute(self, record: TaskRecord, context: TaskContext | None) -> Outcome:
        """Run the record's handler; its output as storable JSON, or why the task fails."""
        try:
            step = self._step(record)
            timeout = self._timeouts[step.slug]
            ref = TaskRef(record.run_id, record.flow_slug, record.step_slug, record.task_index)
            with task_span(ref, self.metrics):
                async with asyncio.timeout(timeout) as limit:
                    try:
                        result = await self._call(step, record, context)
                    except asyncio.CancelledError:
                        self._cancel_event(record.key).set()  # a sync handler runs on: tell it
                        raise
            return Outcome(output=stored_json(result))
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            if not limit.expired():
                return Outcome.failed(exc)
            return Outcome.failed(
                exc, f"handler timed out after {timeout} s (the step's timeout); result discarded"
            )
        except Exception as exc:
            return Outcome.failed(exc)

    def _step(self, record: TaskRecord) -> StepDefinition:
        step = self._steps.get(record.step_slug)
        if step is None:
            raise WorkerError(
                f"step {record.step_slug!r} is not defined in this worker's flow {self.flow.slug!r}"
            )
        return step

    async def _call(
        self,
        step: StepDefinition,
        record: TaskRecord,
        context: TaskContext | None,
    ) -> Any:
        info = step.info
        # start_tasks hands a root single step {} as input and the run's input separately.
        raw = record.flow_input if step.step_type == "single" and step.is_root else record.input
        args: list[Any] = [info.convert_input(raw)]
        if info.takes_context:
            if context is None:
                raise WorkerError(f"no context loaded for step {record.step_slug!r}")
            args.append(self._context(record, context))
        if info.is_async:
            return await step.handler(*args)
        thread = self._threads.submit(step.handler, *args)
        self._busy_threads.add(thread)
        thread.add_done_callback(self._busy_threads.discard)
        result = await asyncio.wrap_future(thread)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _cancel_event(self, key: tuple[uuid.UUID, str, int]) -> threading.Event:
        """The event telling the task's handler it is stopped (made when first needed: only
        handlers taking a context see it)."""
        event = self._cancel_events.get(key)
        if event is None:
            event = self._cancel_events[key] = threading.Event()
        return event

    def _context(self, record: TaskRecord, context: TaskContext) -> StepContext:
        return StepContext(
            run_id=record.run_id,
            flow_slug=record.flow_slug,
            step_slug=record.step_slug,
            task_index=record.task_index,
            msg_id=record.msg_id,
            flow_input=context.flow_input,
            worker_id=self.worker_id,
            attempt=context.attempt,
            shutdown_event=self.shutdown_event,
            cancel_event=self._cancel_event(record.key),
        )
