"""Run-control actions the dashboard offers when the engine defines them (and the
dashboard's role may execute them): cancel, pause/unpause, retry, resume, per run or flow."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncConnection, sql

from pgweave.dashboard.queries import fetch

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

    def sql(self, with_reason: bool) -> sql.Composed:
        """The call, with the target (and a reason) as parameters."""
        args = sql.SQL("%s, %s") if with_reason else sql.SQL("%s")
        return sql.SQL("select pgflow.{}({})").format(sql.Identifier(self.function), args)


ACTIONS = {
    action.name: action
    for action in (
        Action("cancel", "Cancel run", "run", "cancel_run", "pgflow.cancel_run(uuid, text)", True),
        Action("pause", "Pause run", "run", "pause_run", "pgflow.pause_run(uuid)"),
        Action("unpause", "Unpause run", "run", "unpause_run", "pgflow.unpause_run(uuid)"),
        Action("retry", "Retry run", "run", "retry_run", "pgflow.retry_run(uuid)"),
        Action("resume", "Resume run", "run", "resume_run", "pgflow.resume_run(uuid)"),
        Action("pause_flow", "Pause flow", "flow", "pause_flow", "pgflow.pause_flow(text)"),
        Action("unpause_flow", "Unpause flow", "flow", "unpause_flow", "pgflow.unpause_flow(text)"),
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
) -> None:
    """Call the action's function (its own transaction) and log the outcome; the engine's
    error propagates (logged too)."""
    params: list[Any] = [target, reason or None] if action.takes_reason else [target]
    try:
        async with conn.transaction():
            await conn.execute(action.sql(action.takes_reason), params)
    except Exception as exc:
        log.warning("dashboard action %s on %s by %s failed: %s", action.name, target, client, exc)
        raise
    log.info("dashboard action %s on %s by %s done", action.name, target, client)
