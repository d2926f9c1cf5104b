"""Runs as the client sees them: state snapshots, engine events, and applying one to the other.

A :class:`RunState` is built from ``pgflow.get_run_with_states`` and moved forward by the
engine's events (``run:started``, ``step:<slug>:completed``…). Applying is idempotent and
never moves a status backwards, so a client may read the state after subscribing and then
apply events that were already included in what it read.

The sync and async clients (:mod:`pgweave.client`, :mod:`pgweave.aio`) share everything
here that does not wait: the LISTEN statement, reading results into states, applying a
batch of events and deciding when a wait is over.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from psycopg import sql
from pydantic import BaseModel

from pgweave_client import statuses
from pgweave_client.events import EVENTS, Event
from pgweave_client.models import RunStatus, StepStateStatus

ClientT = TypeVar("ClientT")


def _ranks(
    states: Iterable[StrEnum], initial: StrEnum, terminal: Container[StrEnum]
) -> dict[str, int]:
    """How far each state of a state machine is: initial 0, terminal 2, the others 1.

    A status only ever moves to a higher rank, so an event of a lower or equal rank is old news.
    """
    return {
        state.value: 0 if state == initial else 2 if state in terminal else 1 for state in states
    }


_RUN_RANK = _ranks(RunStatus, statuses.RUN_INITIAL, statuses.RUN_TERMINAL)
_STEP_RANK = _ranks(StepStateStatus, statuses.STEP_STATE_INITIAL, statuses.STEP_STATE_TERMINAL)


class RunNotFoundError(LookupError):
    """No run has this id."""


class RunTimeoutError(TimeoutError):
    """A run did not reach the awaited state in time; ``state`` is the last one seen."""

    def __init__(self, message: str, state: RunState | None) -> None:
        super().__init__(message)
        self.state = state

    @classmethod
    def waiting_for(
        cls, run_id: uuid.UUID | str, timeout: float | None, state: RunState | None
    ) -> RunTimeoutError:
        """The error of a wait for ``run_id`` that ended after ``timeout`` seconds."""
        return cls(
            f"run {run_id} did not reach the awaited state within {timeout} s"
            + (f" (it is {state.status})" if state else ""),
            state,
        )


RECONNECT_SECONDS = 30.0
"""How long a wait keeps trying to reconnect after losing its connections (e.g. a failover)."""
RECONNECT_PAUSE = 0.2
"""Seconds between reconnection attempts."""


class Reconnection:
    """Whether a wait that lost its connections (e.g. in a failover) connects again.

    Only after it had subscribed once (a wrong DSN still fails at once), for at most
    :data:`RECONNECT_SECONDS` per outage, and never past the wait's own deadline.
    """

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self._subscribed = False
        self._lost_at: float | None = None

    def subscribed(self) -> None:
        """LISTEN and the read after it succeeded (again)."""
        self._subscribed = True
        self._lost_at = None

    def retry(self) -> bool:
        """After a lost connection: True to reconnect after :data:`RECONNECT_PAUSE` s,
        False to give up (re-raise the connection error)."""
        now = time.monotonic()
        if self._lost_at is None:
            self._lost_at = now
        within_deadline = self.deadline is None or now + RECONNECT_PAUSE < self.deadline
        return self._subscribed and within_deadline and now - self._lost_at < RECONNECT_SECONDS


def run_channel(run_id: uuid.UUID | str) -> str:
    """The NOTIFY channel (and realtime topic) of a run's events."""
    return f"pgflow:run:{run_id}"


def listen_statement(run_id: uuid.UUID) -> sql.Composed:
    """``listen "pgflow:run:<run_id>"``."""
    return sql.SQL("listen {}").format(sql.Identifier(run_channel(run_id)))


def state_of(result: object, missing: str) -> RunState:
    """The state in a ``get_run_with_states`` (a model) / ``start_flow_with_states`` (JSON)
    result; :class:`RunNotFoundError` with ``missing`` when there is none."""
    if isinstance(result, BaseModel):
        result = result.model_dump()
    if not isinstance(result, dict):
        raise RunNotFoundError(missing)
    return RunState.from_json(result)


