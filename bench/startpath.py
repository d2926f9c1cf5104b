"""``python -m bench.startpath``: the start path and W5 against an older engine, A/B in one cluster.

    python -m bench.startpath                      # against the engine before issue 17
    python -m bench.startpath --baseline REV --repeat 5

Two templates in one durable cluster: the migrations of git revision REV ("old") and the
generated ones ("new"). Every repetition runs each measurement on old, then new (so the
two alternate: old/new/old/new ...):

- W1 start to finish: 2,000 one-step runs started (old: one start_flow call per run, as
  bench/ started them before start_flows; new: one start_flows call), then drained by the
  raw batch driver at K = 1; tasks / (start + drain);
- start_flow of a 10,000-element root map (median of 3 per repetition);
- W5's engine time: complete_task of a type violation in a run with 5,000 queued map tasks.

The medians of each side and their ratios (new / old) go to the terminal and to
``bench/out/startpath.json``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import PROJECT_ROOT
from bench.cluster import Server
from bench.report import finish_ab
from bench.runner import Options, phase, run_case, time_start_flow, time_type_violation
from bench.workloads import Workload

BEFORE_ISSUE_17 = "448ec80"


def baseline_migrations(revision: str, out: Path) -> Path:
    """The generated migrations of a git revision, written to ``out/baseline-<rev>``."""
    directory = out / f"baseline-{revision}"
    directory.mkdir(parents=True, exist_ok=True)
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", revision, "generated/migrations/"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in names:
        if name.endswith(".sql"):
            text = subprocess.run(
                ["git", "show", f"{revision}:{name}"],
                cwd=PROJECT_ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            (directory / Path(name).name).write_text(text)
    return directory


def measure(
    server: Server, template: str, old: bool, w1: Workload, options: Options
) -> dict[str, Any]:
    """One repetition of every measurement on one engine."""
    case = run_case(server, w1, "raw-batch", 1, options, per_run_start=old, template=template)
    start = time_start_flow(server, 10000, 3, template=template)
    violation = time_type_violation(server, 5000, 1, template=template)
    return {
        "w1_start_s": case.start_s,
        "w1_drain_s": case.seconds,
        "w1_start_to_finish_per_s": case.start_to_finish_per_s,
        "map_start_ms": start["median_ms"],
        "w5_ms": violation["median_ms"],
        "problems": case.problems + start["problems"] + violation["problems"],
    }


def main(argv: list[str] | None = None) -> None:
    """Run the A/B and print the medians and ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.startpath", description=__doc__)
    parser.add_argument("--baseline", default=BEFORE_ISSUE_17, help="git revision of 'old'")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (old, new each)")
    parser.add_argument("--dsn", help="use this server instead of a throwaway durable cluster")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    console = Console()
    options = Options(ks=[1], drivers=["raw-batch"])
    w1 = Workload("W1", "bench_w1", runs=2000, title="one-step flow")
    server = Server.start(args.dsn)
    samples: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    try:
        with phase(console, f"templates: old = {args.baseline}, new = generated/"):
            server.prepare_template(
                "bench_template_old", baseline_migrations(args.baseline, args.out)
            )
            server.prepare_template()
        for rep in range(args.repeat):
            for side, template in (("old", "bench_template_old"), ("new", server.template)):
                with phase(console, f"{side}, run {rep + 1}/{args.repeat}"):
                    result = measure(server, template, side == "old", w1, options)
                console.print(f"  {result}")
                samples[side].append(result)
    finally:
        server.stop()

    keys = ("w1_start_s", "w1_drain_s", "w1_start_to_finish_per_s", "map_start_ms", "w5_ms")
    medians = {
        side: {key: statistics.median(s[key] for s in runs) for key in keys}
        for side, runs in samples.items()
    }
    ratios = {key: medians["new"][key] / medians["old"][key] for key in keys}
    problems = [p for runs in samples.values() for s in runs for p in s["problems"]]
    for key in keys:
        console.print(
            f"{key:>26}: old {medians['old'][key]:10.3f}  new {medians['new'][key]:10.3f}"
            f"  new/old {ratios[key]:.2f}"
        )
    finish_ab(
        console,
        args.out / "startpath.json",
        {
            "baseline": args.baseline,
            "repeat": args.repeat,
            "samples": samples,
            "medians": medians,
            "ratios_new_over_old": ratios,
        },
        problems,
    )


if __name__ == "__main__":
    main()
