"""One LISTEN connection for the whole dashboard, fanned out to every Server-Sent Events
stream. The engine sends a brief copy of each event to the channel ``pgweave:events``
(beside the run's own topic), so one LISTEN follows every run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

CHANNEL = "pgweave:events"
QUEUE_SIZE = 256
RECONNECT_SECONDS = 1.0

log = logging.getLogger("pgweave.dashboard")


@dataclass(eq=False)
class Subscription:
    """A stream's inbox; ``run_id`` (when set) keeps only that run's events."""

    run_id: str | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def offer(self, event: dict[str, Any]) -> None:
        """Queue an event; a stream too slow to keep up loses its oldest one."""
        if self.run_id is not None and event.get("run_id") not in (self.run_id, None):
            return
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)


class EventHub:
    """Listens on ``pgweave:events`` and hands every event to the subscribed streams.
    After a lost connection it reconnects and tells every stream to ``resync``."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.subscriptions: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        """Start listening in the background (returns once the first LISTEN is in place)."""
        self._task = asyncio.create_task(self._run(), name="pgweave-dashboard-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), timeout=5)

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self, run_id: str | None = None) -> Iterator[Subscription]:
        """A subscription for the duration of a stream."""
        sub = Subscription(run_id)
        self.subscriptions.add(sub)
        try:
            yield sub
        finally:
            self.subscriptions.discard(sub)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand an event to every subscription that wants it."""
        for sub in list(self.subscriptions):
            sub.offer(event)

    async def _run(self) -> None:
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute(f'listen "{CHANNEL}"')
                    self.listening.set()
                    if not first:
                        self.publish({"event": "resync"})
                    first = False
                    async for note in conn.notifies():
                        self.publish(decode(note.payload))
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("dashboard: event listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_SECONDS)


def decode(payload: str) -> dict[str, Any]:
    """An event from its NOTIFY payload (anything unreadable becomes a resync)."""
    try:
        event = json.loads(payload)
    except ValueError:
        return {"event": "resync"}
    return event if isinstance(event, dict) else {"event": "resync"}


async def sse_stream(
    hub: EventHub, run_id: str | None, disconnected: Any, keepalive: float = 15.0
) -> AsyncIterator[str]:
    """Server-Sent Events for a page: each engine event as a ``pgflow`` message (JSON on
    one line), a comment every ``keepalive`` seconds, until the client goes away."""
    with hub.subscribe(run_id) as sub:
        yield "retry: 2000\n\n"
        while not await disconnected():
            try:
                event = await asyncio.wait_for(sub.queue.get(), timeout=keepalive)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            yield f"event: pgflow\ndata: {json.dumps(event)}\n\n"