def apply_events(state: RunState, batch: Sequence[RunEvent]) -> tuple[RunState, bool]:
    """The state moved by a batch of events, and whether to read the run again: when an
    event arrived truncated (for the complete values) or the run ended (for every column)."""
    reread = False
    for event in batch:
        state = state.apply(event)
        reread = reread or event.truncated
    return state, reread or state.is_terminal


_IDENTITY = frozenset({"event_type", "run_id", "flow_slug", "step_slug", "status"})
"""Payload keys a replayed event fills from the run and the event, not from the moved row."""
_STEP_EVENTS: Mapping[str, Event] = {
    event.name.removeprefix("step:"): event
    for event in EVENTS.values()
    if event.name.startswith("step:")
}
"""The step statuses that have an event (``step:<status>`` in the catalogue), and that event."""
_RUN_END_EVENTS: Mapping[str, Event] = {
    status.value: EVENTS[f"run:{status.value}"] for status in statuses.RUN_TERMINAL
}
"""The terminal run statuses, and the event each is announced by."""


def _columns(event: Event, row: object, variant: str | None = None) -> dict[str, Any]:
    """The values a row gives an event's payload shape: its keys beyond :data:`_IDENTITY`."""
    return {key: getattr(row, key) for key in event.keys(variant) if key not in _IDENTITY}


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _replayed(event: Event, fields: Mapping[str, Any]) -> RunEvent:
    """``event`` rebuilt from ``fields`` (its name from the catalogue's pattern), marked replayed."""
    payload = {"event_type": event.name, **{k: _json_value(v) for k, v in fields.items()}}
    return RunEvent(event=event.event.format_map(payload), payload={**payload, "replayed": True})


def _step_events(run_id: uuid.UUID, before: StepState | None, after: StepState) -> list[RunEvent]:
    """The events of one step's moves from ``before`` to ``after`` (started, then its end)."""
    rank = _STEP_RANK.get(before.status, 0) if before else 0
    reached = [after.status]
    if rank == 0 and after.status != "started" and after.started_at is not None:
        reached.insert(0, "started")
    events = []
    for status in reached:
        event = _STEP_EVENTS.get(status)
        if event is None or _STEP_RANK.get(status, 0) <= rank:
            continue
        step = {"run_id": str(run_id), "step_slug": after.step_slug, "status": status}
        events.append(_replayed(event, {**step, **_columns(event, after)}))
    return events


def missed_events(before: RunState, after: RunState) -> list[RunEvent]:
    """The events a follower missed between two reads of a run (e.g. across a reconnect).

    Rebuilt from the two states, marked ``"replayed": true`` in their payloads: each step's
    move (its ``started`` event and, if it ended, its end, in the order they happened), a
    pause or unpause, and the run's end last. Only the latest state of the outage is known,
    so a step that started and ended in it gets both events with the final state's values.
    """
    run = {"run_id": str(after.run_id), "flow_slug": after.flow_slug}
    timed: list[tuple[str, RunEvent]] = []
    for slug, step in after.steps.items():
        for event in _step_events(after.run_id, before.steps.get(slug), step):
            timed.append((str(event.payload.get(f"{event.status}_at") or ""), event))
    events = [event for _at, event in sorted(timed, key=lambda pair: (not pair[0], pair[0]))]
    if after.paused_at != before.paused_at and not after.is_terminal:
        move = EVENTS["run:unpaused" if after.paused_at is None else "run:paused"]
        # a key the run does not store (unpaused_at) is replayed as null
        fields = {k: getattr(after, k, None) for k in move.keys(None) if k not in _IDENTITY}
        events.append(_replayed(move, {**run, "status": after.status, **fields}))
    end = end_event(after)
    if end is not None and not before.is_terminal:
        events.append(end)
    return events


