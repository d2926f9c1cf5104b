"""Dashboard speed: the runs page with a million runs and the page of a run with a
10,000-task map, measured as server time (the ASGI app called in-process, no network).

    .venv/bin/python -m bench.dashboard [--runs 1000000] [--map 10000] [--dsn DSN]

Fills a database (a throwaway cluster unless --dsn) with ``--runs`` runs of ten one-step
flows (a run, its step state, its task and, once finished, the task's archived queue
message each) spread over 30 days, 98 % finished, plus one run
of a root map of ``--map`` elements, 60 % of them completed; then times each page
(median and p95 of 20 requests after 3 warm-ups) and writes the query plans (EXPLAIN
ANALYZE, BUFFERS) of the pages' queries to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from pgweave.dashboard import queries
from pgweave.dashboard.app import create_app
from pgweave.dashboard.config import DashboardConfig
from pgweave.embedded import EmbeddedPostgres
from pgweave.install import apply_migrations, install_pgmq

FLOWS = [f"flow_{n}" for n in range(10)]
REPEATS = 20
WARMUPS = 3


def fill_runs(conn: psycopg.Connection, runs: int) -> None:
    """``runs`` runs (90 % completed, 8 % failed, 2 % running) over the last 30 days."""
    for flow in FLOWS:
        conn.execute("select pgflow.create_flow(%s)", (flow,))
        conn.execute("select pgflow.add_step(%s, 'work')", (flow,))
    conn.execute(
        "create temp table seed as select n, gen_random_uuid() as run_id,"
        " 'flow_' || (n %% 10) as flow_slug,"
        " case when n %% 50 = 0 then 'started' when n %% 50 < 5 then 'failed' else 'completed' end as status,"
        " now() - (n::float8 / %s) * interval '30 days' as started_at"
        " from generate_series(1, %s) as n",
        (runs, runs),
    )
    conn.execute(
        "insert into pgflow.runs (run_id, flow_slug, status, input, output, remaining_steps,"
        " started_at, completed_at, failed_at)"
        " select run_id, flow_slug, status, '{\"n\": 1}',"
        " case when status = 'completed' then '{\"work\": 1}'::jsonb end,"
        " case when status = 'started' then 1 else 0 end, started_at,"
        " case when status = 'completed' then started_at + interval '2 seconds' end,"
        " case when status = 'failed' then started_at + interval '2 seconds' end from seed"
    )
    conn.execute(
        "insert into pgflow.step_states (flow_slug, run_id, step_slug, status, remaining_tasks,"
        " initial_tasks, created_at, started_at, completed_at, failed_at, output, error_message)"
        " select flow_slug, run_id, 'work', status, case when status = 'completed' then 0 else 1 end,"
        " 1, started_at, started_at, case when status = 'completed' then started_at + interval '1 second' end,"
        " case when status = 'failed' then started_at + interval '1 second' end,"
        " case when status = 'completed' then '1'::jsonb end,"
        " case when status = 'failed' then 'boom' end from seed"
    )
    conn.execute(
        "insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, status,"
        " attempts_count, output, queued_at, started_at, completed_at, failed_at, error_message,"
        " message_id)"
        " select flow_slug, run_id, 'work', 0, status, 1, case when status = 'completed' then '1'::jsonb end,"
        " started_at, started_at, case when status = 'completed' then started_at + interval '1 second' end,"
        " case when status = 'failed' then started_at + interval '1 second' end,"
        " case when status = 'failed' then 'boom' end, n from seed"
    )
    for flow in FLOWS:  # the finished tasks' messages, archived when they ended
        conn.execute(
            psycopg.sql.SQL(
                "insert into pgmq.{} (msg_id, read_ct, enqueued_at, archived_at, vt, message)"
                " select n, 1, started_at, started_at + interval '1 second', started_at,"
                " jsonb_build_object('flow_slug', flow_slug, 'run_id', run_id,"
                " 'step_slug', 'work', 'task_index', 0)"
                " from seed where flow_slug = %s and status <> 'started'"
            ).format(psycopg.sql.Identifier(f"a_{flow}")),
            (flow,),
        )
    conn.execute("drop table seed")


def big_map_run(conn: psycopg.Connection, size: int) -> uuid.UUID:
    """A run of a root map of ``size`` elements with 60 % of its tasks completed."""
    conn.execute("select pgflow.create_flow('big_map')")
    conn.execute("select pgflow.add_step('big_map', 'each', step_type => 'map')")
    conn.execute("select pgflow.add_step('big_map', 'total', array['each'])")
    [(run_id,)] = conn.execute(
        "select run_id from pgflow.start_flow('big_map', %s)", (Jsonb(list(range(size))),)
    ).fetchall()
    worker = uuid.uuid4()
    conn.execute(
        "insert into pgflow.workers (worker_id, queue_name, function_name) values (%s, 'big_map', 'bench')",
        (worker,),
    )
    done = 0
    while done < size * 6 // 10:
        tasks = conn.execute(
            "select run_id, step_slug, task_index from pgflow.read_and_start_tasks('big_map', %s, 1000, 60)",
            (worker,),
        ).fetchall()
        conn.execute(
            "select pgflow.complete_tasks(%s, %s, %s, %s)",
            (
                [t[0] for t in tasks],
                [t[1] for t in tasks],
                [t[2] for t in tasks],
                [Jsonb({"i": t[2]}) for t in tasks],
            ),
        )
        done += len(tasks)
    return uuid.UUID(str(run_id))


async def time_pages(dsn: str, pages: dict[str, str]) -> dict[str, dict[str, float]]:
    """Median and p95 milliseconds of each page, the app called in-process."""
    app = create_app(DashboardConfig(dsn=dsn, read_only=True))
    results: dict[str, dict[str, float]] = {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client,
    ):
        for name, url in pages.items():
            samples = []
            for n in range(WARMUPS + REPEATS):
                started = time.perf_counter()
                response = await client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (url, response.status_code)
                if n >= WARMUPS:
                    samples.append(elapsed)
            samples.sort()
            results[name] = {
                "median_ms": round(statistics.median(samples), 1),
                "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 1),
            }
            print(
                f"{name:32} median {results[name]['median_ms']:7.1f} ms   p95 {results[name]['p95_ms']:7.1f} ms"
            )
    return results


def explain(conn: psycopg.Connection, query: Any, params: Any) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a query."""
    rows = conn.execute(psycopg.sql.SQL("explain (analyze, buffers) ") + query, params).fetchall()
    return "\n".join(row[0] for row in rows)


