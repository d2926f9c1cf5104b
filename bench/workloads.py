"""The workloads W1-W5: how their runs are started, when they are done, and their verification.

Every case is verified after it ran: each run completed (W5: failed) with the right output,
the expected step states and task counts, no task left queued or started, the queue empty and
every task's message archived exactly once. Any problem fails the benchmark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.flows import FLOWS, expected_run_output


@dataclass(frozen=True)
class Workload:
    """One workload: a flow, how many runs and how many map elements per run."""

    key: str
    flow: str
    runs: int
    elements: int = 0
    title: str = ""

    @property
    def steps(self) -> int:
        """Steps per run."""
        return len(FLOWS[self.flow].steps)

    def inputs(self) -> list[Any]:
        """The flow input of each run."""
        if self.elements:
            return [list(range(self.elements)) for _ in range(self.runs)]
        return [{"n": i} for i in range(self.runs)]

    @property
    def tasks(self) -> int:
        """Tasks the workload completes (W5: tasks it creates)."""
        if self.flow == "bench_w1":
            return self.runs
        if self.flow == "bench_w2":
            return 3 * self.runs
        if self.flow in ("bench_w3", "bench_w3x"):
            return self.runs * self.elements
        if self.flow == "bench_w4":
            return 2 * self.runs * self.elements
        if self.flow == "bench_w5":
            return self.elements + 1
        raise KeyError(self.flow)

    @property
    def fails(self) -> bool:
        """W5 ends in a failed run (a type violation)."""
        return self.flow == "bench_w5"

    def start(self, conn: psycopg.Connection, *, per_run: bool = False) -> float:
        """Start every run in one transaction: one start_flows call, or with ``per_run``
        one start_flow call per run (the start path before start_flows); returns the
        seconds it took."""
        started = time.perf_counter()
        with conn.transaction():
            if per_run:
                conn.execute(
                    "select count(*) from jsonb_array_elements(%s) as i,"
                    " lateral pgflow.start_flow(%s, i.value) as r",
                    (Jsonb(self.inputs()), self.flow),
                )
            else:
                conn.execute(
                    "select count(*) from pgflow.start_flows(%s, %s::jsonb[])",
                    (self.flow, [Jsonb(i) for i in self.inputs()]),
                )
        return time.perf_counter() - started

    def done(self, conn: psycopg.Connection) -> bool:
        """Whether the drivers have finished (W5: run failed and its queue empty)."""
        if self.fails:
            row = conn.execute(
                "select exists (select 1 from pgflow.runs where flow_slug = %s and status = 'failed')"
                f" and not exists (select 1 from pgmq.q_{self.flow})",
                (self.flow,),
            ).fetchone()
            return bool(row and row[0])
        row = conn.execute(
            "select not exists (select 1 from pgflow.runs where flow_slug = %s and status = 'started')",
            (self.flow,),
        ).fetchone()
        return bool(row and row[0])

    def verify(self, conn: psycopg.Connection) -> list[str]:
        """Everything that is wrong after the run (empty: verified)."""
        problems: list[str] = []
        flow = self.flow

        def scalar(query: str, *params: Any) -> Any:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None

        runs = conn.execute(
            "select input, status, output from pgflow.runs where flow_slug = %s", (flow,)
        ).fetchall()
        if len(runs) != self.runs:
            problems.append(f"{len(runs)} runs instead of {self.runs}")
        want_status = "failed" if self.fails else "completed"
        wrong = [r for r in runs if r[1] != want_status]
        if wrong:
            problems.append(f"{len(wrong)} runs not {want_status} (e.g. {wrong[0][1]})")
        if not self.fails:
            bad_outputs = [r for r in runs if r[2] != expected_run_output(flow, r[0])]
            if bad_outputs:
                problems.append(f"{len(bad_outputs)} runs with a wrong output")
            states = scalar(
                "select count(*) from pgflow.step_states where flow_slug = %s and status = 'completed'",
                flow,
            )
            if states != self.runs * self.steps:
                problems.append(
                    f"{states} completed step states instead of {self.runs * self.steps}"
                )
        tasks: dict[str, int] = dict(
            conn.execute(
                "select status, count(*) from pgflow.step_tasks where flow_slug = %s group by status",
                (flow,),
            ).fetchall()
        )
        total = sum(tasks.values())
        if total != self.tasks:
            problems.append(f"{total} tasks instead of {self.tasks}: {tasks}")
        if self.fails:
            if tasks.get("failed") != 1:
                problems.append(f"{tasks.get('failed', 0)} failed tasks instead of 1")
            if tasks.get("completed", 0) + tasks.get("cancelled", 0) != self.elements:
                problems.append(f"map tasks neither completed nor cancelled: {tasks}")
            failed_step = scalar(
                "select step_slug from pgflow.step_states where flow_slug = %s and status = 'failed'",
                flow,
            )
            if failed_step != "bad":
                problems.append(f"failed step {failed_step!r} instead of 'bad'")
        elif tasks.get("completed") != self.tasks:
            problems.append(f"{tasks.get('completed', 0)} completed tasks of {self.tasks}: {tasks}")
        queued = scalar(f"select count(*) from pgmq.q_{flow}")
        if queued:
            problems.append(f"{queued} messages left in the queue")
        archived, distinct = conn.execute(
            f"select count(*), count(distinct msg_id) from pgmq.a_{flow}"
        ).fetchone() or (0, 0)
        if archived != self.tasks or distinct != archived:
            problems.append(
                f"{archived} archived messages ({distinct} distinct) for {self.tasks} tasks"
            )
        missing = scalar(
            "select count(*) from pgflow.step_tasks as t"
            f" where t.flow_slug = %s and not exists (select 1 from pgmq.a_{flow} as a"
            " where a.msg_id = t.message_id)",
            flow,
        )
        if missing:
            problems.append(f"{missing} tasks whose message was not archived")
        return problems


def workloads(quick: bool) -> list[Workload]:
    """W1-W5 at full size, or small for ``--quick``."""
    if quick:
        return [
            Workload("W1", "bench_w1", runs=60, title="one-step flow"),
            Workload("W2", "bench_w2", runs=20, title="three-step chain"),
            Workload("W3-1k", "bench_w3", runs=1, elements=100, title="root map"),
            Workload("W3-10k", "bench_w3x", runs=1, elements=400, title="root map"),
            Workload("W4", "bench_w4", runs=1, elements=100, title="map -> dependent map"),
            Workload("W5", "bench_w5", runs=1, elements=300, title="type violation"),
        ]
    return [
        Workload("W1", "bench_w1", runs=2000, title="one-step flow"),
        Workload("W2", "bench_w2", runs=500, title="three-step chain"),
        Workload("W3-1k", "bench_w3", runs=1, elements=1000, title="root map, 1,000"),
        Workload("W3-10k", "bench_w3x", runs=1, elements=10000, title="root map, 10,000"),
        Workload("W4", "bench_w4", runs=1, elements=1000, title="map -> dependent map"),
        Workload("W5", "bench_w5", runs=1, elements=5000, title="type violation"),
    ]