def end_event(state: RunState) -> RunEvent | None:
    """The ``run:completed``/``run:failed``/``run:cancelled`` event of an ended run, rebuilt
    from its state (``"replayed": true``); None while it runs. Its payload has the shape the
    engine sends: a variant's keys (``run:failed``'s ``error_message``) only when the run
    has values for them."""
    event = _RUN_END_EVENTS.get(state.status)
    if event is None:
        return None
    variant = next(
        (v.name for v in event.variants if all(getattr(state, k) is not None for k in v.keys)),
        None,
    )
    run = {"run_id": str(state.run_id), "flow_slug": state.flow_slug, "status": state.status}
    return _replayed(event, {**run, **_columns(event, state, variant)})


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class StepState:
    """One step of a run."""

    step_slug: str
    status: str
    remaining_tasks: int | None = None
    remaining_deps: int = 0
    initial_tasks: int | None = None
    output: Any = None
    error_message: str | None = None
    skip_reason: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    skipped_at: datetime | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepState:
        """From a ``pgflow.step_states`` row as JSON."""
        return cls(
            step_slug=data["step_slug"],
            status=data["status"],
            remaining_tasks=data.get("remaining_tasks"),
            remaining_deps=data.get("remaining_deps") or 0,
            initial_tasks=data.get("initial_tasks"),
            output=data.get("output"),
            error_message=data.get("error_message"),
            skip_reason=data.get("skip_reason"),
            created_at=_ts(data.get("created_at")),
            started_at=_ts(data.get("started_at")),
            completed_at=_ts(data.get("completed_at")),
            failed_at=_ts(data.get("failed_at")),
            skipped_at=_ts(data.get("skipped_at")),
        )

    @property
    def is_terminal(self) -> bool:
        """Completed, failed, skipped or cancelled."""
        return self.status in statuses.STEP_STATE_TERMINAL


@dataclass(frozen=True)
class RunState:
    """A run with its steps (step order as the engine lists them)."""

    run_id: uuid.UUID
    flow_slug: str
    status: str
    input: Any = None
    output: Any = None
    remaining_steps: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    steps: Mapping[str, StepState] = field(default_factory=dict)
    error_message: str | None = None
    """The failing step's error (from a ``run:failed`` event or the failed step)."""
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    paused_at: datetime | None = None
    """Set while the run is paused (``pause_run``); a paused flow does not set it."""
    restart_of_run_id: uuid.UUID | None = None
    """The failed or cancelled run this one retries or resumes."""
    idempotency_key: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunState:
        """From ``pgflow.get_run_with_states`` / ``start_flow_with_states`` output."""
        run = data["run"]
        steps = {s["step_slug"]: StepState.from_json(s) for s in data.get("steps") or []}
        failed = [s.error_message for s in steps.values() if s.status == "failed"]
        return cls(
            run_id=uuid.UUID(str(run["run_id"])),
            flow_slug=run["flow_slug"],
            status=run["status"],
            input=run.get("input"),
            output=run.get("output"),
            remaining_steps=run.get("remaining_steps") or 0,
            started_at=_ts(run.get("started_at")),
            completed_at=_ts(run.get("completed_at")),
            failed_at=_ts(run.get("failed_at")),
            steps=steps,
            error_message=next((m for m in failed if m), None),
            cancelled_at=_ts(run.get("cancelled_at")),
            cancel_reason=run.get("cancel_reason"),
            paused_at=_ts(run.get("paused_at")),
            restart_of_run_id=_uuid_or_none(run.get("restart_of_run_id")),
            idempotency_key=run.get("idempotency_key"),
        )

    @property
    def is_terminal(self) -> bool:
        """Completed, failed or cancelled."""
        return self.status in statuses.RUN_TERMINAL

    def step(self, slug: str) -> StepState:
        """The state of one step (``KeyError`` when the flow has no such step)."""
        return self.steps[slug]

    def reached(self, status: Container[str]) -> bool:
        """Whether the run's status is in ``status``, or it ended (and will not move on)."""
        return self.status in status or self.is_terminal

    def apply(self, event: RunEvent) -> RunState:
        """This state moved forward by an event (unchanged when the event is old news)."""
        payload = event.payload
        if event.event == "run:paused":
            return replace(self, paused_at=_ts(payload.get("paused_at")))
        if event.event == "run:unpaused":
            return replace(self, paused_at=None)
        if event.step_slug is None:
            if _RUN_RANK.get(event.status or "", -1) <= _RUN_RANK.get(self.status, 0):
                return self
            changes: dict[str, Any] = {"status": event.status or self.status}
            for key in ("remaining_steps",):
                if key in payload:
                    changes[key] = payload[key]
            for key in ("started_at", "completed_at", "failed_at", "cancelled_at"):
                if payload.get(key) is not None:
                    changes[key] = _ts(payload[key])
            if payload.get("cancel_reason"):
                changes["cancel_reason"] = payload["cancel_reason"]
            if "output" in payload:
                changes["output"] = payload["output"]
            if "input" in payload:
                changes["input"] = payload["input"]
            if payload.get("error_message"):
                changes["error_message"] = payload["error_message"]
            return replace(self, **changes)
        old = self.steps.get(event.step_slug) or StepState(event.step_slug, "created")
        if _STEP_RANK.get(event.status or "", -1) <= _STEP_RANK.get(old.status, 0):
            return self
        step_changes: dict[str, Any] = {"status": event.status}
        for key in ("remaining_tasks", "remaining_deps", "error_message", "skip_reason", "output"):
            if key in payload:
                step_changes[key] = payload[key]
        for key in ("started_at", "completed_at", "failed_at", "skipped_at"):
            if payload.get(key) is not None:
                step_changes[key] = _ts(payload[key])
        steps = dict(self.steps)
        steps[event.step_slug] = replace(old, **step_changes)
        return replace(self, steps=steps)


