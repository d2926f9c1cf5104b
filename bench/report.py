"""Output of a run: the rich table, the JSON document and the PNG plot."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import PROJECT_ROOT

DRIVER_LABELS = {
    "worker": "Python worker",
    "raw-task": "raw SQL, per-task calls",
    "raw-batch": "raw SQL, batch calls",
}


def machine_info() -> dict[str, Any]:
    """CPU, memory, OS, Python and git revision of the machine the run happened on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "git_revision": revision,
        "load_average_at_start": os.getloadavg(),
    }


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None."""
    if value is None or not base:
        return None
    return value / base


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_report(console: Console, doc: dict[str, Any]) -> None:
    """The summary table(s) of a run."""
    pgbench = doc["pgbench"]
    table = Table(
        title="tasks/s per workload, driver and K: start + drain (the headline: from the first"
        " start_flows call to the last task) and drain only (runs started before the clock);"
        " x = ratio to pgbench tpcb-like TPS at the same K"
    )
    for column in (
        "workload",
        "driver",
        "K",
        "tasks",
        "start s",
        "drain s",
        "start+drain tasks/s",
        "xpgbench",
        "drain-only tasks/s",
        "drain xpgbench",
        "WAL B/task",
        "srv CPU ms/task",
        "drv CPU ms/task",
        "verified",
    ):
        table.add_column(
            column, justify="left" if column in ("workload", "driver", "verified") else "right"
        )
    for case in doc["cases"]:
        table.add_row(
            case["workload"],
            case["driver"],
            str(case["k"]),
            str(case["tasks"]),
            _fmt(case["start_s"]),
            _fmt(case["seconds"]),
            _fmt(case["start_to_finish_per_s"], 0),
            _fmt(case["ratio_pgbench"]),
            _fmt(case["tasks_per_s"], 0),
            _fmt(case["drain_ratio_pgbench"]),
            _fmt(case["wal_bytes_per_task"], 0),
            _fmt(case["server_cpu_ms_per_task"], 3),
            _fmt(case["worker_cpu_ms_per_task"], 3),
            "yes" if case["verified"] else "[red]NO: " + "; ".join(case["problems"]) + "[/red]",
        )
    console.print(table)

    anchors = Table(title="anchors")
    anchors.add_column("what")
    for k in sorted(pgbench, key=int):
        anchors.add_column(f"K={k}", justify="right")
    anchors.add_row(
        "pgbench tpcb-like TPS", *[_fmt(pgbench[k]["tps"], 0) for k in sorted(pgbench, key=int)]
    )
    peer = doc.get("peer") or {}
    if peer:
        for label, key, digits in (
            ("PgQueuer enqueue+drain jobs/s", "start_to_finish_jobs_per_s", 0),
            ("PgQueuer enqueue+drain xpgbench", "ratio_pgbench", 2),
            ("PgQueuer drain-only jobs/s", "jobs_per_s", 0),
            ("PgQueuer drain-only xpgbench", "drain_ratio_pgbench", 2),
        ):
            anchors.add_row(
                label,
                *[
                    _fmt(peer[k][key], digits) if k in peer else "-"
                    for k in sorted(pgbench, key=int)
                ],
            )
    console.print(anchors)

    engine = Table(title="engine timings and latency")
    engine.add_column("what")
    engine.add_column("value", justify="right")
    sf = doc.get("start_flow")
    if sf:
        engine.add_row(
            f"start_flow, root map of {sf['elements']:,} (median)", f"{_fmt(sf['median_ms'], 1)} ms"
        )
    tv = doc.get("type_violation")
    if tv:
        engine.add_row(
            f"W5 type violation, {tv['elements']:,} queued tasks (median)",
            f"{_fmt(tv['median_ms'], 1)} ms",
        )
    lat = doc.get("latency")
    if lat:
        kept = lat.get("kept_connection") or {}
        for figures, key, label in (
            (lat, "first_task_started", "Client.start_flow -> first task started"),
            (lat, "run_completed", "Client.start_flow -> run completed (wait returned)"),
            (kept, "first_task_started", "start_flow, kept connection -> first task started"),
            (kept, "run_completed_db", "start_flow, kept connection -> run completed"),
        ):
            if key in figures:
                engine.add_row(
                    f"W6 {label} p50 / p99",
                    f"{_fmt(figures[key]['p50_ms'], 1)} / {_fmt(figures[key]['p99_ms'], 1)} ms",
                )
    mem = doc.get("memory")
    if mem:
        engine.add_row(
            f"worker RSS with {mem['inflight']} tasks in flight",
            f"{_fmt(mem['rss_mb_inflight'], 1)} MB",
        )
    for key, label in (("worker_vs_raw", "Python worker / raw batch driver (tasks/s)"),):
        for k, value in (doc.get(key) or {}).items():
            engine.add_row(f"{label}, K={k}", _fmt(value))
    console.print(engine)
    goals = Table(title="targets (issues 8 and 17), this run")
    for column in ("target", "goal", "value", "met"):
        goals.add_column(column, justify="left" if column == "target" else "right")
    for row in doc.get("targets") or []:
        goals.add_row(
            row["target"],
            row["goal"],
            f"{row['value']:g}",
            "yes" if row["met"] else "[red]no[/red]",
        )
    console.print(goals)
    verification = doc["verification"]
    if verification["passed"]:
        console.print("[green]verification passed: every case completed all its work[/green]")
    else:
        console.print("[red]VERIFICATION FAILED:[/red]")
        for failure in verification["failures"]:
            console.print(f"  [red]{failure}[/red]")


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """The whole run as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")


