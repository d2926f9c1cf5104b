"""``python -m bench.million``: the engine with a million finished runs in its tables (issue 17).

    python -m bench.million                 # 1,000,000 runs (~15 min on 2 cores)
    python -m bench.million --runs 50000 --repeat 1

One durable throwaway cluster (or ``--dsn``), two databases from the bench template:
``empty`` and ``filled`` (``bench.history``: ``--runs`` completed runs over ``--days``, with
their step states, tasks, archived messages and workers, then VACUUM ANALYZE). Then:

1. **Throughput**: W1-W3 start + drain (bench.runner's cases, K = 1, each driver), on empty
   and filled alternately (empty/filled, then filled/empty in the next repetition), the
   workload's rows deleted after each case; medians and filled / empty ratios.
2. **Plans**: every hot call and the client's listing queries on the filled database, with
   the plan of each statement they run (``bench.plans``); sequential scans of a big table
   are flagged.
3. **Pruning**: ``prune_data_older_than_batched`` (one batch per transaction, a client loop)
   removes two thirds of the history while W1 runs back to back beside it; then
   ``prune_data_older_than`` (one transaction) half of the rest. Per-batch times, W1's
   throughput during the pruning, lock waits seen in ``pg_stat_activity``, and what is left
   (no old run, no old archived message).

Everything goes to ``bench/out/million.json``; a summary to the terminal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from rich.console import Console

from bench import PROJECT_ROOT, history
from bench.cluster import Server
from bench.plans import PlanRecorder, grouped, seq_scans, summary
from bench.runner import Options, phase, run_case
from bench.workloads import Workload, workloads
from pgweave import listing

BIG_TABLES = {"runs", "step_states", "step_tasks"} | {f"a_{f}" for f in history.FLOWS}


def cleanup(server: Server, db: str, flow: str) -> None:
    """Delete a workload's runs (its flow's rows and archived messages) after a case."""
    with psycopg.connect(server.dsn(db), autocommit=True) as conn, conn.transaction():
        for table in ("step_tasks", "step_states", "runs"):
            conn.execute(f"delete from pgflow.{table} where flow_slug = %s", (flow,))
        conn.execute(f"truncate pgmq.a_{flow}")


def fill(server: Server, db: str, runs: int, days: float, console: Console) -> dict[str, Any]:
    """The history in ``db`` (with a large max_wal_size while writing), checked and vacuumed."""
    with server.admin() as admin:
        admin.execute("alter system set max_wal_size = '16GB'")
        admin.execute("select pg_reload_conf()")
    try:
        with psycopg.connect(server.dsn(db), autocommit=True) as conn:
            t0 = time.perf_counter()
            steps = history.fill(conn, runs, days)
            fill_s = time.perf_counter() - t0
            console.print(f"  fill: {fill_s:.1f} s {_rounded(steps)}")
            vacuum_s = history.vacuum_analyze(conn)
            console.print(f"  vacuum analyze: {vacuum_s:.1f} s")
            problems = history.check(conn)
            sizes = history.sizes(conn)
    finally:
        with server.admin() as admin:
            admin.execute("alter system reset max_wal_size")
            admin.execute("select pg_reload_conf()")
            admin.execute("checkpoint")
    return {
        "runs": runs,
        "days": days,
        "fill_s": fill_s,
        "fill_steps_s": steps,
        "vacuum_analyze_s": vacuum_s,
        "sizes": sizes,
        "problems": problems,
    }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in values.items()}


def throughput(
    server: Server,
    dbs: dict[str, str],
    cases: list[Workload],
    drivers: list[str],
    repeat: int,
    console: Console,
) -> dict[str, Any]:
    """Every workload x driver on both databases, alternated; samples, medians, ratios."""
    options = Options(ks=[1], drivers=drivers)
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rep in range(repeat):
        order = ["empty", "filled"] if rep % 2 == 0 else ["filled", "empty"]
        for workload in cases:
            for driver in drivers:
                key = f"{workload.key} {driver}"
                for side in order:
                    result = run_case(server, workload, driver, 1, options, shared_db=dbs[side])
                    cleanup(server, dbs[side], workload.flow)
                    samples.setdefault(key, {"empty": [], "filled": []})[side].append(
                        result.as_json()
                    )
                    console.print(
                        f"  {rep + 1}/{repeat} {key:<20} {side:<6}"
                        f" start+drain {result.start_to_finish_per_s:7.0f} tasks/s"
                        f"  drain {result.tasks_per_s:7.0f}"
                        f"  WAL/task {result.wal_bytes / result.tasks:6.0f} B"
                        f"{'  PROBLEMS ' + str(result.problems) if result.problems else ''}"
                    )
    summary_rows = {}
    for key, sides in samples.items():
        med = {
            side: {
                "start_to_finish_per_s": statistics.median(
                    s["start_to_finish_per_s"] for s in runs
                ),
                "drain_per_s": statistics.median(s["tasks_per_s"] for s in runs),
                "start_s": statistics.median(s["start_s"] for s in runs),
                "wal_bytes_per_task": statistics.median(s["wal_bytes_per_task"] for s in runs),
                "wal_fpi": statistics.median(s["wal_fpi"] or 0 for s in runs),
            }
            for side, runs in sides.items()
        }
        summary_rows[key] = {
            "medians": med,
            "ratio_start_to_finish": med["filled"]["start_to_finish_per_s"]
            / med["empty"]["start_to_finish_per_s"],
            "ratio_drain": med["filled"]["drain_per_s"] / med["empty"]["drain_per_s"],
            "ratio_start_s": med["filled"]["start_s"] / med["empty"]["start_s"],
        }
    problems = [
        f"{key} {side}: {p}"
        for key, sides in samples.items()
        for side, runs in sides.items()
        for s in runs
        for p in s["problems"]
    ]
    return {"samples": samples, "summary": summary_rows, "problems": problems}


# -- plans ----------------------------------------------------------------------------------


def hot_calls(
    conn: psycopg.Connection, it: int, worker: uuid.UUID, old_run: uuid.UUID
) -> dict[str, Callable[[], Any]]:
    """The hot calls of one iteration, in the order they run (each uses the previous ones'
    results through ``state``)."""
    state: dict[str, Any] = {}

    def one(query: str, *params: Any) -> Any:
        return conn.execute(query, params).fetchall()

    def complete_batch(key: str) -> Any:
        rows = state[key]
        return one(
            "select count(*) from pgflow.complete_tasks(%s::uuid[], %s::text[], %s::int[],"
            " %s::jsonb[])",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [Jsonb(1) for _ in rows],
        )

    def w2_start_tasks() -> Any:
        state["w2_tasks"] = one(
            "select run_id, step_slug, task_index from pgflow.start_tasks('bench_w2', %s, %s)",
            [m[0] for m in state["w2_msgs"]],
            worker,
        )
        return state["w2_tasks"]

    def w2_complete_one() -> Any:
        run_id, step, index = state["w2_tasks"][0]
        return one("select 1 from pgflow.complete_task(%s, %s, %s, '1')", run_id, step, index)

    def w2_fail_next() -> Any:
        msgs = one("select * from pgflow.poll_messages('bench_w2', 30, 10, 1, 50)")
        tasks = one(
            "select run_id, step_slug, task_index from pgflow.start_tasks('bench_w2', %s, %s)",
            [m[0] for m in msgs],
            worker,
        )
        return [one("select 1 from pgflow.fail_task(%s, %s, %s, 'boom')", *task) for task in tasks]

    calls: dict[str, Callable[[], Any]] = {
        "start_flow": lambda: one(
            "select run_id from pgflow.start_flow('bench_w1', %s)", Jsonb({"n": it})
        ),
        "start_flows (10 runs)": lambda: one(
            "select count(*) from pgflow.start_flows('bench_w1', %s::jsonb[])",
            [Jsonb({"n": i}) for i in range(10)],
        ),
        "read_and_start_tasks": lambda: state.update(
            w1_tasks=one(
                "select run_id, step_slug, task_index"
                " from pgflow.read_and_start_tasks('bench_w1', %s, 50, 30)",
                worker,
            )
        ),
        "complete_tasks": lambda: complete_batch("w1_tasks"),
        "start_flow (chain)": lambda: one(
            "select run_id from pgflow.start_flow('bench_w2', %s)", Jsonb({"n": it})
        ),
        "poll_messages": lambda: state.update(
            w2_msgs=one("select * from pgflow.poll_messages('bench_w2', 30, 10, 1, 50)")
        ),
        "start_tasks": w2_start_tasks,
        "complete_task": w2_complete_one,
        "fail_task": w2_fail_next,
        "start_flows (10 chains)": lambda: one(
            "select count(*) from pgflow.start_flows('bench_w2', %s::jsonb[])",
            [Jsonb({"n": i}) for i in range(10)],
        ),
        "read_and_start_tasks (chain)": lambda: state.update(
            w2_batch=one(
                "select run_id, step_slug, task_index"
                " from pgflow.read_and_start_tasks('bench_w2', %s, 50, 30)",
                worker,
            )
        ),
        "complete_tasks (chain: starts the next steps)": lambda: complete_batch("w2_batch"),
        "get_run_with_states (old run)": lambda: one(
            "select pgflow.get_run_with_states(%s)", old_run
        ),
        "requeue_stalled_tasks": lambda: one("select pgflow.requeue_stalled_tasks()"),
    }
    listings: dict[str, listing.Query[Any]] = {
        "runs: newest": listing.runs_query(),
        "runs: one flow": listing.runs_query(flow="hist_chain"),
        "runs: started": listing.runs_query(status="started"),
        "runs: failed (none)": listing.runs_query(status="failed"),
        "runs: since 1 h": listing.runs_query(since=timedelta(hours=1)),
        "flows": listing.flows_query(),
        "workers (all)": listing.workers_query(include_stopped=True),
        "tasks of an old run": listing.tasks_query(old_run),
    }
    for name, query in listings.items():
        calls[f"listing {name}"] = _runner(query, conn)
    return calls


def _runner(query: listing.Query[Any], conn: psycopg.Connection) -> Callable[[], Any]:
    return lambda: query.run(conn)


def plans(server: Server, db: str, iterations: int, console: Console) -> dict[str, Any]:
    """Every hot call ``iterations`` times (plpgsql switches to generic plans after five);
    the last iteration's plans, and every sequential scan of a big table in any."""
    result: dict[str, Any] = {}
    flagged: dict[str, set[str]] = {}
    worker = uuid.uuid4()
    with psycopg.connect(server.dsn(db), autocommit=True) as conn:
        recorder = PlanRecorder(conn)
        for flow in ("bench_w1", "bench_w2"):
            conn.execute("select pgflow.register_worker(%s, %s, 'plans')", (worker, flow))
        row = conn.execute(
            "select run_id from pgflow.runs where flow_slug = 'hist_chain'"
            " order by started_at offset (select count(*) / 20 from pgflow.runs) limit 1"
        ).fetchone()
        assert row is not None
        old_run = row[0]
        for it in range(iterations):
            for name, call in hot_calls(conn, it, worker, old_run).items():
                with recorder.recording() as logged:
                    t0 = time.perf_counter()
                    call()
                    ms = 1000 * (time.perf_counter() - t0)
                for entry in logged:
                    flagged.setdefault(name, set()).update(seq_scans(entry, BIG_TABLES))
                if it == iterations - 1:
                    result[name] = {"ms": ms, "statements": grouped([summary(e) for e in logged])}
    for name in result:
        result[name]["big_seq_scans"] = sorted(flagged.get(name, set()))
        worst = max((s["ms"] for s in result[name]["statements"]), default=0.0)
        scans = result[name]["big_seq_scans"]
        console.print(
            f"  {name:<34} {result[name]['ms']:8.2f} ms  {len(result[name]['statements']):3} stmts"
            f"  slowest {worst:7.2f} ms  {'SEQ SCAN ' + ', '.join(scans) if scans else 'ok'}"
        )
    for flow in ("bench_w1", "bench_w2"):
        cleanup(server, db, flow)
    return result