@dataclass(frozen=True)
class RunEvent:
    """One engine event of a run, e.g. ``step:summary:completed``."""

    event: str
    """The event name as broadcast (``run:completed``, ``step:<slug>:started``...)."""
    payload: Mapping[str, Any]

    @classmethod
    def from_notify(cls, text: str) -> RunEvent:
        """Parse a NOTIFY payload ``{"event": ..., "payload": {...}}``."""
        data = json.loads(text)
        return cls(event=str(data["event"]), payload=data.get("payload") or {})

    @property
    def event_type(self) -> str:
        """``run:started`` … ``step:completed`` (the step slug left out)."""
        return str(self.payload.get("event_type") or self.event)

    @property
    def run_id(self) -> uuid.UUID | None:
        """The run the event belongs to."""
        value = self.payload.get("run_id")
        return uuid.UUID(str(value)) if value else None

    @property
    def step_slug(self) -> str | None:
        """The step, for step events."""
        value = self.payload.get("step_slug")
        return str(value) if value is not None else None

    @property
    def status(self) -> str | None:
        """The status the run or step reached."""
        value = self.payload.get("status")
        return str(value) if value is not None else None

    @property
    def truncated(self) -> bool:
        """True when the engine left out large values (re-read the run for them)."""
        return bool(self.payload.get("truncated"))

    @property
    def is_run_terminal(self) -> bool:
        """``run:completed``, ``run:failed`` or ``run:cancelled``."""
        return self.event in ("run:completed", "run:failed", "run:cancelled")


class RunHandle(Generic[ClientT]):
    """What a handle on one run keeps: its client, its id and the last state seen.

    :class:`pgweave.client.FlowRun` and :class:`pgweave.aio.AsyncFlowRun` add the ways to
    refresh it and wait for it.
    """

    def __init__(self, client: ClientT, run_id: uuid.UUID, state: RunState) -> None:
        self.client = client
        self.run_id = run_id
        self.state = state

    @property
    def status(self) -> str:
        """The last status seen (call ``refresh`` or ``wait`` to update)."""
        return self.state.status

    @property
    def output(self) -> Any:
        """The run's output (the leaf steps' outputs) once completed."""
        return self.state.output

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.run_id}, {self.state.flow_slug!r}, {self.status!r})"
