"""``/metrics``: the engine's state in Prometheus' text format, computed from the database
at scrape time (so every dashboard replica reports the same figures)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from psycopg import AsyncConnection, sql

from pgweave.dashboard import queries
from pgweave.telemetry import TASK_DURATION_BUCKETS

# Task durations are reported for tasks completed within this window.
DURATION_WINDOW = "1 hour"


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


async def run_counts(conn: AsyncConnection[Any]) -> list[queries.Row]:
    """Runs per flow: all ever started (still stored), completed, failed, in progress."""
    return await queries.fetch(
        conn,
        "select f.flow_slug, count(r.*) as started,"
        " count(r.*) filter (where r.status = 'completed') as completed,"
        " count(r.*) filter (where r.status = 'failed') as failed,"
        " count(r.*) filter (where r.status = 'started') as running"
        " from pgflow.flows as f left join pgflow.runs as r on r.flow_slug = f.flow_slug"
        " group by f.flow_slug order by f.flow_slug",
    )


async def duration_buckets(conn: AsyncConnection[Any], flows: list[str]) -> list[queries.Row]:
    """Per flow, step and bucket (the number of bounds below the duration, as width_bucket
    counts): tasks completed within the window and their total seconds."""
    queued = await queries.with_queues(conn, flows)
    if not queued:
        return []
    query = sql.SQL(
        "with f as materialized ({})"
        " select flow_slug, step_slug, width_bucket(d, %s::float8[]) as bucket,"
        " count(*) as n, sum(d) as total"
        " from (select flow_slug, step_slug,"
        "   extract(epoch from completed_at - started_at)::float8 as d"
        "   from f where status = 'completed' and started_at is not null) as t"
        " group by 1, 2, 3 order by 1, 2, 3"
    ).format(queries.finished_tasks(queued, DURATION_WINDOW))
    return await queries.fetch(conn, query, list(TASK_DURATION_BUCKETS))


def _duration_family(rows: list[queries.Row]) -> GaugeHistogramMetricFamily:
    family = GaugeHistogramMetricFamily(
        "pgweave_task_duration_seconds",
        f"Durations of the tasks completed in the last {DURATION_WINDOW}, by flow and step.",
        labels=["flow", "step"],
    )
    per_step: dict[tuple[str, str], list[queries.Row]] = {}
    for row in rows:
        per_step.setdefault((row["flow_slug"], row["step_slug"]), []).append(row)
    for labels, step_rows in per_step.items():
        cumulative = [
            (str(bound), float(sum(r["n"] for r in step_rows if r["bucket"] <= index)))
            for index, bound in enumerate(TASK_DURATION_BUCKETS)
        ]
        total = float(sum(r["n"] for r in step_rows))
        seconds = float(sum(r["total"] for r in step_rows))
        family.add_metric(list(labels), [*cumulative, ("+Inf", total)], seconds)
    return family


async def render(conn: AsyncConnection[Any]) -> bytes:
    """The metrics page."""
    families: list[Metric] = []
    runs = await run_counts(conn)
    for name, column, text in (
        ("pgweave_runs_started", "started", "Runs started (still stored), by flow."),
        ("pgweave_runs_completed", "completed", "Runs completed (still stored), by flow."),
        ("pgweave_runs_failed", "failed", "Runs failed (still stored), by flow."),
    ):
        counter = CounterMetricFamily(name, text, labels=["flow"])
        for row in runs:
            counter.add_metric([row["flow_slug"]], float(row[column]))
        families.append(counter)
    running = GaugeMetricFamily(
        "pgweave_runs_in_progress", "Runs not finished, by flow.", labels=["flow"]
    )
    for row in runs:
        running.add_metric([row["flow_slug"]], float(row["running"]))
    families.append(running)
    flows = [row["flow_slug"] for row in runs]
    families.append(_duration_family(await duration_buckets(conn, flows)))
    depth = GaugeMetricFamily(
        "pgweave_queue_messages",
        "Messages in a flow's queue: visible, in_flight (read, invisible) or delayed.",
        labels=["flow", "state"],
    )
    depths = await queries.queue_depths(conn, flows)
    for flow_slug, row in depths.items():
        for state in ("visible", "in_flight", "delayed"):
            depth.add_metric([flow_slug, state], float(row[state]))
    families.append(depth)
    workers = GaugeMetricFamily(
        "pgweave_workers",
        "Workers by queue and state (alive, stale, stopped).",
        labels=["queue", "state"],
    )
    for row in await queries.worker_counts(conn):
        for state in ("alive", "stale", "stopped"):
            workers.add_metric([row["queue_name"], state], float(row[state]))
    families.append(workers)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
