"""The smoke run: a two-step flow driven through the SQL API on a freshly installed database."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb

SMOKE_WORKER = "00000000-0000-0000-0000-000000005e1f"


def run_smoke(conn: psycopg.Connection, echo: Callable[[str], object]) -> None:
    """Define a flow, start a run, work its tasks as a worker would, and check the result."""
    tables = conn.execute(
        "select count(*) from information_schema.tables where table_schema = 'pgflow'"
    ).fetchone()
    echo(f"schema pgflow: {tables[0] if tables else 0} tables")
    conn.execute("select pgflow.create_flow('smoke')")
    conn.execute("select pgflow.add_step('smoke', 'double')")
    conn.execute("select pgflow.add_step('smoke', 'report', array['double'])")
    conn.execute("select pgflow.register_worker(%s, 'smoke', 'smoke')", (SMOKE_WORKER,))
    run = conn.execute(
        "select run_id from pgflow.start_flow('smoke', %s)", (Jsonb({"n": 21}),)
    ).fetchone()
    assert run is not None
    run_id = run[0]
    echo(f"started run {run_id}")
    for _ in range(10):
        messages = conn.execute(
            "select array_agg(msg_id) from pgmq.read_with_poll('smoke', 5, 10, 1, 50)"
        ).fetchone()
        if not messages or messages[0] is None:
            break
        tasks = conn.execute(
            "select run_id, step_slug, task_index, input, flow_input"
            " from pgflow.start_tasks('smoke', %s, %s)",
            (messages[0], SMOKE_WORKER),
        ).fetchall()
        for task_run, step, index, task_input, flow_input in tasks:
            # A root single step gets {} as input and the run's input as flow_input.
            output = (
                {"n": flow_input["n"] * 2}
                if step == "double"
                else {"text": f"got {task_input['double']['n']}"}
            )
            conn.execute(
                "select pgflow.complete_task(%s, %s, %s, %s)",
                (task_run, step, index, Jsonb(output)),
            )
            echo(f"  completed {step}[{index}] -> {output}")
    row = conn.execute(
        "select status, output from pgflow.runs where run_id = %s", (run_id,)
    ).fetchone()
    assert row is not None
    echo(f"run {run_id}: {row[0]}, output {row[1]}")
    if row[0] != "completed" or row[1] != {"report": {"text": "got 42"}}:
        raise RuntimeError(f"smoke run ended {row[0]} with output {row[1]!r}")
