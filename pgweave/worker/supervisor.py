"""The process supervisor: runs ``replicas`` workers per flow on one pool until told to stop.

SIGTERM/SIGINT asks every worker to stop gracefully, a second signal forces the stop
(in-flight tasks are cancelled and reported as abandoned). Signals are honoured from the
start: while the pool still waits for an unreachable database, a stop ends the wait at
once. :class:`WorkerThread` runs the same in a background thread, for embedding.

The process's workers share one :class:`~pgweave.worker.events.EventListener` (unless
``listen`` is off) and, with ``metrics_port``, one :class:`~pgweave.telemetry.TaskMetrics`
served over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from pgweave.config import WorkerConfig
from pgweave.dsl import Flow
from pgweave.logs import fields
from pgweave.telemetry import TaskMetrics
from pgweave.worker.events import EventListener
from pgweave.worker.records import WorkerError, WorkerStats
from pgweave.worker.worker import Worker

log = logging.getLogger("pgweave.worker")

POOL_WAIT = 30.0
"""Seconds to wait for the first connection before giving up."""
POOL_CLOSE = 2.0
"""Seconds the pool gets to close its connections at the end."""


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


class Supervisor:
    """Workers of one process: created, prepared and run together, stopped together."""

    def __init__(
        self,
        flows: Sequence[Flow[Any]],
        dsn: str,
        config: WorkerConfig | None = None,
        *,
        replicas: int = 1,
    ) -> None:
        if not flows:
            raise WorkerError("no flows to serve")
        self.flows = list(flows)
        self.dsn = dsn
        self.config = config or WorkerConfig()
        self.replicas = replicas
        self.workers: list[Worker] = []
        self.stop_requested = asyncio.Event()
        self.signals_seen = 0
        self.metrics = TaskMetrics() if self.config.metrics_port is not None else None
        self.metrics_server: Any = None
        """The HTTP server of the metrics, while it runs (``.server_port`` is its port)."""
        self.events = EventListener(dsn) if self.config.listen else None

    # -- stopping -------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Stop every worker gracefully (or keep them from starting)."""
        self.stop_requested.set()
        for worker in self.workers:
            worker.request_stop(reason)

    def force_stop(self, reason: str) -> None:
        """Stop every worker now, cancelling in-flight tasks."""
        self.stop_requested.set()
        for worker in self.workers:
            worker.force_stop(reason)

    def on_signal(self, signum: int) -> None:
        """First signal: graceful stop; any further one: forced stop."""
        self.signals_seen += 1
        name = signal.Signals(signum).name
        if self.signals_seen == 1:
            self.request_stop(name)
        else:
            log.warning("worker.forced_stop", extra=fields(signal=name))
            self.force_stop(name)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT call :meth:`on_signal` while the block runs."""
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.on_signal, int(sig))
                installed.append(int(sig))
            yield
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def _unless_stopped(self, call: Awaitable[Any]) -> bool:
        """Await ``call`` unless a stop comes first (then it is cancelled); True if it ran."""
        task = asyncio.ensure_future(call)
        stop = asyncio.create_task(self.stop_requested.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            return False
        task.result()
        return True

    # -- running --------------------------------------------------------------------------

    async def run(self, on_ready: Callable[[list[Worker]], None] | None = None) -> list[Worker]:
        """Run the workers until all stopped; returns them ([] when stopped before starting).

        A worker that fails to start (e.g. :class:`~pgweave.worker.FlowShapeMismatchError`)
        stops the others and its error is raised.
        """
        size = pool_size_for(len(self.flows) * self.replicas, self.config)
        pool = make_pool(self.dsn, size)
        await pool.open(wait=False)
        try:
            if not await self._unless_stopped(pool.wait(POOL_WAIT)):
                log.info("worker.stopped_before_start")
                return []
            self.workers = [
                Worker(flow, pool, self.config, metrics=self.metrics)
                for flow in self.flows
                for _ in range(self.replicas)
            ]
            if not await self._prepare():
                return self.workers
            self._start_extras()
            if on_ready is not None:
                on_ready(self.workers)
            if self.stop_requested.is_set():  # a stop that came while preparing
                self.request_stop("stopped while starting")
            results = await asyncio.gather(
                *(self._serve(worker) for worker in self.workers), return_exceptions=True
            )
        finally:
            await self._stop_extras()
            await pool.close(POOL_CLOSE)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return self.workers

    def _start_extras(self) -> None:
        """Start the event listener and the metrics server (once the workers are ready)."""
        if self.events is not None:
            for worker in self.workers:
                self.events.subscribe(worker)
            self.events.start()
        if self.metrics is not None and self.config.metrics_port is not None:
            self.metrics_server = self.metrics.serve(self.config.metrics_port)
            log.info(
                "worker.metrics_serving",
                extra=fields(port=self.metrics_server.server_port, path="/metrics"),
            )

    async def _stop_extras(self) -> None:
        if self.events is not None:
            await self.events.stop()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server = None

    async def _prepare(self) -> bool:
        """Prepare one worker at a time (replicas would race to compile their flow)."""
        prepared: list[Worker] = []
        try:
            for worker in self.workers:
                if not await self._unless_stopped(worker.prepare()):
                    log.info("worker.stopped_before_start")
                    break
                prepared.append(worker)
        finally:
            if len(prepared) < len(self.workers):
                for worker in prepared:  # registered but never run: record them as stopped
                    await worker.mark_stopped()
        return len(prepared) == len(self.workers)

    async def _serve(self, worker: Worker) -> WorkerStats:
        """Run a prepared worker; if it crashes, stop the others too (the process is broken)."""
        try:
            return await worker.run(prepared=True)
        except BaseException:
            self.request_stop("another worker failed")
            raise


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
    a worker that fails to start (e.g. :class:`~pgweave.worker.FlowShapeMismatchError`)
    stops the others and its error is raised.
    """
    supervisor = Supervisor(flows, dsn, config, replicas=replicas)
    if not handle_signals:
        return await supervisor.run(on_ready)
    with supervisor.signals():
        return await supervisor.run(on_ready)


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
        self._supervisor = Supervisor(flows, dsn, config, replicas=replicas)
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

            await self._supervisor.run(ready)

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
            with contextlib.suppress(RuntimeError):  # the loop may have just finished
                loop.call_soon_threadsafe(self._supervisor.request_stop, "stopped by owner")
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> WorkerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
