"""Flows of the chaos and failover tests (``pgweave worker tests.chaos.flows:<slug>``).

Every execution of a handler is recorded as a side effect in ``chaos_effects`` (database
given by ``$PGWEAVE_CHAOS_DSN``), under a key of its own: an insert retried through an
outage never counts twice, so the rows per task are the times its handler really ran.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

import psycopg

from pgweave.dsl import Flow, StepContext

EFFECTS_DSN = "PGWEAVE_CHAOS_DSN"
GATE_FILE = "PGWEAVE_CHAOS_GATE"
EFFECTS_TABLE = (
    "create table chaos_effects (execution uuid primary key, run_id uuid not null,"
    " step_slug text not null, task_index integer not null, pid integer not null)"
)
OUTAGE_SECONDS = 60.0
"""How long a handler keeps trying to record its side effect while the database is away."""


def _record(ctx: StepContext) -> None:
    execution = uuid.uuid4()
    deadline = time.monotonic() + OUTAGE_SECONDS
    while True:
        try:
            with psycopg.connect(os.environ[EFFECTS_DSN], autocommit=True) as conn:
                conn.execute(
                    "insert into chaos_effects values (%s, %s, %s, %s, %s)"
                    " on conflict (execution) do nothing",
                    (execution, ctx.run_id, ctx.step_slug, ctx.task_index, os.getpid()),
                )
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def work(value: Any, ctx: StepContext) -> Any:
    """A short piece of work with a recorded side effect; returns its input."""
    time.sleep(random.uniform(0.05, 0.25))
    _record(ctx)
    return value


def gate(value: Any, ctx: StepContext) -> str:
    """Wait until the test creates the gate file, then record the side effect."""
    path = Path(os.environ[GATE_FILE])
    deadline = time.monotonic() + OUTAGE_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} never opened")
        time.sleep(0.05)
    _record(ctx)
    return "opened"


class Items(TypedDict):
    each: list[int]


def total(deps: Items, ctx: StepContext) -> int:
    """Sum of the map's outputs (with its side effect)."""
    _record(ctx)
    return sum(deps["each"])


chaos_single = Flow[Any]("chaos_single", timeout=3).step("only", work)
chaos_chain = (
    Flow[Any]("chaos_chain", timeout=3)
    .step("first", work)
    .step("second", work, depends_on=["first"])
    .step("third", work, depends_on=["second"])
)
chaos_map = (
    Flow[list[int]]("chaos_map", timeout=3)
    .map("each", work)
    .step("total", total, depends_on=["each"])
)
chaos_gate = Flow[Any]("chaos_gate", timeout=60).step("gate", gate)
