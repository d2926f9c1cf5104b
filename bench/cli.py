"""``python -m bench``: the benchmark command (see bench/README.md)."""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import PROJECT_ROOT
from bench.cluster import Server, pgbench_init, pgbench_tps
from bench.report import machine_info, print_report, ratio, write_json, write_plot
from bench.runner import (
    DRIVERS,
    BenchError,
    CaseResult,
    Options,
    measure_latency,
    measure_memory,
    phase,
    run_case,
    run_peer,
    time_start_flow,
    time_type_violation,
)
from bench.workloads import Workload, workloads


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="pgweave's benchmark suite: W1-W6 with the Python worker and raw SQL "
        "drivers, pgbench and PgQueuer anchors, profile; prints a table and writes JSON + PNG.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small smoke run (CI), well under a minute"
    )
    parser.add_argument("--dsn", help="use this server instead of a throwaway durable cluster")
    parser.add_argument(
        "--out", type=Path, default=PROJECT_ROOT / "bench" / "out", help="output directory"
    )
    parser.add_argument(
        "--ks", help="worker process counts, e.g. 1,2,4 (default: 1,2,4; quick: 1,2)"
    )
    parser.add_argument("--workloads", help="only these workloads, e.g. W1,W3-10k")
    parser.add_argument("--drivers", help=f"only these drivers ({','.join(DRIVERS)})")
    parser.add_argument(
        "--batch", type=int, default=50, help="batch size of raw-batch and of the worker"
    )
    parser.add_argument("--pgbench-seconds", type=int, help="duration of each pgbench run")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every case this many times (interleaved) and report the median",
    )
    parser.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="PgQueuer anchor (default: on, off with --quick)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="profile pass with pg_stat_statements",
    )
    parser.add_argument(
        "--extras",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start_flow and type-violation timings, latency (W6) and memory",
    )
    return parser.parse_args(argv)


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's speed targets against this run's figures (informative: never a failure)."""
    rows: list[dict[str, Any]] = []

    def case_of(workload: str, driver: str, k: int) -> dict[str, Any] | None:
        return next(
            (
                c
                for c in doc["cases"]
                if (c["workload"], c["driver"], c["k"]) == (workload, driver, k)
            ),
            None,
        )

    def ratio_of(workload: str, driver: str, k: int) -> float | None:
        case = case_of(workload, driver, k)
        value = case["drain_ratio_pgbench"] if case else None
        return float(value) if value is not None else None

    # Issue 17: W1 start to finish against PgQueuer's enqueue + drain, same K.
    for k_text, entry in sorted((doc.get("peer") or {}).items()):
        for driver in ("raw-batch", "worker"):
            case = case_of("W1", driver, int(k_text))
            if case is not None:
                value = case["start_to_finish_per_s"] / entry["start_to_finish_jobs_per_s"]
                rows.append(
                    {
                        "target": f"W1 {driver} start+drain tasks/s / PgQueuer enqueue+drain"
                        f" jobs/s, K={k_text}",
                        "goal": ">= 0.6",
                        "value": round(value, 2),
                        "met": value >= 0.6,
                    }
                )
    # Issue 8 (drain only: the runs were started before the clock).
    for workload, goal in (("W1", 1.0), ("W2", 1.0), ("W3-1k", 1.0), ("W3-10k", 1.0), ("W4", 0.6)):
        for k in (1, 2):
            value = ratio_of(workload, "raw-batch", k)
            if value is not None:
                rows.append(
                    {
                        "target": f"{workload} raw-batch drain-only tasks/s / pgbench TPS, K={k}",
                        "goal": f">= {goal}",
                        "value": round(value, 2),
                        "met": value >= goal,
                    }
                )
    checks = (
        ("start_flow", "median_ms", "W3 start_flow of {elements:,} elements (ms)", 100.0),
        ("type_violation", "median_ms", "W5 type violation, {elements:,} queued tasks (ms)", 30.0),
        ("memory", "rss_mb_inflight", "worker RSS with {inflight:,} tasks in flight (MB)", 80.0),
    )
    for key, field, label, goal in checks:
        entry = doc.get(key)
        if entry and entry.get(field) is not None:
            value = float(entry[field])
            rows.append(
                {
                    "target": label.format(**entry),
                    "goal": f"<= {goal:g}",
                    "value": round(value, 1),
                    "met": value <= goal,
                }
            )
    for k, value in (doc.get("worker_vs_raw") or {}).items():
        rows.append(
            {
                "target": f"Python worker / raw-batch tasks/s (geometric mean W1-W4), K={k}",
                "goal": ">= 0.7",
                "value": round(value, 2),
                "met": value >= 0.7,
            }
        )
    return rows


def _csv(text: str | None, default: list[str]) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else default


@dataclass
class Plan:
    """What one invocation runs, read from the command line."""

    args: argparse.Namespace
    ks: list[int]
    drivers: list[str]
    chosen: list[Workload]
    options: Options
    pgbench_seconds: int
    peer_on: bool

    @property
    def quick(self) -> bool:
        """The smoke run (small sizes, one repetition of each case)."""
        return bool(self.args.quick)


def make_plan(args: argparse.Namespace) -> Plan:
    """The cases, drivers and options the arguments ask for (exit on an unknown driver)."""
    quick = args.quick
    drivers = _csv(args.drivers, list(DRIVERS))
    unknown = sorted(set(drivers) - set(DRIVERS))
    if unknown:
        sys.exit(f"unknown drivers {unknown}; choose from {DRIVERS}")
    selected = _csv(args.workloads, [w.key for w in workloads(quick)])
    ks = [int(k) for k in _csv(args.ks, ["1"] if quick else ["1", "2", "4"])]
    return Plan(
        args=args,
        ks=ks,
        drivers=drivers,
        chosen=[w for w in workloads(quick) if w.key in selected],
        options=Options(
            ks=ks,
            drivers=drivers,
            batch=args.batch,
            logs=args.out / "logs",
            poll_seconds=1 if quick else 2,
            checkpoint=not quick,
            hold_seconds=1.0 if quick else 3.0,
        ),
        pgbench_seconds=args.pgbench_seconds or (1 if quick else 10),
        peer_on=(not quick) if args.peer is None else args.peer,
    )


def new_document(plan: Plan) -> dict[str, Any]:
    """The result document before anything is measured (its ``meta``)."""
    return {
        "meta": {
            "mode": "quick" if plan.quick else "full",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "ks": plan.ks,
            "drivers": plan.drivers,
            "batch": plan.args.batch,
            "task_batch": plan.options.task_batch,
            "poll_seconds": plan.options.poll_seconds,
            "pgbench_seconds": plan.pgbench_seconds,
            "repeat": plan.args.repeat,
        },
        "pgbench": {},
        "cases": [],
    }


def run_cases(
    console: Console, server: Server, plan: Plan, pgbench: Callable[[], dict[int, float]]
) -> tuple[list[CaseResult], list[dict[int, float]]]:
    """Every case, repetitions interleaved (pgbench between them); the median of each case
    and the pgbench figures measured between repetitions."""
    samples: dict[tuple[str, str, int], list[CaseResult]] = {}
    between: list[dict[int, float]] = []
    repeat = plan.args.repeat
    for rep in range(repeat):
        shared = (
            {(d, k): server.case_database() for d in plan.drivers for k in plan.ks}
            if plan.quick
            else {}
        )
        for workload in plan.chosen:
            for driver in plan.drivers:
                for k in plan.ks:
                    title = f"{workload.key} ({workload.title}) - {driver}, K={k}"
                    if repeat > 1:
                        title += f", run {rep + 1}/{repeat}"
                    with phase(console, title):
                        result = run_case(
                            server,
                            workload,
                            driver,
                            k,
                            plan.options,
                            shared_db=shared.get((driver, k)),
                        )
                    console.print(
                        f"  start + drain {result.start_to_finish_per_s:,.0f} tasks/s"
                        f" ({result.start_s:.2f} + {result.seconds:.2f} s),"
                        f" drain only {result.tasks_per_s:,.0f} tasks/s"
                        + ("" if result.verified else f"  [red]{result.problems}[/red]")
                    )
                    samples.setdefault((workload.key, driver, k), []).append(result)
        if rep + 1 < repeat:
            with phase(console, "pgbench anchor (between repetitions)"):
                between.append(pgbench())
    return [median_of(runs) for runs in samples.values()], between


def median_of(runs_of_case: list[CaseResult]) -> CaseResult:
    """The median repetition of a case (by start + drain), carrying every sample."""
    ordered = sorted(runs_of_case, key=lambda r: r.start_to_finish_per_s)
    median = ordered[len(ordered) // 2]
    median.samples = [r.start_to_finish_per_s for r in runs_of_case]
    median.drain_samples = [r.tasks_per_s for r in runs_of_case]
    median.problems = [p for r in runs_of_case for p in r.problems]
    return median


def run_profiles(
    console: Console, server: Server, plan: Plan, failures: list[str]
) -> dict[str, Any]:
    """pg_stat_statements profiles of the main cases at K=1 (when asked and available)."""
    profiles: dict[str, Any] = {}
    if not (plan.args.profile and server.has_pgss):
        return profiles
    profile_cases = (
        [(plan.chosen[0], "raw-batch")]
        if plan.quick
        else [
            (w, d)
            for w in plan.chosen
            if w.key in ("W1", "W2", "W3-10k", "W4")
            for d in ("raw-task", "raw-batch", "worker")
            if d in plan.drivers
        ]
    )
    for workload, driver in profile_cases:
        with phase(console, f"profile {workload.key} - {driver}, K=1"):
            result = run_case(server, workload, driver, 1, plan.options, profile=True)
        profiles[f"{workload.key}/{driver}/K=1"] = {
            "tasks_per_s_while_profiling": result.tasks_per_s,
            "wal_bytes_per_task": result.wal_bytes / result.tasks,
            "server_cpu_ms_per_task": 1000 * result.server_cpu_s / result.tasks
            if result.server_cpu_s is not None
            else None,
            **(result.profile or {}),
        }
        if not result.verified:
            failures.append(f"profile {workload.key}/{driver}: {result.problems}")
    return profiles


def run_extras(
    console: Console, server: Server, plan: Plan, doc: dict[str, Any], failures: list[str]
) -> None:
    """The engine-time and latency measurements (W3 start, W5, W6, worker memory)."""
    quick = plan.quick
    with phase(console, "W3: start_flow alone, root map of 10,000"):
        doc["start_flow"] = time_start_flow(server, 1000 if quick else 10000, 3 if quick else 5)
    with phase(console, "W5: type violation with queued map tasks (engine time)"):
        doc["type_violation"] = time_type_violation(
            server, 500 if quick else 5000, 3 if quick else 5
        )
    with phase(console, "W6: latency at low load (real worker, event-driven client)"):
        doc["latency"] = measure_latency(server, 10 if quick else 200, plan.options)
    with phase(console, "worker memory with 1,000 tasks in flight"):
        doc["memory"] = measure_memory(server, 100 if quick else 1000, plan.options)
    for key in ("start_flow", "type_violation", "latency", "memory"):
        failures += [f"{key}: {p}" for p in doc[key]["problems"]]


def run_peers(console: Console, server: Server, plan: Plan, failures: list[str]) -> dict[str, Any]:
    """PgQueuer enqueuing and draining as many jobs as W1 has runs, at each K."""
    peer: dict[str, Any] = {}
    jobs = next((w.runs for w in plan.chosen if w.key == "W1"), 2000)
    for k in plan.ks:
        with phase(console, f"peer: PgQueuer draining {jobs} jobs, K={k}"):
            peer[str(k)] = run_peer(server, jobs, k, plan.options)
        failures += [f"PgQueuer K={k}: {p}" for p in peer[str(k)]["problems"]]
    return peer


def summarise(
    doc: dict[str, Any],
    plan: Plan,
    pgbench_runs: list[dict[int, float]],
    results: list[CaseResult],
    peer: dict[str, Any],
    failures: list[str],
) -> None:
    """Fill in the document: pgbench means, each case with its ratios, the peer's ratios,
    the Python worker against the raw batch driver, the targets and the verification."""
    for k in plan.ks:
        measured = [run[k] for run in pgbench_runs]
        doc["pgbench"][str(k)] = {
            "tps": statistics.mean(measured),
            "before": measured[0],
            "after": measured[-1],
            "all": measured,
        }
    for result in results:
        case = result.as_json()
        tps = doc["pgbench"][str(result.k)]["tps"]
        case["ratio_pgbench"] = ratio(result.start_to_finish_per_s, tps)
        case["drain_ratio_pgbench"] = ratio(result.tasks_per_s, tps)
        doc["cases"].append(case)
        if not result.verified:
            failures.append(f"{result.workload}/{result.driver}/K={result.k}: {result.problems}")
    for peer_k, entry in peer.items():
        tps = doc["pgbench"][peer_k]["tps"]
        entry["ratio_pgbench"] = ratio(entry["start_to_finish_jobs_per_s"], tps)
        entry["drain_ratio_pgbench"] = ratio(entry["jobs_per_s"], tps)
    doc["peer"] = peer
    doc["worker_vs_raw"] = {}
    for k in plan.ks:
        per_driver = {
            driver: [
                c["tasks_per_s"]
                for c in doc["cases"]
                if c["driver"] == driver and c["k"] == k and c["workload"] != "W5"
            ]
            for driver in ("worker", "raw-batch")
        }
        worker, raw = per_driver["worker"], per_driver["raw-batch"]
        if worker and len(worker) == len(raw):
            doc["worker_vs_raw"][str(k)] = statistics.geometric_mean(
                [w / r for w, r in zip(worker, raw, strict=True)]
            )
    doc["targets"] = targets(doc)
    doc["verification"] = {"passed": not failures, "failures": failures}


def main(argv: list[str] | None = None) -> None:
    """Run the suite; exit 1 when any verification failed."""
    args = parse_args(argv)
    # SIGTERM ends the run through the cleanup below (the throwaway cluster is removed)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    console = Console(width=200)
    plan = make_plan(args)
    started = time.time()
    doc = new_document(plan)
    failures: list[str] = []
    server = Server.start(args.dsn)
    try:
        doc["meta"]["server"] = server.server_info()
        with phase(console, "template database (pgmq, migrations, bench flows)"):
            server.prepare_template()
        with phase(console, "pgbench anchor (before)"):
            pgdb = pgbench_init(server, scale=2 if plan.quick else 10)

            def pgbench() -> dict[int, float]:
                return {k: pgbench_tps(server, pgdb, k, plan.pgbench_seconds) for k in plan.ks}

            before = pgbench()
            console.print(f"  pgbench TPS: {before}")
        results, between = run_cases(console, server, plan, pgbench)
        doc["profiles"] = run_profiles(console, server, plan, failures)
        if args.extras:
            run_extras(console, server, plan, doc, failures)
        peer = run_peers(console, server, plan, failures) if plan.peer_on else {}
        with phase(console, "pgbench anchor (after)"):
            after = pgbench()
            console.print(f"  pgbench TPS: {after}")
    except BenchError as exc:
        console.print(f"[red]benchmark error: {exc}[/red]")
        sys.exit(2)
    finally:
        server.stop()

    summarise(doc, plan, [before, *between, after], results, peer, failures)
    doc["meta"]["duration_s"] = round(time.time() - started, 1)
    print_report(console, doc)
    write_json(args.out / "results.json", doc)
    write_plot(args.out / "results.png", doc)
    console.print(f"wrote {args.out / 'results.json'} and {args.out / 'results.png'}")
    if failures:
        sys.exit(1)
