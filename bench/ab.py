"""``python -m bench.ab``: the drain of an older engine against the generated one, alternated.

    python -m bench.ab                                  # old = the engine before issue 12
    python -m bench.ab --baseline REV --workloads W1,W2,W3-1k,W4 --drivers raw-task,raw-batch

Two templates in one durable cluster: the migrations of git revision REV ("old") and the
generated ones ("new"). Each repetition runs every workload x driver x K on both sides, old
first in even repetitions and new first in odd ones (ABBA), so neither side always goes first. The raw drivers are SQL only, so the engines are compared without
any Python worker code in between: ``raw-task`` is pgflow's per-task protocol
(``read_with_poll`` → ``start_tasks`` → ``complete_task``), ``raw-batch`` the batch protocol.
Runs are started with ``start_flow`` per run on both sides (the old engine may lack
``start_flows``) and outside the clock.

Reported per case and side: drain tasks/s and the server's CPU per task (all backends of
the cluster, from /proc: less sensitive to other load on the machine than wall time);
medians, and new/old ratios. Written to ``bench/out/ab.json``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

from bench import PROJECT_ROOT
from bench.cluster import Server
from bench.report import finish_ab
from bench.runner import Options, phase, run_case
from bench.startpath import baseline_migrations
from bench.workloads import workloads

BEFORE_ISSUE_12 = "686b8e2"
SIDES = ("old", "new")


def _cases(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    return [
        (workload, driver, int(k))
        for workload in args.workloads.split(",")
        for driver in args.drivers.split(",")
        for k in args.ks.split(",")
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the A/B and print the medians and ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--baseline", default=BEFORE_ISSUE_12, help="git revision of 'old'")
    parser.add_argument(
        "--old-sql",
        type=Path,
        help="SQL run on the old side's template after its migrations (e.g. with"
        " --baseline HEAD: today's engine with one change, to measure that change)",
    )
    parser.add_argument("--workloads", default="W1,W2,W3-1k,W4")
    parser.add_argument("--drivers", default="raw-task,raw-batch")
    parser.add_argument("--ks", default="1")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (old, new each)")
    parser.add_argument("--quick", action="store_true", help="the small workloads (smoke)")
    parser.add_argument("--dsn", help="use this server instead of a throwaway durable cluster")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    console = Console()
    by_key = {w.key: w for w in workloads(args.quick)}
    cases = _cases(args)
    unknown = sorted({w for w, _, _ in cases} - set(by_key))
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; choose from {sorted(by_key)}")
    options = Options(ks=sorted({k for _, _, k in cases}), drivers=args.drivers.split(","))
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
    problems: list[str] = []
    server = Server.start(args.dsn)
    try:
        with phase(console, f"templates: old = {args.baseline}, new = generated/"):
            server.prepare_template(
                "bench_template_old", baseline_migrations(args.baseline, args.out)
            )
            if args.old_sql:
                with psycopg.connect(server.dsn("bench_template_old"), autocommit=True) as conn:
                    conn.execute(args.old_sql.read_text())
            server.prepare_template()
        templates = {"old": "bench_template_old", "new": server.template}
        for rep in range(args.repeat):
            for workload, driver, k in cases:
                key = f"{workload} {driver} K={k}"
                # ABBA: the side that goes first alternates, so an order effect cancels out
                for side in SIDES if rep % 2 == 0 else tuple(reversed(SIDES)):
                    with phase(console, f"{key}, {side}, run {rep + 1}/{args.repeat}"):
                        case = run_case(
                            server,
                            by_key[workload],
                            driver,
                            k,
                            options,
                            per_run_start=True,
                            template=templates[side],
                        )
                    cpu = case.server_cpu_s
                    samples.setdefault(key, {s: [] for s in SIDES})[side].append(
                        {
                            "tasks_per_s": case.tasks_per_s,
                            "server_cpu_ms_per_task": None
                            if cpu is None
                            else 1000 * cpu / case.tasks,
                        }
                    )
                    problems.extend(f"{key} {side}: {p}" for p in case.problems)
    finally:
        server.stop()

    summary = {key: _summary(sides) for key, sides in samples.items()}
    for key, entry in summary.items():
        console.print(
            f"{key:<24} tasks/s old {entry['old']['tasks_per_s']:8.0f} new"
            f" {entry['new']['tasks_per_s']:8.0f} new/old {entry['ratio']['tasks_per_s']:.2f}"
            + (
                f" | server CPU ms/task old {entry['old']['server_cpu_ms_per_task']:.3f}"
                f" new {entry['new']['server_cpu_ms_per_task']:.3f}"
                f" new/old {entry['ratio']['server_cpu_ms_per_task']:.2f}"
                if entry["ratio"]["server_cpu_ms_per_task"] is not None
                else ""
            )
        )
    finish_ab(
        console,
        args.out / "ab.json",
        {
            "baseline": args.baseline,
            "old_sql": args.old_sql.read_text() if args.old_sql else None,
            "repeat": args.repeat,
            "samples": samples,
            "summary": summary,
        },
        problems,
    )


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _summary(sides: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per side and the new/old ratio of each figure."""
    medians = {
        side: {
            figure: _median([s[figure] for s in runs])
            for figure in ("tasks_per_s", "server_cpu_ms_per_task")
        }
        for side, runs in sides.items()
    }
    ratio: dict[str, float | None] = {}
    for figure in ("tasks_per_s", "server_cpu_ms_per_task"):
        old, new = medians["old"][figure], medians["new"][figure]
        ratio[figure] = None if old is None or new is None or old == 0 else new / old
    return {**medians, "ratio": ratio}


if __name__ == "__main__":
    main()
