"""The engine's events, for the workers of one process: one LISTEN connection.

The engine copies every event, in brief, to the channel ``pgweave:events``
(``{"event", "run_id", "flow_slug", "status"}``). The :class:`EventListener` holds one
dedicated connection listening there and tells its subscribers:

- ``run:cancelled`` → ``on_cancel(run_id)`` of every subscriber (running handlers of the
  run are stopped);
- ``run:started`` (also after ``retry_run`` / ``resume_run``), ``run:unpaused`` and
  ``flow:unpaused`` of a flow → ``on_wake()`` of its subscribers (an idle worker polls at
  once instead of waiting for its long poll's next check). Step events carry no flow slug:
  the worker that completes a step wakes itself for the steps depending on it.

A lost connection is reopened after a growing pause and LISTEN is issued again; after each
(re)subscription ``on_resubscribed`` lets subscribers look up what they may have missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

import psycopg

from pgweave.logs import fields
from pgweave.worker.retry import Backoff

log = logging.getLogger("pgweave.worker")

CHANNEL = "pgweave:events"
WAKING_EVENTS = frozenset({"run:started", "run:unpaused", "flow:unpaused"})
"""Events after which a flow's queue may hold new (or newly readable) messages."""
HANDLED_EVENTS = (*WAKING_EVENTS, "run:cancelled")
"""The events workers act on; the others (most: steps, completions) are skipped unparsed."""


class Subscriber(Protocol):
    """What the listener calls (on the event loop; each call must be quick)."""

    flow_slug: str

    def on_cancel(self, run_id: uuid.UUID) -> None:
        """A run was cancelled."""

    def on_wake(self) -> None:
        """The subscriber's flow may have new messages."""

    def on_resubscribed(self) -> None:
        """LISTEN is (again) in place: events in between may have been missed."""


@dataclass(frozen=True)
class Event:
    """One brief engine event."""

    event: str
    run_id: uuid.UUID | None
    flow_slug: str | None

    @classmethod
    def parse(cls, payload: str) -> Event | None:
        """The event in a NOTIFY payload; None when it is not one."""
        try:
            data = json.loads(payload)
            run_id = data.get("run_id")
            return cls(
                event=str(data["event"]),
                run_id=uuid.UUID(run_id) if run_id else None,
                flow_slug=data.get("flow_slug"),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class EventListener:
    """One LISTEN connection on ``pgweave:events`` shared by a process's workers."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.subscribers: list[Subscriber] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        """Deliver events to ``subscriber`` from now on."""
        self.subscribers.append(subscriber)

    def start(self) -> None:
        """Start listening in the background (reconnecting until :meth:`stop`)."""
        self._task = asyncio.create_task(self._run(), name="pgweave-events")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                await self._listen(backoff)
            except (psycopg.Error, OSError) as exc:
                delay = backoff.next()
                log.warning(
                    "worker.events_lost",
                    extra=fields(error=str(exc) or type(exc).__name__, retry_in=delay),
                )
                await asyncio.sleep(delay)

    async def _listen(self, backoff: Backoff) -> None:
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        async with conn:
            await conn.execute(f'listen "{CHANNEL}"')
            backoff.reset()
            log.info("worker.events_listening", extra=fields(channel=CHANNEL))
            for subscriber in self.subscribers:
                subscriber.on_resubscribed()
            async for notify in conn.notifies():
                if not any(name in notify.payload for name in HANDLED_EVENTS):
                    continue  # cheaper than parsing: every task brings several such events
                event = Event.parse(notify.payload)
                if event is not None:
                    self.dispatch(event)

    def dispatch(self, event: Event) -> None:
        """Hand one event to the subscribers it concerns."""
        if event.event == "run:cancelled" and event.run_id is not None:
            for subscriber in self.subscribers:
                subscriber.on_cancel(event.run_id)
        elif event.event in WAKING_EVENTS:
            for subscriber in self.subscribers:
                if subscriber.flow_slug == event.flow_slug:
                    subscriber.on_wake()
