"""``python -m bench.w5_designs``: would a HOT cancel make W5 three times faster (issue 17 item 5)?

W5's engine time (``complete_task`` of a type violation in a run with 5,000 queued map
tasks: the run fails, every task is marked ``cancelled``, every message archived) on four
copies of the engine template that differ only in ``pgflow.step_tasks``' storage:

- ``contract``: as generated (the contract's six partial indexes on ``status``);
- ``ff50``: ``fillfactor = 50`` (room on each page for a second row version);
- ``no-status-idx``: the six partial indexes whose predicate names ``status`` dropped (the
  upper bound of any status-free index design: no index to maintain at all);
- ``no-status-idx+ff50``: both, the only variant in which the cancelling UPDATE can be HOT.

The variants alternate in every repetition; medians and ratios to ``contract`` are printed
and written to ``bench/out/w5_designs.json``.

    .venv/bin/python -m bench.w5_designs [--repeat 3] [--elements 5000] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import psycopg

from bench import PROJECT_ROOT
from bench.cluster import Server
from bench.runner import time_type_violation

STATUS_INDEXES = (
    "idx_step_tasks_queued",
    "idx_step_tasks_completed",
    "idx_step_tasks_failed",
    "idx_step_tasks_started",
    "idx_step_tasks_queued_msg",
    "idx_step_tasks_last_worker",
)
FILLFACTOR_50 = ["alter table pgflow.step_tasks set (fillfactor = 50)"]
NO_STATUS_INDEXES = [f"drop index pgflow.{name}" for name in STATUS_INDEXES]
VARIANTS: dict[str, list[str]] = {
    "contract": [],
    "ff50": FILLFACTOR_50,
    "no-status-idx": NO_STATUS_INDEXES,
    "no-status-idx+ff50": NO_STATUS_INDEXES + FILLFACTOR_50,
}


STORAGE = """
select
  (select count(*) from pg_indexes
   where schemaname = 'pgflow' and tablename = 'step_tasks' and indexdef like '%status%'),
  coalesce((select reloptions from pg_class where oid = 'pgflow.step_tasks'::regclass), '{}')
"""
"""How many of step_tasks' indexes name ``status``, and the table's storage options."""


def variant_templates(server: Server) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """One template database per variant, made from the engine template, and the storage
    each one ended up with (read back from the catalog)."""
    names: dict[str, str] = {}
    storage: dict[str, dict[str, Any]] = {}
    for variant, statements in VARIANTS.items():
        name = "bench_w5_" + variant.replace("-", "_").replace("+", "_")
        server.create_database(name, server.template)
        with psycopg.connect(server.dsn(name), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
            row = conn.execute(STORAGE).fetchone()
            assert row is not None
            storage[variant] = {"status_indexes": row[0], "reloptions": row[1]}
        with server.admin() as conn:
            conn.execute(f"alter database {name} is_template true")
        names[variant] = name
    return names, storage


def main(argv: list[str] | None = None) -> None:
    """Time W5 on every variant, alternating, and print medians and ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.w5_designs", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="rounds over the variants")
    parser.add_argument("--calls", type=int, default=3, help="W5 calls per variant and round")
    parser.add_argument("--elements", type=int, default=5000)
    parser.add_argument("--dsn", help="an existing server (needs CREATE DATABASE)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "out")
    args = parser.parse_args(argv)

    server = Server.start(args.dsn)
    samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    storage: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    try:
        server.prepare_template()
        templates, storage = variant_templates(server)
        for _ in range(args.repeat):
            for variant, template in templates.items():
                result = time_type_violation(server, args.elements, args.calls, template)
                samples[variant].extend(1000 * s for s in result["seconds"])
                problems.extend(f"{variant}: {p}" for p in result["problems"])
    finally:
        server.stop()

    medians = {variant: statistics.median(ms) for variant, ms in samples.items()}
    for variant, median in medians.items():
        print(
            f"{variant:<20} W5 median {median:6.1f} ms"
            f"  contract/variant {medians['contract'] / median:4.2f}"
            f"  samples {[round(ms) for ms in samples[variant]]}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "w5_designs.json").write_text(
        json.dumps(
            {
                "elements": args.elements,
                "storage": storage,
                "samples_ms": samples,
                "medians_ms": medians,
                "problems": problems,
            },
            indent=2,
        )
    )
    if problems:
        raise SystemExit("\n".join(problems))


if __name__ == "__main__":
    main()
