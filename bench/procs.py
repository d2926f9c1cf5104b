"""Driver processes: ``python -m bench.procs MODE --dsn DSN --flow SLUG [options]``.

Modes:

* ``worker`` - the real Python worker (:func:`pgweave.worker.run_workers`) serving the flow
  with its no-op handlers;
* ``raw-task`` - a raw SQL loop with the pgflow-compatible calls: ``pgmq.read_with_poll`` ->
  ``pgflow.start_tasks`` -> one ``pgflow.complete_task`` per task;
* ``raw-batch`` - the same loop with the batch protocol: ``pgflow.read_and_start_tasks`` ->
  one ``pgflow.complete_tasks`` per batch.

Protocol with the coordinator (bench.cli): the process connects and prepares, prints
``ready``, waits for a line on stdin (``go``), drives until SIGTERM, then prints one JSON line
with its statistics (CPU seconds since ``go``, peak RSS, tasks completed, timings of calls
that completed a type-violating task).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import time
import uuid
from types import FrameType
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.handlers import output_for

READ = "select msg_id from pgmq.read_with_poll(%s, %s, %s, %s, %s)"
START = (
    "select run_id, step_slug, task_index, input, flow_input"
    " from pgflow.start_tasks(%s, %s::bigint[], %s)"
)
COMPLETE = "select 1 from pgflow.complete_task(%s, %s, %s, %s)"
READ_AND_START = (
    "select run_id, step_slug, task_index, input, flow_input"
    " from pgflow.read_and_start_tasks(%s, %s, %s, %s)"
)
COMPLETE_MANY = (
    "select count(*) from pgflow.complete_tasks(%s::uuid[], %s::text[], %s::integer[], %s::jsonb[])"
)
VIOLATING_STEPS = {("bench_w5", "bad")}


class Stats:
    """What a driver process reports at the end."""

    def __init__(self) -> None:
        self.cpu_at_go = 0.0
        self.completed = 0
        self.round_trips = 0
        self.violation_calls: list[float] = []

    def report(self, extra: dict[str, Any] | None = None) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(
            json.dumps(
                {
                    "cpu_s": time.process_time() - self.cpu_at_go,
                    "maxrss_kb": usage.ru_maxrss,
                    "completed": self.completed,
                    "round_trips": self.round_trips,
                    "violation_calls_s": self.violation_calls,
                    **(extra or {}),
                }
            ),
            flush=True,
        )


def _handshake(stats: Stats) -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    stats.cpu_at_go = time.process_time()


class _Stop:
    """SIGTERM: stop after the current call; a long poll waiting for messages is cancelled
    on the server (raising in the handler instead could leave the connection mid-command)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.requested = False
        self.polling = False
        self._conn = conn
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.polling:
            self._conn.cancel_safe()


def run_raw(args: argparse.Namespace, *, batch: bool) -> None:
    """The raw SQL driver loop (per-task or batch protocol) until SIGTERM."""
    stats = Stats()
    worker_id = uuid.uuid4()
    flow = args.flow
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        stop = _Stop(conn)
        conn.execute(
            "select pgflow.register_worker(%s, %s, %s)", (worker_id, flow, f"bench-{args.mode}")
        )
        _handshake(stats)
        try:
            _raw_loop(conn, args, stop, stats, worker_id, batch=batch)
        except psycopg.errors.QueryCanceled:
            # the long poll cancelled at SIGTERM (or a call just after it: autocommit, so
            # nothing half-done; the case ends only once all its work is done)
            if not stop.requested:
                raise
        conn.execute("select pgflow.mark_worker_stopped(%s)", (worker_id,))
    stats.report()


def _raw_loop(
    conn: psycopg.Connection,
    args: argparse.Namespace,
    stop: _Stop,
    stats: Stats,
    worker_id: uuid.UUID,
    *,
    batch: bool,
) -> None:
    flow = args.flow
    while not stop.requested:
        if batch:
            tasks = conn.execute(READ_AND_START, (flow, worker_id, args.batch, args.vt)).fetchall()
            stats.round_trips += 1
            if not tasks:
                # read_and_start_tasks does not wait: poll at pgflow's interval
                time.sleep(args.poll_ms / 1000)
                continue
            outputs = [Jsonb(output_for(flow, t[1], t[3], t[4])) for t in tasks]
            violating = any((flow, t[1]) in VIOLATING_STEPS for t in tasks)
            started = time.perf_counter()
            conn.execute(
                COMPLETE_MANY,
                ([t[0] for t in tasks], [t[1] for t in tasks], [t[2] for t in tasks], outputs),
            )
            if violating:
                stats.violation_calls.append(time.perf_counter() - started)
            stats.round_trips += 1
            stats.completed += len(tasks)
            continue
        stop.polling = True
        try:
            ids = [
                row[0]
                for row in conn.execute(
                    READ, (flow, args.vt, args.batch, args.poll_seconds, args.poll_ms)
                ).fetchall()
            ]
        finally:
            stop.polling = False
        stats.round_trips += 1
        if not ids:
            continue
        tasks = conn.execute(START, (flow, ids, worker_id)).fetchall()
        stats.round_trips += 1
        for run_id, step_slug, task_index, task_input, flow_input in tasks:
            output = Jsonb(output_for(flow, step_slug, task_input, flow_input))
            started = time.perf_counter()
            conn.execute(COMPLETE, (run_id, step_slug, task_index, output))
            if (flow, step_slug) in VIOLATING_STEPS:
                stats.violation_calls.append(time.perf_counter() - started)
            stats.round_trips += 1
            stats.completed += 1


def run_worker(args: argparse.Namespace) -> None:
    """The real Python worker with the flow's no-op handlers until SIGTERM."""
    from bench.flows import FLOWS
    from pgweave.config import WorkerConfig
    from pgweave.worker import Worker, run_workers

    stats = Stats()
    config = WorkerConfig(
        max_concurrent=args.concurrency,
        batch_size=args.batch,
        visibility_timeout=args.vt,
        max_poll_seconds=args.poll_seconds,
        poll_interval_ms=args.poll_ms,
        requeue_interval=0,
    )

    def on_ready(workers: list[Worker]) -> None:
        _handshake(stats)

    workers = asyncio.run(run_workers([FLOWS[args.flow]], args.dsn, config, on_ready=on_ready))
    stats.completed = sum(w.stats.completed for w in workers)
    stats.report({"failed": sum(w.stats.failed for w in workers)})


def main(argv: list[str] | None = None) -> None:
    """Entry point of a driver process."""
    parser = argparse.ArgumentParser(prog="python -m bench.procs")
    parser.add_argument("mode", choices=["worker", "raw-task", "raw-batch"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--flow", required=True)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--vt", type=int, default=5)
    parser.add_argument("--poll-seconds", type=int, default=2)
    parser.add_argument("--poll-ms", type=int, default=100)
    args = parser.parse_args(argv)
    if args.mode == "worker":
        run_worker(args)
    else:
        run_raw(args, batch=args.mode == "raw-batch")


if __name__ == "__main__":
    main()
