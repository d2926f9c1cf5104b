"""A database at migration 0002 with runs in flight upgrades to the run-control migration:
the runs in flight finish as before, and the run-control functions work on runs that
were started before the upgrade (cancel, pause/unpause, resume of a failed partial map)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from pgweave.install import apply_migrations
from tests import PROJECT_ROOT
from tests.engine.helpers import (
    complete,
    fail,
    fetch,
    read_and_start,
    run_row,
    start_flow,
    task_statuses,
)
from tests.migrations.conftest import FreshDb

RELEASED = ("0001_initial.sql", "0002_batch_final_completions.sql")


def define_flows(conn: psycopg.Connection) -> None:
    """Flow s: a → b. Flow m: a root map m (one attempt) → z."""
    conn.execute("select pgflow.create_flow('s')")
    conn.execute("select pgflow.add_step('s', 'a')")
    conn.execute("select pgflow.add_step('s', 'b', array['a'])")
    conn.execute("select pgflow.create_flow('m', max_attempts => 1)")
    conn.execute("select pgflow.add_step('m', 'm', step_type => 'map')")
    conn.execute("select pgflow.add_step('m', 'z', array['m'])")


def drain(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> None:
    """Complete every task of the flow until the run finishes."""
    for _ in range(20):
        if run_row(conn, run_id)["status"] != "started":
            return
        for task in read_and_start(conn, flow, vt=30, qty=20):
            complete(conn, task, task["input"])
    raise AssertionError(f"run {run_id} did not finish")


def test_upgrade_from_0002_with_runs_in_flight(fresh_db: FreshDb, tmp_path: Path) -> None:
    released = tmp_path / "released"
    released.mkdir()
    for name in RELEASED:
        shutil.copy(PROJECT_ROOT / "generated" / "migrations" / name, released / name)
    dsn = fresh_db()

    with psycopg.connect(dsn, autocommit=True) as conn:
        assert apply_migrations(conn, released) == list(RELEASED)
        define_flows(conn)
        finishing = start_flow(conn, "s", {"n": 1})["run_id"]
        to_cancel = start_flow(conn, "s", {"n": 2})["run_id"]
        to_pause = start_flow(conn, "s", {"n": 3})["run_id"]
        held = read_and_start(conn, "s", vt=30, qty=3)  # every run's a started
        assert len(held) == 3
        partial = start_flow(conn, "m", [1, 2, 3, 4])["run_id"]
        mapped = sorted(read_and_start(conn, "m", vt=30, qty=4), key=lambda t: t["task_index"])
        for task in mapped[:3]:
            complete(conn, task, task["input"] * 100)
        fail(conn, mapped[3], "element 3 broke")
        assert run_row(conn, partial)["status"] == "failed"

        applied = apply_migrations(conn)
        assert applied[0].startswith("0003_")

        by_run = {t["run_id"]: t for t in held}
        # A run in flight finishes as before.
        complete(conn, by_run[finishing], "A1")
        drain(conn, "s", finishing)
        assert run_row(conn, finishing)["output"] == {"b": {"a": "A1"}}

        # Cancelling a run started before the upgrade, while its task runs.
        [cancelled] = fetch(conn, "select * from pgflow.cancel_run(%s, 'upgrade')", to_cancel)
        assert cancelled["status"] == "cancelled"
        complete(conn, by_run[to_cancel], "late")
        assert task_statuses(conn, to_cancel) == {("a", 0): "cancelled"}

        # Pausing one: its next step is queued but does not start until unpaused.
        fetch(conn, "select * from pgflow.pause_run(%s)", to_pause)
        complete(conn, by_run[to_pause], "A3")
        assert read_and_start(conn, "s", vt=30, qty=10) == []
        fetch(conn, "select * from pgflow.unpause_run(%s)", to_pause)
        drain(conn, "s", to_pause)
        assert run_row(conn, to_pause)["status"] == "completed"

        # Resuming the failed map run of before the upgrade: only element 3 runs again.
        [resumed] = fetch(conn, "select * from pgflow.resume_run(%s)", partial)
        [again] = read_and_start(conn, "m", vt=30, qty=10)
        assert (again["step_slug"], again["task_index"]) == ("m", 3)
        fetch(
            conn,
            "select * from pgflow.complete_task(%s, 'm', 3, %s)",
            resumed["run_id"],
            Jsonb(400),
        )
        drain(conn, "m", resumed["run_id"])
        assert run_row(conn, resumed["run_id"])["output"] == {"z": {"m": [100, 200, 300, 400]}}
        assert run_row(conn, partial)["status"] == "failed"
