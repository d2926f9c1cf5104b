"""The worker: polls a flow's queue, runs step handlers and reports outcomes to the engine.

Its parts, in the order a task flows through them:

- :mod:`~pgweave.worker.poller` reads the queue and starts tasks (pgflow's
  ``read_with_poll`` → ``start_tasks``, or ``read_and_start_tasks`` where the engine has the
  batch protocol);
- :mod:`~pgweave.worker.executor` runs the handlers (``async`` ones on the loop, plain ones in
  threads), at most ``max_concurrent`` at once, and turns results into storable JSON;
- :mod:`~pgweave.worker.reporter` reports outcomes (``complete_task``/``fail_task``, or one
  ``complete_tasks`` per batch of outputs, task by task when a batch is refused);
- :mod:`~pgweave.worker.maintenance` heartbeats and requeues stalled tasks;
- :mod:`~pgweave.worker.worker` composes them into one :class:`Worker` per flow;
- :mod:`~pgweave.worker.supervisor` runs the workers of a process (replicas, signals);
- :mod:`~pgweave.worker.retry` is the one retry helper they share.

Retries and backoff of *tasks* are the engine's business: a worker never re-runs a task by
itself.
"""

from pgweave.worker.records import (
    FlowShapeMismatchError,
    Reported,
    TaskRecord,
    WorkerError,
    WorkerStats,
)
from pgweave.worker.supervisor import (
    Supervisor,
    WorkerThread,
    make_pool,
    pool_size_for,
    run_workers,
)
from pgweave.worker.worker import Worker

__all__ = [
    "FlowShapeMismatchError",
    "Reported",
    "Supervisor",
    "TaskRecord",
    "Worker",
    "WorkerError",
    "WorkerStats",
    "WorkerThread",
    "make_pool",
    "pool_size_for",
    "run_workers",
]
