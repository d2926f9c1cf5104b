"""Run-control actions the dashboard offers: the engine's cancel_run, pause_run, unpause_run,
retry_run, resume_run, pause_flow and unpause_flow, each when the dashboard's role may execute
it and it applies to the run's or flow's state."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncConnection, sql

from pgweave.dashboard.queries import Row, fetch

log = logging.getLogger("pgweave.dashboard.actions")


@dataclass(frozen=True)
class Action:
    """An engine function the dashboard can call on a run or a flow."""

    name: str
    label: str
    target: Literal["run", "flow"]
    function: str
    signature: str  # for to_regprocedure
    takes_reason: bool = False
    starts_run: bool = False  # returns a new run (retry, resume), whose page comes next
    statuses: tuple[str, ...] | None = None  # the run statuses it applies to (runs only)
    when_paused: bool | None = None  # applies only while paused (True) / not paused (False)

    def sql(self) -> sql.Composed:
        """The call, with the target (and a reason) as parameters; yields the returned row."""
        args = sql.SQL("%s, %s") if self.takes_reason else sql.SQL("%s")
        return sql.SQL("select * from pgflow.{}({})").format(sql.Identifier(self.function), args)

    def applies(self, state: Row) -> bool:
        """Whether the action fits a run's (``status``, ``paused_at``) or a flow's
        (``paused_at``) state; the engine would refuse or ignore the others."""
        if self.statuses is not None and state["status"] not in self.statuses:
            return False
        return self.when_paused is None or self.when_paused == (state["paused_at"] is not None)


STARTED = ("started",)
RESTARTABLE = ("failed", "cancelled")
ACTIONS = {
    action.name: action
    for action in (
        Action(
            "cancel",
            "Cancel run",
            "run",
            "cancel_run",
            "pgflow.cancel_run(uuid, text)",
            takes_reason=True,
            statuses=STARTED,
        ),
        Action(
            "pause",
            "Pause run",
            "run",
            "pause_run",
            "pgflow.pause_run(uuid)",
            statuses=STARTED,
            when_paused=False,
        ),
        Action(
            "unpause",
            "Unpause run",
            "run",
            "unpause_run",
            "pgflow.unpause_run(uuid)",
            statuses=STARTED,
            when_paused=True,
        ),
        Action(
            "retry",
            "Retry run",
            "run",
            "retry_run",
            "pgflow.retry_run(uuid)",
            starts_run=True,
            statuses=RESTARTABLE,
        ),
        Action(
            "resume",
            "Resume run",
            "run",
            "resume_run",
            "pgflow.resume_run(uuid)",
            starts_run=True,
            statuses=RESTARTABLE,
        ),
        Action(
            "pause_flow",
            "Pause flow",
            "flow",
            "pause_flow",
            "pgflow.pause_flow(text)",
            when_paused=False,
        ),
        Action(
            "unpause_flow",
            "Unpause flow",
            "flow",
            "unpause_flow",
            "pgflow.unpause_flow(text)",
            when_paused=True,
        ),
    )
}


async def available(conn: AsyncConnection[Any]) -> list[Action]:
    """The actions whose function exists and that the connected role may execute."""
    rows = await fetch(
        conn,
        "select name from unnest(%s::text[], %s::text[]) as a(name, signature)"
        " where to_regprocedure(signature) is not null"
        " and has_function_privilege(to_regprocedure(signature), 'execute')",
        list(ACTIONS),
        [action.signature for action in ACTIONS.values()],
    )
    names = {row["name"] for row in rows}
    return [action for action in ACTIONS.values() if action.name in names]


def parse_target(action: Action, target: str) -> uuid.UUID | str:
    """The run id or flow slug an action applies to; ValueError when malformed."""
    return uuid.UUID(target) if action.target == "run" else target


async def perform(
    conn: AsyncConnection[Any],
    action: Action,
    target: uuid.UUID | str,
    reason: str | None,
    client: str,
) -> Row:
    """Call the action's function (its own transaction), log the outcome and return the row
    the engine returned (the run, the new run, or the flow); the engine's error propagates
    (logged too)."""
    params: list[Any] = [target, reason or None] if action.takes_reason else [target]
    try:
        async with conn.transaction():
            (row,) = await fetch(conn, action.sql(), *params)
    except Exception as exc:
        log.warning("dashboard action %s on %s by %s failed: %s", action.name, target, client, exc)
        raise
    started = f", new run {row['run_id']}" if action.starts_run else ""
    log.info("dashboard action %s on %s by %s done%s", action.name, target, client, started)
    return row
