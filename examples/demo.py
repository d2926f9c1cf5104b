"""The end-to-end demo: a throwaway PostgreSQL, the engine installed, a worker, the example flows.

    pgweave demo              # or: python -m pgweave_examples.demo

It starts an embedded cluster (removed afterwards), installs pgmq and the migrations, runs
workers for the example flows in a background thread, starts each flow, waits for it by
its events and prints the run's steps and output.
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg
from rich.console import Console

from pgweave.client import Client
from pgweave.config import WorkerConfig
from pgweave.dsl import Flow
from pgweave.embedded import EmbeddedPostgres
from pgweave.install import apply_migrations, install_pgmq
from pgweave.logs import configure_logging
from pgweave.status import fetch_tasks, run_view
from pgweave.worker import WorkerThread
from pgweave_examples import map_example, website_analysis

EXAMPLES: dict[str, tuple[Flow[Any], Any]] = {
    "website": (website_analysis.flow, {"url": "https://pgweave.example/docs"}),
    "map": (
        map_example.flow,
        ["Flows run inside PostgreSQL", "Workers poll the queue", "Maps fan out"],
    ),
}


def run_demo(which: str = "all", console: Console | None = None) -> int:
    """Run the chosen example(s); returns 0 when every run completed."""
    console = console or Console()
    chosen = [v for k, v in EXAMPLES.items() if which in ("all", k)]
    configure_logging("WARNING")
    with EmbeddedPostgres() as cluster:
        dsn = cluster.dsn()
        console.print(f"[bold]throwaway PostgreSQL[/] on port {cluster.port}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            console.print(f"pgmq: {install_pgmq(conn)}")
            console.print("migrations: " + ", ".join(apply_migrations(conn)))
        config = WorkerConfig(max_poll_seconds=1, requeue_interval=0)
        failures = 0
        with WorkerThread([flow for flow, _ in chosen], dsn, config):
            console.print("workers: " + ", ".join(flow.slug for flow, _ in chosen))
            with Client(dsn) as client:
                for flow, flow_input in chosen:
                    run = client.start_flow(flow, flow_input)
                    console.rule(f"{flow.slug}  run {run.run_id}")
                    final = run.wait(timeout=60)
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        console.print(run_view(final, fetch_tasks(conn, run.run_id)))
                    console.print("[bold]output[/]")
                    console.print_json(data=final.output)
                    failures += final.status != "completed"
    console.print(
        "[green]demo complete[/]" if not failures else f"[red]{failures} run(s) failed[/]"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_demo(sys.argv[1] if len(sys.argv) > 1 else "all"))
