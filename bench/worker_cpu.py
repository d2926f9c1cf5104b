"""``python -m bench.worker_cpu``: the Python worker's CPU per task on a W1-like load.

One worker (in this process; 50 concurrent tasks, batches of 50) serves ``bench_w1`` on a
durable throwaway cluster (or ``--dsn``) while another process starts the runs, 100 per
``start_flows`` call (``--drain-only``: all started before the worker). The worker's CPU
time (this process, from ready to the last run completed) per task is printed per round;
``--profile`` adds a cProfile of CPU time, ``--no-listen`` runs the worker without events.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import subprocess
import sys
import time
from typing import Any

import psycopg

from bench.cluster import Server
from bench.flows import FLOWS
from pgweave.config import WorkerConfig
from pgweave.worker import Worker, run_workers

STARTER = """
import sys, psycopg
from psycopg.types.json import Jsonb
runs = int(sys.argv[2])
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    for first in range(0, runs, 100):
        inputs = [Jsonb({"n": i}) for i in range(first, min(runs, first + 100))]
        conn.execute("select count(*) from pgflow.start_flows('bench_w1', %s::jsonb[])", (inputs,))
"""
COMPLETED = "select count(*) from pgflow.runs where status = 'completed'"


def measure(dsn: str, runs: int, listen: bool, drain_only: bool) -> tuple[float, float]:
    """CPU seconds and wall seconds of one worker from ready to ``runs`` runs completed."""
    starter = [sys.executable, "-c", STARTER, dsn, str(runs)]
    if drain_only:
        subprocess.run(starter, check=True)
    config = WorkerConfig(max_concurrent=50, batch_size=50, requeue_interval=0, listen=listen)
    marks: dict[str, Any] = {}

    async def main() -> None:
        workers: list[Worker] = []

        def ready(started: list[Worker]) -> None:
            workers.extend(started)
            marks["cpu"], marks["wall"] = time.process_time(), time.perf_counter()
            if not drain_only:
                marks["starter"] = subprocess.Popen(starter)

        async def until_done() -> None:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                while True:
                    await asyncio.sleep(0.1)
                    row = await (await conn.execute(COMPLETED)).fetchone()
                    if row and row[0] >= runs:
                        break
            marks["cpu"] = time.process_time() - marks["cpu"]
            marks["wall"] = time.perf_counter() - marks["wall"]
            for worker in workers:
                worker.request_stop("done")

        watcher = asyncio.create_task(until_done())
        await run_workers([FLOWS["bench_w1"]], dsn, config, handle_signals=False, on_ready=ready)
        await watcher

    asyncio.run(main())
    if "starter" in marks:
        marks["starter"].wait()
    return float(marks["cpu"]), float(marks["wall"])


def main(argv: list[str] | None = None) -> None:
    """Measure ``--rounds`` rounds, each in a fresh database of one cluster."""
    parser = argparse.ArgumentParser(prog="python -m bench.worker_cpu", description=__doc__)
    parser.add_argument("--dsn", help="use this server instead of a throwaway durable cluster")
    parser.add_argument("--runs", type=int, default=5000, help="one-step runs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drain-only", action="store_true", help="start all runs first")
    parser.add_argument("--no-listen", action="store_true", help="worker without events")
    parser.add_argument("--profile", action="store_true", help="print a cProfile (CPU time)")
    args = parser.parse_args(argv)
    server = Server.start(args.dsn)
    try:
        server.prepare_template()
        for round_ in range(args.rounds):
            db = server.case_database()
            profile = cProfile.Profile(time.process_time) if args.profile else None
            if profile is not None:
                profile.enable()
            cpu, wall = measure(server.dsn(db), args.runs, not args.no_listen, args.drain_only)
            if profile is not None:
                profile.disable()
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(50)
                print(out.getvalue())
            print(
                f"round {round_}: {args.runs} tasks, worker CPU {1000 * cpu / args.runs:.4f}"
                f" ms/task, {args.runs / wall:.0f} tasks/s",
                flush=True,
            )
            server.discard_database(db)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