# -- pruning ----------------------------------------------------------------------------------


class Alongside:
    """W1 (raw batch driver, K = 1) run back to back in a thread, and a sampler of lock waits
    in the database, while something else runs."""

    def __init__(self, server: Server, db: str) -> None:
        self.server, self.db = server, db
        self.stop = threading.Event()
        self.w1: list[dict[str, Any]] = []
        self.lock_waits: list[dict[str, Any]] = []
        self.samples = 0
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._w1, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]

    def __enter__(self) -> Alongside:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _w1(self) -> None:
        w1 = next(w for w in workloads(False) if w.key == "W1")
        options = Options(ks=[1], drivers=["raw-batch"])
        try:
            while not self.stop.is_set():
                result = run_case(self.server, w1, "raw-batch", 1, options, shared_db=self.db)
                cleanup(self.server, self.db, w1.flow)
                self.w1.append(result.as_json())
        except Exception as error:  # reported with the results
            self.errors.append(repr(error))

    def _sample(self) -> None:
        with psycopg.connect(self.server.dsn(self.db), autocommit=True) as conn:
            while not self.stop.is_set():
                self.samples += 1
                for pid, query, since in conn.execute(
                    "select pid, left(query, 120), extract(epoch from now() - state_change)"
                    " from pg_stat_activity where datname = current_database()"
                    " and wait_event_type = 'Lock'"
                ).fetchall():
                    self.lock_waits.append({"pid": pid, "query": query, "waiting_s": since})
                time.sleep(0.02)

    def report(self) -> dict[str, Any]:
        """W1 during the operation, and the lock waits sampled."""
        rates = [s["start_to_finish_per_s"] for s in self.w1]
        return {
            "w1_cases": len(self.w1),
            "w1_start_to_finish_per_s": rates,
            "w1_median": statistics.median(rates) if rates else None,
            "w1_problems": [p for s in self.w1 for p in s["problems"]] + self.errors,
            "lock_wait_samples": len(self.lock_waits),
            "samples": self.samples,
            "lock_waits": self.lock_waits[:20],
        }


