"""The reads the sync and async clients share: runs (filtered, newest first, page by page),
flows, workers and a run's tasks, as typed rows of the generated client.

Each function returns a :class:`Query`: the composed statement, its parameters and how a
row is parsed. :class:`pgweave.client.Client` and :class:`pgweave.aio.AsyncClient` only run
it. Filters are composed into the statement (``psycopg.sql``), values travel as parameters.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgweave_client.models import (
    FlowsRow,
    RunsRow,
    RunStatus,
    StepTasksRow,
    StepTaskStatus,
    WorkersRow,
)

T = TypeVar("T")

RUN_STATUSES = tuple(status.value for status in RunStatus)
TASK_STATUSES = tuple(status.value for status in StepTaskStatus)
_DURATION = re.compile(r"\A(\d+(?:\.\d+)?)\s*([smhdw])\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Query(Generic[T]):
    """A read: the statement, its parameters and how one row (a dict) becomes a ``T``."""

    statement: sql.Composed | sql.SQL
    params: Mapping[str, Any]
    parse: Callable[[dict[str, Any]], T]

    def run(self, conn: psycopg.Connection) -> list[T]:
        """The parsed rows, read on a synchronous connection."""
        with conn.cursor(row_factory=dict_row) as cur:
            return [self.parse(row) for row in cur.execute(self.statement, self.params)]

    async def run_async(self, conn: psycopg.AsyncConnection) -> list[T]:
        """The parsed rows, read on an asyncio connection."""
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(self.statement, self.params)
            return [self.parse(row) for row in await cur.fetchall()]


@dataclass(frozen=True)
class FlowSummary:
    """A flow with how many steps it has and how many of its runs are started (not ended)."""

    flow: FlowsRow
    step_count: int
    active_runs: int


@dataclass(frozen=True)
class WorkerSummary:
    """A registered worker and the time since its last heartbeat (by the database's clock)."""

    worker: WorkersRow
    heartbeat_age: timedelta


def parse_since(text: str) -> timedelta | datetime:
    """``30s``, ``15m``, ``1h``, ``2d``, ``1w`` (that long ago) or an ISO 8601 time (without a
    zone: local time); ``ValueError`` naming both forms otherwise."""
    found = _DURATION.match(text.strip().lower())
    if found:
        return timedelta(seconds=float(found[1]) * _UNIT_SECONDS[found[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration like 30s, 15m, 1h, 2d, 1w nor an ISO 8601 time "
            "like 2026-12-06T10:00"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def runs_query(
    *,
    flow: str | None = None,
    status: str | None = None,
    since: datetime | timedelta | None = None,
    limit: int = 50,
    before: RunsRow | None = None,
) -> Query[RunsRow]:
    """Runs, newest first (``started_at``, then ``run_id``): of one flow, in one status,
    started at or after ``since`` (a time, or that long before the database's ``now()``),
    at most ``limit``; ``before`` (the last row of the previous page) continues a listing."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1 (got {limit})")
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r} (one of {', '.join(RUN_STATUSES)})")
    where: list[sql.Composable] = []
    params: dict[str, Any] = {"limit": limit}
    if flow is not None:
        where.append(sql.SQL("r.flow_slug = %(flow)s"))
        params["flow"] = flow
    if status is not None:
        where.append(sql.SQL("r.status = %(status)s"))
        params["status"] = status
    if isinstance(since, timedelta):
        where.append(sql.SQL("r.started_at >= now() - %(since)s::interval"))
        params["since"] = since
    elif since is not None:
        where.append(sql.SQL("r.started_at >= %(since)s"))
        params["since"] = since
    if before is not None:
        where.append(sql.SQL("(r.started_at, r.run_id) < (%(before_at)s, %(before_id)s)"))
        params.update(before_at=before.started_at, before_id=before.run_id)
    statement = sql.SQL(
        "select r.* from pgflow.runs as r{where} order by r.started_at desc, r.run_id desc"
        " limit %(limit)s"
    ).format(where=_where(where))
    return Query(statement, params, RunsRow.model_validate)


def _where(conditions: list[sql.Composable]) -> sql.Composable:
    """`` where a and b…``, or nothing without conditions."""
    return sql.SQL(" where ") + sql.SQL(" and ").join(conditions) if conditions else sql.SQL("")


def flows_query() -> Query[FlowSummary]:
    """Every flow by slug, with its step count and number of started runs."""
    statement = sql.SQL(
        "select f.*,"
        " (select count(*) from pgflow.steps as s where s.flow_slug = f.flow_slug) as step_count,"
        " (select count(*) from pgflow.runs as r"
        "   where r.flow_slug = f.flow_slug and r.status = 'started') as active_runs"
        " from pgflow.flows as f order by f.flow_slug"
    )
    return Query(statement, {}, _flow_summary)


def _flow_summary(row: dict[str, Any]) -> FlowSummary:
    return FlowSummary(FlowsRow.model_validate(row), row["step_count"], row["active_runs"])


def workers_query(
    *, flow: str | None = None, include_stopped: bool = False
) -> Query[WorkerSummary]:
    """Registered workers, newest first: those not stopped (all with ``include_stopped``),
    of one flow's queue when ``flow`` is given."""
    where: list[sql.Composable] = []
    if not include_stopped:
        where.append(sql.SQL("w.stopped_at is null"))
    if flow is not None:
        where.append(sql.SQL("w.queue_name = %(flow)s"))
    statement = sql.SQL(
        "select w.*, now() - w.last_heartbeat_at as heartbeat_age from pgflow.workers as w"
        "{where} order by w.started_at desc, w.worker_id"
    ).format(where=_where(where))
    return Query(statement, {"flow": flow}, _worker_summary)


def _worker_summary(row: dict[str, Any]) -> WorkerSummary:
    return WorkerSummary(WorkersRow.model_validate(row), row["heartbeat_age"])


def tasks_query(run_id: uuid.UUID, *, status: str | None = None) -> Query[StepTasksRow]:
    """A run's tasks in step order, then task order (only those in ``status`` when given),
    with their failure details (``error_message``, ``error_type``, ``error_traceback``)."""
    if status is not None and status not in TASK_STATUSES:
        raise ValueError(f"unknown task status {status!r} (one of {', '.join(TASK_STATUSES)})")
    statement = sql.SQL(
        "select t.* from pgflow.step_tasks as t"
        " join pgflow.steps as s on s.flow_slug = t.flow_slug and s.step_slug = t.step_slug"
        " where t.run_id = %(run_id)s{status} order by s.step_index, t.task_index"
    ).format(status=sql.SQL(" and t.status = %(status)s") if status else sql.SQL(""))
    return Query(statement, {"run_id": run_id, "status": status}, StepTasksRow.model_validate)
