"""Background duties of a worker: heartbeats (a deprecated worker stops) and requeueing.

Both run until the worker stops; a failed call is logged and tried again at the next
interval, never ending the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from pgweave.config import WorkerConfig
from pgweave.logs import fields
from pgweave.worker.records import WorkerStats
from pgweave_client import AsyncPgflowClient, PgflowError

log = logging.getLogger("pgweave.worker")


async def sleep_unless(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``event`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


class Maintenance:
    """Heartbeats and periodic ``requeue_stalled_tasks`` for one worker."""

    def __init__(
        self,
        api: AsyncPgflowClient,
        worker_id: uuid.UUID,
        config: WorkerConfig,
        stats: WorkerStats,
        stopping: asyncio.Event,
        on_deprecated: Callable[[], None],
        log_fields: dict[str, Any],
    ) -> None:
        self.api = api
        self.worker_id = worker_id
        self.config = config
        self.stats = stats
        self.stopping = stopping
        self.on_deprecated = on_deprecated
        self._log_fields = log_fields
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the heartbeat (and, unless disabled, the requeue) loop."""
        self._tasks.append(asyncio.create_task(self._heartbeats(), name="heartbeat"))
        if self.config.requeue_interval > 0:
            self._tasks.append(asyncio.create_task(self._requeues(), name="requeue"))

    async def stop(self) -> None:
        """Stop the loops (a call in progress is cancelled)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _every(
        self, interval: float, duty: Callable[[], Awaitable[bool]], failed: str
    ) -> None:
        """Run ``duty`` every ``interval`` s until the worker stops or it returns False."""
        while not self.stopping.is_set():
            await sleep_unless(self.stopping, interval)
            if self.stopping.is_set():
                return
            try:
                if not await duty():
                    return
            except (psycopg.Error, PgflowError, OSError) as exc:
                log.warning(failed, extra=fields(**self._log_fields, error=exc))

    async def _heartbeats(self) -> None:
        await self._every(
            self.config.heartbeat_interval, self._heartbeat, "worker.heartbeat_failed"
        )

    async def _heartbeat(self) -> bool:
        if await self.api.worker_heartbeat(self.worker_id) is True:
            return True
        self.on_deprecated()
        return False

    async def _requeues(self) -> None:
        await self._every(self.config.requeue_interval, self._requeue, "worker.requeue_failed")

    async def _requeue(self) -> bool:
        count = await self.api.requeue_stalled_tasks() or 0
        if count:
            self.stats.requeued += count
            log.info("tasks.requeued", extra=fields(**self._log_fields, count=count))
        return True
