"""What the dashboard reads from the engine's tables (read-only, index-backed where it scales)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

Row = dict[str, Any]

PAGE_SIZE = 50
# A worker counts as alive while it heartbeats (every 5 s by default) within this window.
ALIVE_SECONDS = 30
# How much of a JSON value (input, output) a page shows at most, in characters.
JSON_PREVIEW_CHARS = 4000
# How much of a traceback a page shows at most (its end), in characters.
TRACEBACK_CHARS = 4000
# Failed tasks, timeline entries and restarts shown on a run page at most.
ERRORS_SHOWN = 20
RESTARTS_SHOWN = 20
TIMELINE_ENTRIES = 200


async def fetch(
    conn: AsyncConnection[Any], query: str | sql.SQL | sql.Composed, *params: Any
) -> list[Row]:
    """Rows of a query as dicts (one mapping argument binds named parameters)."""
    args = params[0] if len(params) == 1 and isinstance(params[0], dict) else params
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, args)
        return await cur.fetchall()


# -- runs list ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilter:
    """The runs page's filters; ``after`` is the keyset cursor of the previous page."""

    flow: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, uuid.UUID] | None = None
    limit: int = PAGE_SIZE


def encode_cursor(started_at: datetime, run_id: uuid.UUID) -> str:
    """An opaque keyset cursor for the row a page ended with."""
    return base64.urlsafe_b64encode(f"{started_at.isoformat()}|{run_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (started_at, run_id) of a cursor; ValueError when it is not one."""
    try:
        started, _, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(started), uuid.UUID(run_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a page cursor: {cursor!r}") from exc


def runs_query(filters: RunFilter) -> tuple[sql.Composed, list[Any]]:
    """Newest runs first matching ``filters``, one more than a page (to know if more follow).

    Ordered by (started_at, run_id) descending, so idx_runs_started_at (or, for one flow,
    idx_runs_flow_started_at) serves both the order and the keyset condition."""
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    for column, op, value in (
        ("flow_slug", "=", filters.flow),
        ("status", "=", filters.status),
        ("started_at", ">=", filters.since),
        ("started_at", "<", filters.until),
    ):
        if value is not None:
            conditions.append(sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(op)))
            params.append(value)
    if filters.after is not None:
        conditions.append(sql.SQL("(started_at, run_id) < (%s, %s)"))
        params.extend(filters.after)
    where = sql.SQL(" where ") + sql.SQL(" and ").join(conditions) if conditions else sql.SQL("")
    query = sql.SQL(
        "select run_id, flow_slug, status, remaining_steps, started_at, completed_at, failed_at,"
        " cancelled_at, paused_at from pgflow.runs{} order by started_at desc, run_id desc limit %s"
    ).format(where)
    return query, [*params, filters.limit + 1]


async def list_runs(conn: AsyncConnection[Any], filters: RunFilter) -> tuple[list[Row], str | None]:
    """A page of runs and the cursor of the next page (None on the last page)."""
    query, params = runs_query(filters)
    rows = await fetch(conn, query, *params)
    if len(rows) <= filters.limit:
        return rows, None
    rows = rows[: filters.limit]
    return rows, encode_cursor(rows[-1]["started_at"], rows[-1]["run_id"])


async def flow_slugs(conn: AsyncConnection[Any]) -> list[str]:
    """Every flow's slug, sorted."""
    return [
        row["flow_slug"]
        for row in await fetch(conn, "select flow_slug from pgflow.flows order by 1")
    ]


# -- overview -------------------------------------------------------------------------------


async def runs_by_flow(conn: AsyncConnection[Any]) -> list[Row]:
    """Per flow: runs by status started in the last hour and in the last day (one range
    scan of idx_runs_flow_started_at per flow)."""
    return await fetch(
        conn,
        "select f.flow_slug, c.* from pgflow.flows as f cross join lateral ("
        " select count(*) filter (where r.started_at > now() - interval '1 hour' and r.status = 'started') as hour_started,"
        " count(*) filter (where r.started_at > now() - interval '1 hour' and r.status = 'completed') as hour_completed,"
        " count(*) filter (where r.started_at > now() - interval '1 hour' and r.status = 'failed') as hour_failed,"
        " count(*) filter (where r.started_at > now() - interval '1 hour' and r.status = 'cancelled') as hour_cancelled,"
        " count(*) filter (where r.status = 'started') as day_started,"
        " count(*) filter (where r.status = 'completed') as day_completed,"
        " count(*) filter (where r.status = 'failed') as day_failed,"
        " count(*) filter (where r.status = 'cancelled') as day_cancelled"
        " from pgflow.runs as r"
        " where r.flow_slug = f.flow_slug and r.started_at > now() - interval '1 day') as c"
        " order by f.flow_slug",
    )


async def with_queues(conn: AsyncConnection[Any], flows: list[str]) -> list[str]:
    """The flows (of ``flows``) whose pgmq queue exists."""
    rows = await fetch(
        conn,
        "select flow_slug from unnest(%s::text[]) as flow_slug"
        " where to_regclass(format('pgmq.%%I', 'q_' || lower(flow_slug))) is not null",
        flows,
    )
    return [row["flow_slug"] for row in rows]


def _per_queue(template: str, flows: list[str], table_prefix: str) -> sql.Composed:
    """``template`` once per flow ({flow}: its slug, {table}: its pgmq table), union all."""
    return sql.SQL(" union all ").join(
        sql.SQL(template).format(
            flow=sql.Literal(flow), table=sql.Identifier(table_prefix + flow.lower())
        )
        for flow in flows
    )


async def queue_depths(conn: AsyncConnection[Any], flows: list[str]) -> dict[str, Row]:
    """Per flow with a queue: messages queued, visible now, in flight (read, not yet
    visible again) and delayed (never read, visible later)."""
    queued = await with_queues(conn, flows)
    if not queued:
        return {}
    query = _per_queue(
        "select {flow} as flow_slug, count(*) as queued,"
        " count(*) filter (where vt <= now()) as visible,"
        " count(*) filter (where vt > now() and read_ct > 0) as in_flight,"
        " count(*) filter (where vt > now() and read_ct = 0) as delayed"
        " from pgmq.{table}",
        queued,
        "q_",
    )
    return {row["flow_slug"]: row for row in await fetch(conn, query)}


def finished_tasks(flows: list[str], window: str) -> sql.Composed:
    """The tasks (flow_slug, step_slug, status, started_at, completed_at) of ``flows`` whose
    queue message was archived within ``window``, i.e. that ended then. Found through the
    archive's index on archived_at, then each task by the primary key its message names
    (run_id, step_slug, task_index), so it costs what the window holds, not the table.
    Filter its rows only outside a materialized CTE: a status condition pushed down into
    the join lets the planner pick a partial index without task_index instead."""
    return _per_queue(
        "select t.flow_slug, t.step_slug, t.status, t.started_at, t.completed_at"
        " from pgmq.{table} as a join pgflow.step_tasks as t"
        " on t.run_id = (a.message ->> 'run_id')::uuid"
        " and t.step_slug = a.message ->> 'step_slug'"
        " and t.task_index = (a.message ->> 'task_index')::integer"
        f" where a.archived_at > now() - interval '{window}'",
        flows,
        "a_",
    )


async def worker_counts(conn: AsyncConnection[Any]) -> list[Row]:
    """Workers per queue: alive (recent heartbeat), stale (silent) and stopped."""
    return await fetch(
        conn,
        f"select queue_name,"
        f" count(*) filter (where stopped_at is null and last_heartbeat_at > now() - interval '{ALIVE_SECONDS} seconds') as alive,"
        f" count(*) filter (where stopped_at is null and last_heartbeat_at <= now() - interval '{ALIVE_SECONDS} seconds') as stale,"
        f" count(*) filter (where stopped_at is not null) as stopped"
        f" from pgflow.workers group by queue_name order by queue_name",
    )


async def tasks_per_minute(conn: AsyncConnection[Any], flows: list[str]) -> int:
    """Tasks of ``flows`` completed during the last minute."""
    queued = await with_queues(conn, flows)
    if not queued:
        return 0
    finished = finished_tasks(queued, "1 minute")
    query = sql.SQL(
        "with t as materialized ({}) select count(*) as n from t where status = 'completed'"
    ).format(finished)
    return int((await fetch(conn, query))[0]["n"])


# -- one run --------------------------------------------------------------------------------


def _preview(column: str, alias: str) -> str:
    return (
        f"left({column}::text, {JSON_PREVIEW_CHARS}) as {alias},"
        f" octet_length({column}::text) as {alias}_bytes"
    )


async def run(conn: AsyncConnection[Any], run_id: uuid.UUID) -> Row | None:
    """The run (input and output as size-limited previews) with its run-control state and
    its flow's pause, or None."""
    rows = await fetch(
        conn,
        "select r.run_id, r.flow_slug, r.status, r.remaining_steps, r.started_at,"
        " r.completed_at, r.failed_at, r.cancelled_at, r.cancel_reason, r.paused_at,"
        " r.restart_of_run_id, f.paused_at as flow_paused_at, "
        + _preview("r.input", "input")
        + ", "
        + _preview("r.output", "output")
        + " from pgflow.runs as r join pgflow.flows as f using (flow_slug) where r.run_id = %s",
        run_id,
    )
    return rows[0] if rows else None


async def restarts(conn: AsyncConnection[Any], run_id: uuid.UUID) -> list[Row]:
    """The runs that retry or resume this one (idx_runs_restart_of_run_id), oldest first."""
    return await fetch(
        conn,
        "select run_id, status, started_at from pgflow.runs where restart_of_run_id = %s"
        f" order by started_at, run_id limit {RESTARTS_SHOWN}",
        run_id,
    )


RUN_STEPS = sql.SQL(
    "select s.step_slug, s.step_type, s.step_index, ss.status, ss.remaining_tasks,"
    " ss.initial_tasks, ss.remaining_deps,"
    " case when ss.status = 'completed' then ss.initial_tasks"
    "   when ss.remaining_tasks is not null then ss.initial_tasks - ss.remaining_tasks end as tasks_done, ss.created_at, ss.started_at, ss.completed_at,"
    " ss.failed_at, ss.skipped_at, ss.skip_reason, ss.error_message, "
    + _preview("ss.output", "output")
    + ", t.attempts, t.max_attempts, t.tasks"
    " from pgflow.steps as s"
    " left join pgflow.step_states as ss on ss.run_id = %s and ss.step_slug = s.step_slug"
    " left join lateral ("
    "   select sum(attempts_count) as attempts, max(attempts_count) as max_attempts,"
    "   count(*) as tasks from pgflow.step_tasks as st"
    "   where st.run_id = %s and st.step_slug = s.step_slug"
    " ) as t on true"
    " where s.flow_slug = %s order by s.step_index",
)


async def run_steps(conn: AsyncConnection[Any], run_id: uuid.UUID, flow: str) -> list[Row]:
    """Each step of the run's flow in definition order, with its state in the run (NULL
    columns when the run has no state for it), tasks done (NULL before it starts) and its
    tasks' attempts."""
    return await fetch(conn, RUN_STEPS, run_id, run_id, flow)


async def task_errors(conn: AsyncConnection[Any], run_id: uuid.UUID) -> list[Row]:
    """The run's tasks that recorded an error (failed ones, or ones retried after one), with
    the error's type and the end of its traceback when the worker reported them."""
    return await fetch(
        conn,
        "select step_slug, task_index, status, attempts_count, failed_at, "
        + f"left(error_message, {JSON_PREVIEW_CHARS}) as error_message, error_type,"
        f" right(error_traceback, {TRACEBACK_CHARS}) as error_traceback,"
        " length(error_traceback) as error_traceback_chars"
        " from pgflow.step_tasks where run_id = %s and error_message is not null"
        f" order by coalesce(failed_at, queued_at) desc limit {ERRORS_SHOWN}",
        run_id,
    )


TIMELINE = sql.SQL(
    "select at, event, detail from ("
    " select started_at as at, 0 as rank, 'run:started' as event, null as detail from pgflow.runs where run_id = %(r)s"
    " union all select completed_at, 2, 'run:completed', null from pgflow.runs where run_id = %(r)s and completed_at is not null"
    " union all select failed_at, 2, 'run:failed', null from pgflow.runs where run_id = %(r)s and failed_at is not null"
    " union all select cancelled_at, 2, 'run:cancelled', left(cancel_reason, 200) from pgflow.runs where run_id = %(r)s and cancelled_at is not null"
    " union all select e.at, 1, 'step:' || ss.step_slug || ':' || e.what, e.detail"
    "   from pgflow.step_states as ss cross join lateral (values"
    "     (ss.started_at, 'started', null), (ss.completed_at, 'completed', null),"
    "     (ss.failed_at, 'failed', left(ss.error_message, 200)),"
    "     (ss.skipped_at, 'skipped', ss.skip_reason)) as e(at, what, detail)"
    "   where ss.run_id = %(r)s and e.at is not null"
    " union all select failed_at, 1, 'task:' || step_slug || '[' || task_index || ']:failed', left(error_message, 200)"
    "   from pgflow.step_tasks where run_id = %(r)s and status = 'failed'"
    f") as events order by at, rank, event limit {TIMELINE_ENTRIES}",
)


async def timeline(conn: AsyncConnection[Any], run_id: uuid.UUID) -> list[Row]:
    """The run's events in time order, rebuilt from the timestamps the engine stores (the
    same transitions its events announce), plus failed tasks; within one transaction (one
    timestamp) the run's start comes first and its end last."""
    return await fetch(conn, TIMELINE, {"r": run_id})


# -- flows and workers ----------------------------------------------------------------------


async def flow(conn: AsyncConnection[Any], slug: str) -> Row | None:
    """A flow's options, or None."""
    rows = await fetch(conn, "select * from pgflow.flows where flow_slug = %s", slug)
    return rows[0] if rows else None


async def flow_steps(conn: AsyncConnection[Any], slug: str) -> list[Row]:
    """A flow's steps in definition order with their options, conditions and dependencies."""
    return await fetch(
        conn,
        "select s.*, coalesce(array_agg(d.dep_slug order by d.dep_slug)"
        "   filter (where d.dep_slug is not null), '{}') as deps"
        " from pgflow.steps as s"
        " left join pgflow.deps as d on d.flow_slug = s.flow_slug and d.step_slug = s.step_slug"
        " where s.flow_slug = %s group by s.flow_slug, s.step_slug order by s.step_index",
        slug,
    )


async def flow_deps(conn: AsyncConnection[Any], slug: str) -> list[tuple[str, str]]:
    """A flow's edges as (parent, child)."""
    rows = await fetch(
        conn, "select dep_slug, step_slug from pgflow.deps where flow_slug = %s order by 1, 2", slug
    )
    return [(row["dep_slug"], row["step_slug"]) for row in rows]


async def workers(conn: AsyncConnection[Any]) -> list[Row]:
    """The most recently seen workers (alive, stale or stopped)."""
    return await fetch(
        conn,
        "select worker_id, queue_name, function_name, started_at, last_heartbeat_at, stopped_at,"
        " deprecated_at, case when stopped_at is not null then 'stopped'"
        f" when last_heartbeat_at > now() - interval '{ALIVE_SECONDS} seconds' then 'alive'"
        " else 'stale' end as state"
        " from pgflow.workers order by stopped_at is not null, last_heartbeat_at desc limit 200",
    )
