"""Chaos: worker processes killed with SIGKILL at random and restarted, and one PostgreSQL
crash-restart, while single, chain and map runs are started; every run still completes,
each task completed exactly once in the tables, its handler run at least once and never
more often than the task was started.

Bounded: the chaos lasts 4 s; tasks a killed worker held are requeued at their timeout
(3 s) + 30 s of grace, so everything ends about 40 s after the load began.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgweave.embedded import EmbeddedPostgres
from tests.chaos.flows import EFFECTS_DSN
from tests.chaos.harness import (
    Fleet,
    Starter,
    check_invariants,
    cluster,
    engine_database,
    plan,
    wait_all,
    wait_registered,
)

FLOWS = ("chaos_single", "chaos_chain", "chaos_map")
PROCESSES = 3
CHAOS_SECONDS = 4.0
KILLS = 4
CRASH_BETWEEN = (1.0, 3.0)
RUNS_DEADLINE = 45.0
"""Seconds after the chaos for every run to complete (the requeue needs ~35 s)."""


@pytest.fixture
def server() -> Iterator[EmbeddedPostgres]:
    with cluster() as own:
        yield own


def test_kills_and_a_postgres_crash_lose_no_run_and_run_no_task_twice_per_start(
    server: EmbeddedPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = int(os.environ.get("PGWEAVE_CHAOS_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    dsn = server.dsn(engine_database(server))
    monkeypatch.setenv(EFFECTS_DSN, dsn)
    fleet = Fleet(dsn, FLOWS, tmp_path)
    try:
        fleet.start(PROCESSES)
        wait_registered(dsn, PROCESSES * len(FLOWS))
        runs = plan(rng, singles=24, chains=12, maps=8)
        starter = Starter(dsn, runs, interval=CHAOS_SECONDS / len(runs))
        began = time.monotonic()
        starter.start()
        schedule = sorted(
            [(rng.uniform(0.5, CHAOS_SECONDS), "kill") for _ in range(KILLS)]
            + [(rng.uniform(*CRASH_BETWEEN), "crash")]
        )
        for at, action in schedule:
            time.sleep(max(began + at - time.monotonic(), 0))
            if action == "crash":
                server.crash()
                time.sleep(0.3)
                server.restart()
                print(f"\n{time.monotonic() - began:.1f} s: crash-restarted")
            else:
                fleet.kill_and_replace(rng)
                print(f"\n{time.monotonic() - began:.1f} s: killed one")
        run_ids = starter.finish(timeout=30)
        wait_all(dsn, run_ids, time.monotonic() + RUNS_DEADLINE)
        with psycopg.connect(dsn, autocommit=True) as conn:
            figures = check_invariants(conn, FLOWS)
        print(
            f"\nchaos (seed {seed}): {figures.runs} runs, {figures.tasks} tasks,"
            f" {fleet.kills} worker kills, 1 PostgreSQL crash-restart,"
            f" {figures.re_executions} re-executions ({figures.re_executed_tasks} tasks),"
            f" {figures.requeued} requeued, {starter.retried} starts retried,"
            f" {time.monotonic() - began:.1f} s"
        )
        assert figures.runs == len(runs)
    finally:
        fleet.stop()