def finish_ab(console: Console, path: Path, doc: dict[str, Any], problems: list[str]) -> None:
    """The end of an A/B run: its problems printed, ``doc`` (with them) written as JSON, and
    exit status 1 when there were any."""
    if problems:
        console.print(f"[red]problems: {problems}[/red]")
    write_json(path, {**doc, "problems": problems})
    if problems:
        raise SystemExit(1)


def write_plot(path: Path, doc: dict[str, Any]) -> None:
    """Bars of tasks/s per workload and K for each driver, pgbench TPS and PgQueuer beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in doc["cases"] if c["workload"] != "W5"]
    workloads = list(dict.fromkeys(c["workload"] for c in cases))
    ks = sorted({c["k"] for c in cases})
    drivers = [d for d in DRIVER_LABELS if any(c["driver"] == d for c in cases)]
    panels = len(workloads) + 1
    cols = 3
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    colors = {
        "worker": "#4c72b0",
        "raw-task": "#dd8452",
        "raw-batch": "#55a868",
        "pgqueuer": "#8172b3",
    }
    width = 0.8 / max(len(drivers), 1)
    pgbench = doc["pgbench"]
    for index, workload in enumerate(workloads):
        ax = axes[index // cols][index % cols]
        for d_index, driver in enumerate(drivers):
            xs, ys, labels = [], [], []
            for k_index, k in enumerate(ks):
                match = [
                    c
                    for c in cases
                    if c["workload"] == workload and c["driver"] == driver and c["k"] == k
                ]
                if match:
                    xs.append(k_index + (d_index - (len(drivers) - 1) / 2) * width)
                    ys.append(match[0]["start_to_finish_per_s"])
                    labels.append(match[0]["ratio_pgbench"])
            bars = ax.bar(xs, ys, width, label=DRIVER_LABELS[driver], color=colors[driver])
            for bar, value in zip(bars, labels, strict=True):
                if value is not None:
                    ax.annotate(
                        f"{value:.2f}x",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        tps = [pgbench.get(str(k), {}).get("tps") for k in ks]
        ax.plot(range(len(ks)), tps, "k--", marker="o", label="pgbench TPS")
        ax.set_xticks(range(len(ks)), [f"K={k}" for k in ks])
        ax.set_title(workload)
        ax.set_ylabel("start+drain tasks/s")
    ax = axes[len(workloads) // cols][len(workloads) % cols]
    peer = doc.get("peer") or {}
    tps = [pgbench.get(str(k), {}).get("tps") for k in ks]
    ax.bar([i - 0.2 for i in range(len(ks))], tps, 0.4, label="pgbench TPS", color="#999999")
    if peer:
        jobs = [peer.get(str(k), {}).get("start_to_finish_jobs_per_s", 0) for k in ks]
        bars = ax.bar(
            [i + 0.2 for i in range(len(ks))],
            jobs,
            0.4,
            label="PgQueuer enqueue+drain jobs/s",
            color=colors["pgqueuer"],
        )
        for bar, k in zip(bars, ks, strict=True):
            value = peer.get(str(k), {}).get("ratio_pgbench")
            if value is not None:
                ax.annotate(
                    f"{value:.2f}x",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks(range(len(ks)), [f"K={k}" for k in ks])
    ax.set_title("anchors")
    ax.legend(fontsize=7)
    for extra in range(panels, rows * cols):
        axes[extra // cols][extra % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        "pgweave start+drain tasks/s (labels: ratio to pgbench tpcb-like TPS at the same K)"
        f" - {doc['meta']['mode']} run",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