def main() -> None:
    """Fill, time, explain; print and write the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--map", type=int, default=10_000)
    parser.add_argument("--dsn", help="an existing database (the engine is installed into it)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/dashboard.json"))
    args = parser.parse_args()
    cluster = None
    if args.dsn:
        dsn = args.dsn
    else:
        cluster = EmbeddedPostgres(settings={"shared_buffers": "512MB", "work_mem": "16MB"})
        cluster.start()
        dsn = cluster.dsn("postgres")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            install_pgmq(conn)
            apply_migrations(conn)
            started = time.perf_counter()
            fill_runs(conn, args.runs)
            map_run = big_map_run(conn, args.map)
            conn.execute("vacuum analyze")
            print(
                f"filled {args.runs:,} runs and a {args.map:,}-task map in {time.perf_counter() - started:.0f} s"
            )
            [(count,)] = conn.execute("select count(*) from pgflow.runs").fetchall()
            page100 = conn.execute(
                "select started_at, run_id from pgflow.runs order by started_at desc, run_id desc"
                " offset %s limit 1", (queries.PAGE_SIZE * 100 - 1,),
            ).fetchone()  # fmt: skip
            assert page100 is not None
            cursor = queries.encode_cursor(page100[0], page100[1])
            pages = {
                "runs (newest)": "/runs",
                "runs (one flow)": "/runs?flow=flow_3",
                "runs (failed)": "/runs?status=failed",
                "runs (one flow, failed)": "/runs?flow=flow_3&status=failed",
                "runs (page 101, keyset)": f"/runs?after={cursor}",
                "runs (time range)": "/runs?since=2000-01-01T00:00:00&until=2100-01-01T00:00:00",
                f"run ({args.map:,}-task map)": f"/runs/{map_run}",
                "overview": "/",
                "metrics": "/metrics",
            }
            timings = asyncio.run(time_pages(dsn, pages))
            found = {}
            for name, filters in {
                "runs: newest": queries.RunFilter(),
                "runs: one flow": queries.RunFilter(flow="flow_3"),
                "runs: status failed": queries.RunFilter(status="failed"),
                "runs: page 101 (keyset)": queries.RunFilter(after=(page100[0], page100[1])),
            }.items():
                query, params = queries.runs_query(filters)
                found[name] = explain(conn, query, params)
            found[f"run page: steps ({args.map:,}-task map)"] = explain(
                conn, queries.RUN_STEPS, (map_run, map_run, "big_map")
            )
            found["run page: timeline"] = explain(conn, queries.TIMELINE, {"r": map_run})
            found["overview and metrics: tasks that ended in the last minute"] = explain(
                conn, queries.finished_tasks(FLOWS, "1 minute"), None
            )
        report = {"runs": count, "map": args.map, "pages": timings, "plans": found}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        for name, plan in found.items():
            print(f"\n-- {name}\n{plan}")
        print(f"\nwrote {args.out}")
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