def prune(
    server: Server, db: str, days: float, batch_size: int, limit_s: float, console: Console
) -> dict[str, Any]:
    """Batched pruning of two thirds of the history beside W1 (stopped after ``limit_s``),
    then one prune_data_older_than call for the next day of it; times, W1 beside them, and
    what is left."""
    keep_batched = f"{days / 3} days"
    keep_single = f"{days / 3 - 1} days"
    out: dict[str, Any] = {"batch_size": batch_size}
    with psycopg.connect(server.dsn(db), autocommit=True) as conn:
        recorder = PlanRecorder(conn)
        with recorder.recording() as logged:
            first = conn.execute(
                "select * from pgflow.prune_data_older_than_batched(%s, %s, 1)",
                (keep_batched, batch_size),
            ).fetchall()
        out["first_batch_plans"] = grouped([summary(e) for e in logged])
        out["first_batch_seq_scans"] = sorted({s for e in logged for s in seq_scans(e, BIG_TABLES)})
        removed: dict[str, int] = {name: int(n) for name, n in first}
        batch_s: list[float] = []
        stopped = False
        t0 = time.perf_counter()
        with Alongside(server, db) as alongside:
            while True:
                b0 = time.perf_counter()
                rows = conn.execute(
                    "select * from pgflow.prune_data_older_than_batched(%s, %s, 1)",
                    (keep_batched, batch_size),
                ).fetchall()
                batch_s.append(time.perf_counter() - b0)
                for name, n in rows:
                    removed[name] = removed.get(name, 0) + int(n)
                if all(int(n) == 0 for _, n in rows):
                    break
                if time.perf_counter() - t0 > limit_s:
                    stopped = True
                    break
                if len(batch_s) % 100 == 0:
                    console.print(
                        f"  {len(batch_s)} batches, {time.perf_counter() - t0:.0f} s,"
                        f" last {1000 * batch_s[-1]:.0f} ms"
                    )
        out["batched"] = {
            "retention": keep_batched,
            "total_s": time.perf_counter() - t0,
            "batches": len(batch_s),
            "batch_ms": _distribution(batch_s),
            "batch_ms_by_tenth": [
                round(1000 * statistics.median(part), 1) for part in _tenths(batch_s)
            ],
            "removed": removed,
            "stopped_after_limit": stopped,
            "alongside": alongside.report(),
        }
        if stopped:
            console.print(f"  stopped after {limit_s:g} s: prune_data_older_than not timed")
            out["single_call"] = None
            row = conn.execute("select now() - %s::interval", (keep_batched,)).fetchone()
            assert row is not None
            out["left"] = left_after(conn, row[0])
            return out
        row = conn.execute("select now() - %s::interval", (keep_single,)).fetchone()
        assert row is not None
        with Alongside(server, db) as alongside:
            s0 = time.perf_counter()
            conn.execute("select pgflow.prune_data_older_than(%s)", (keep_single,))
            single_s = time.perf_counter() - s0
        out["single_call"] = {
            "retention": keep_single,
            "seconds": single_s,
            "alongside": alongside.report(),
        }
        out["left"] = left_after(conn, row[0])
    return out


