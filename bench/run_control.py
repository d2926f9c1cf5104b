"""Run-control timings (issue 13): cancel_run and pause_run on a run with 10,000 queued map
tasks, and resume_run of a failed 10,000-element map with 9,999 completed tasks.

Each call is timed alone (autocommit, after a CHECKPOINT), median of ``--repeats``, on the
benchmark's durable throwaway cluster (or ``--dsn``). Like the other figures, each time is
also given relative to pgbench's tpcb-like TPS measured in the same run with one client:
``pgbench_tx`` = how many pgbench transactions fit in that time (ms x TPS / 1000).

    .venv/bin/python -m bench.run_control [--elements 10000] [--repeats 5] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.cluster import Server, pgbench_init, pgbench_tps

FLOW = "bench_rc"
CHUNK = 1000  # completions per complete_tasks call while preparing a resume


def define_flow(conn: psycopg.Connection) -> None:
    """A root map of one attempt, so one failure fails the run."""
    conn.execute("select pgflow.create_flow(%s, max_attempts => 1)", (FLOW,))
    conn.execute("select pgflow.add_step(%s, 'm', step_type => 'map')", (FLOW,))


def start_run(conn: psycopg.Connection, elements: int) -> uuid.UUID:
    """A run whose map has ``elements`` queued tasks."""
    row = conn.execute(
        "select run_id from pgflow.start_flow(%s, %s)", (FLOW, Jsonb(list(range(elements))))
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def failed_partial_run(conn: psycopg.Connection, elements: int, worker: uuid.UUID) -> uuid.UUID:
    """A failed run of the map: every task but the last completed, the last failed."""
    run_id = start_run(conn, elements)
    conn.execute(
        "select count(*) from pgflow.read_and_start_tasks(%s, %s, %s, 300)",
        (FLOW, worker, elements),
    )
    for first in range(0, elements - 1, CHUNK):
        indexes = list(range(first, min(first + CHUNK, elements - 1)))
        conn.execute(
            "select count(*) from pgflow.complete_tasks(%s::uuid[], %s::text[], %s::int[],"
            " %s::jsonb[])",
            ([run_id] * len(indexes), ["m"] * len(indexes), indexes, [Jsonb(i) for i in indexes]),
        )
    conn.execute(
        "select count(*) from pgflow.fail_task(%s, 'm', %s, 'the last one broke')",
        (run_id, elements - 1),
    )
    return run_id


def one(conn: psycopg.Connection, query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row if len(row) > 1 else row[0]


def timed(conn: psycopg.Connection, query: str, *params: Any) -> tuple[float, Any]:
    """Seconds of one statement after a checkpoint, and its first row."""
    conn.execute("checkpoint")
    t0 = time.perf_counter()
    row = conn.execute(query, params).fetchone()
    return time.perf_counter() - t0, row


def time_cancel(conn: psycopg.Connection, elements: int, _: uuid.UUID) -> tuple[float, list[str]]:
    run_id = start_run(conn, elements)
    seconds, _row = timed(conn, "select status from pgflow.cancel_run(%s)", run_id)
    check = one(
        conn,
        "select r.status,"
        " (select count(*) from pgflow.step_tasks t where t.run_id = r.run_id"
        "  and t.status = 'cancelled'),"
        f" (select count(*) from pgmq.q_{FLOW} q where q.message->>'run_id' = r.run_id::text)"
        " from pgflow.runs r where r.run_id = %s",
        run_id,
    )
    return seconds, [] if check == ("cancelled", elements, 0) else [f"after cancel: {check}"]


def time_pause(conn: psycopg.Connection, elements: int, _: uuid.UUID) -> tuple[float, list[str]]:
    run_id = start_run(conn, elements)
    seconds, _row = timed(conn, "select status from pgflow.pause_run(%s)", run_id)
    parked = one(
        conn,
        f"select count(*) from pgmq.q_{FLOW} q where q.message->>'run_id' = %s"
        " and q.vt = '9000-01-01 00:00:00+00'",
        str(run_id),
    )
    conn.execute("select pgflow.cancel_run(%s)", (run_id,))  # the next repeat starts clean
    return seconds, [] if parked == elements else [f"{parked} of {elements} messages parked"]


def time_resume(
    conn: psycopg.Connection, elements: int, worker: uuid.UUID
) -> tuple[float, list[str]]:
    source = failed_partial_run(conn, elements, worker)
    seconds, row = timed(conn, "select run_id from pgflow.resume_run(%s)", source)
    check = one(
        conn,
        "select ss.remaining_tasks,"
        " (select count(*) from pgflow.step_tasks t where t.run_id = ss.run_id"
        "  and t.status = 'completed'),"
        " (select count(*) from pgflow.step_tasks t where t.run_id = ss.run_id"
        "  and t.status = 'queued')"
        " from pgflow.step_states ss where ss.run_id = %s",
        row[0],
    )
    conn.execute("select pgflow.cancel_run(%s)", (row[0],))
    expected = (1, elements - 1, 1)
    return seconds, [] if check == expected else [f"resumed run: {check}, expected {expected}"]


Case = Callable[[psycopg.Connection, int, uuid.UUID], tuple[float, list[str]]]
CASES: dict[str, Case] = {
    "cancel_run": time_cancel,
    "pause_run": time_pause,
    "resume_run": time_resume,
}


def measure(server: Server, elements: int, repeats: int) -> dict[str, Any]:
    """Every case ``repeats`` times (interleaved), in one fresh database."""
    db = server.case_database()
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    problems: list[str] = []
    worker = uuid.uuid4()
    try:
        with psycopg.connect(server.dsn(db), autocommit=True) as conn:
            define_flow(conn)
            conn.execute("select pgflow.register_worker(%s, %s, 'bench')", (worker, FLOW))
            for _ in range(repeats):
                for name, case in CASES.items():
                    seconds, found = case(conn, elements, worker)
                    samples[name].append(seconds)
                    problems.extend(f"{name}: {p}" for p in found)
    finally:
        server.discard_database(db)
    return {"samples_s": samples, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    """Run the timings, print them with their pgbench ratios, write JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.run_control", description=__doc__)
    parser.add_argument("--dsn", help="an existing server (needs CREATE DATABASE)")
    parser.add_argument("--elements", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/out/run_control.json"))
    args = parser.parse_args(argv)

    server = Server.start(args.dsn)
    try:
        server.prepare_template()
        pgdb = pgbench_init(server, scale=10)
        tps_before = pgbench_tps(server, pgdb, 1, args.pgbench_seconds)
        result = measure(server, args.elements, args.repeats)
        tps_after = pgbench_tps(server, pgdb, 1, args.pgbench_seconds)
    finally:
        server.stop()

    tps = (tps_before + tps_after) / 2
    doc: dict[str, Any] = {
        "elements": args.elements,
        "repeats": args.repeats,
        "pgbench_tps_k1": {"before": tps_before, "after": tps_after, "mean": tps},
        "timings": {},
        "problems": result["problems"],
    }
    print(
        f"pgbench tpcb-like TPS, 1 client: {tps:.0f} (before {tps_before:.0f}, after {tps_after:.0f})"
    )
    for name, samples in result["samples_s"].items():
        median_ms = 1000 * statistics.median(samples)
        doc["timings"][name] = {
            "median_ms": median_ms,
            "samples_ms": [1000 * s for s in samples],
            "pgbench_tx": median_ms * tps / 1000,
        }
        print(
            f"{name:<11} {args.elements:,} tasks: median {median_ms:7.1f} ms"
            f" = {median_ms * tps / 1000:6.1f} pgbench transactions"
        )
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