def _distribution(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    return {
        "median": statistics.median(ms),
        "p90": ms[int(0.9 * (len(ms) - 1))],
        "p99": ms[int(0.99 * (len(ms) - 1))],
        "max": ms[-1],
    }


def _tenths(values: list[float]) -> list[list[float]]:
    size = max(1, len(values) // 10)
    return [values[i : i + size] for i in range(0, len(values), size)]


def left_after(conn: psycopg.Connection, cutoff: Any) -> dict[str, Any]:
    """What is left of the history: rows per table, and rows of before ``cutoff`` that the
    pruning had to remove (must be 0): finished runs and archived messages."""
    counts: dict[str, Any] = {}
    for table, old in (
        ("pgflow.runs", "coalesce(completed_at, failed_at, cancelled_at)"),
        *((f"pgmq.a_{flow}", "archived_at") for flow in history.FLOWS),
    ):
        row = conn.execute(
            f"select count(*), count(*) filter (where {old} < %s) from {table}", (cutoff,)
        ).fetchone()
        assert row is not None
        counts[table] = {"rows": int(row[0]), "older_than_retention": int(row[1])}
    for table in ("pgflow.step_states", "pgflow.step_tasks", "pgflow.workers"):
        row = conn.execute(f"select count(*) from {table}").fetchone()
        assert row is not None
        counts[table] = {"rows": int(row[0])}
    return counts


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Fill, measure, print, write the JSON; exit 1 on any problem."""
    parser = argparse.ArgumentParser(prog="python -m bench.million", description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000, help="finished runs to fill in")
    parser.add_argument("--days", type=float, default=30.0, help="span of their start times")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each case")
    parser.add_argument("--workloads", default="W1,W2,W3-1k,W3-10k")
    parser.add_argument("--drivers", default="raw-batch,raw-task")
    parser.add_argument("--plan-iterations", type=int, default=7)
    parser.add_argument("--prune-batch", type=int, default=1000)
    parser.add_argument(
        "--prune-seconds", type=float, default=300, help="stop the batched pruning after this"
    )
    parser.add_argument("--dsn", help="an existing server (needs CREATE DATABASE, superuser)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "out" / "million.json")
    args = parser.parse_args(argv)
    if args.runs < 20:
        parser.error("--runs must be at least 20 (one run of each kind)")
    console = Console(soft_wrap=True)
    keys = args.workloads.split(",")
    cases = [w for w in workloads(False) if w.key in keys]
    doc: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    started = time.perf_counter()
    server = Server.start(args.dsn)
    try:
        doc["server"] = server.server_info()
        with phase(console, "template and databases"):
            server.prepare_template()
            dbs = {side: server.case_database() for side in ("empty", "filled")}
            for db in dbs.values():
                with psycopg.connect(server.dsn(db), autocommit=True) as conn:
                    history.define_flows(conn)
        with phase(console, f"history: {args.runs:,} runs over {args.days:g} days"):
            doc["history"] = fill(server, dbs["filled"], args.runs, args.days, console)
        with phase(console, "throughput, empty vs filled"):
            doc["throughput"] = throughput(
                server, dbs, cases, args.drivers.split(","), args.repeat, console
            )
        with phase(console, "plans of the hot calls (filled)"):
            doc["plans"] = plans(server, dbs["filled"], args.plan_iterations, console)
        with phase(console, "pruning (filled)"):
            doc["prune"] = prune(
                server, dbs["filled"], args.days, args.prune_batch, args.prune_seconds, console
            )
    finally:
        server.stop()
    doc["total_s"] = time.perf_counter() - started
    problems = report(doc, console)
    doc["problems"] = problems
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(f"written to {args.out} ({doc['total_s']:.0f} s in all)")
    return 1 if problems else 0


def report(doc: dict[str, Any], console: Console) -> list[str]:
    """Print the figures that matter; return every problem found."""
    problems = list(doc["history"]["problems"]) + list(doc["throughput"]["problems"])
    console.print("[bold]filled / empty (medians), start + drain and drain only[/bold]")
    for key, row in doc["throughput"]["summary"].items():
        console.print(
            f"  {key:<20} start+drain {row['ratio_start_to_finish']:.2f}"
            f"  drain {row['ratio_drain']:.2f}  start {row['ratio_start_s']:.2f}"
        )
    scans = {name: p["big_seq_scans"] for name, p in doc["plans"].items() if p["big_seq_scans"]}
    console.print(f"sequential scans of big tables in hot calls: {scans or 'none'}")
    pruned = doc["prune"]
    batched = pruned["batched"]
    console.print(
        f"prune batched ({pruned['batch_size']} runs/batch): {batched['batches']} batches in"
        f" {batched['total_s']:.1f} s, batch ms {_rounded(batched['batch_ms'])},"
        f" removed {batched['removed']}"
    )
    console.print(f"  first batch: sequential scans {pruned['first_batch_seq_scans'] or 'none'}")
    single = pruned["single_call"]
    for label, part in (("batched", batched), ("single call", single)):
        if part is None:
            continue
        beside = part["alongside"]
        console.print(
            f"  W1 beside {label}: {beside['w1_cases']} cases, median"
            f" {beside['w1_median'] or 0:.0f} tasks/s;"
            f" lock waits in {beside['lock_wait_samples']} of {beside['samples']} samples"
        )
        problems += [f"W1 beside {label}: {p}" for p in beside["w1_problems"]]
    if single is not None:
        console.print(f"prune_data_older_than ({single['retention']}): {single['seconds']:.1f} s")
    console.print(f"left: {pruned['left']}")
    problems += [
        f"{table}: {n['older_than_retention']} rows older than the retention left"
        for table, n in pruned["left"].items()
        if n.get("older_than_retention")
    ]
    for problem in problems:
        console.print(f"[red]PROBLEM: {problem}[/red]")
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
