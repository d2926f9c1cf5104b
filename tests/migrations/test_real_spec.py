"""The engine's own spec evolves through realistic edits while runs are in flight.

Each edit is recorded with ``migration new`` and applied to two databases: one without
data, whose catalog must equal a fresh install of the new snapshot, and one with runs in
flight, which must keep working and finish those runs correctly after the last migration.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import yaml

from tests.engine.helpers import complete, fetch, read_and_start, start_flow
from tests.migrations.conftest import (
    FreshDb,
    Workspace,
    assert_same_catalog,
    install_snapshot,
    upgrade,
)

FLOW = "evolving"


@contextmanager
def spec_data(ws: Workspace) -> Iterator[dict[str, Any]]:
    """The spec as data, written back (as YAML) when the block ends."""
    data = yaml.safe_load(ws.spec.read_text(encoding="utf-8"))
    yield data
    ws.spec.write_text(yaml.safe_dump(data, sort_keys=False, width=100), encoding="utf-8")


def add_column_with_default(ws: Workspace) -> None:
    with spec_data(ws) as spec:
        spec["tables"]["runs"]["columns"]["priority"] = {
            "type": "integer",
            "nullable": False,
            "default": 0,
            "doc": "Higher runs first.",
        }


def add_index(ws: Workspace) -> None:
    with spec_data(ws) as spec:
        spec["tables"]["runs"].setdefault("indexes", []).append(
            {"name": "idx_runs_priority", "columns": ["priority"]}
        )


def add_step_option(ws: Workspace) -> None:
    """A step option: a column of steps, an add_step argument, and the body storing it."""
    with spec_data(ws) as spec:
        spec["tables"]["steps"]["columns"]["opt_priority"] = {
            "type": "integer",
            "doc": "Priority of the step's tasks.",
        }
        spec["functions"]["add_step"]["args"]["priority"] = {
            "type": "integer",
            "default": "null",
            "doc": "Higher runs first.",
        }
    anchor = "  return result;\nend;"
    body = (ws.root / "spec" / "functions" / "add_step.sql").read_text(encoding="utf-8")
    assert anchor in body, "add_step.sql no longer ends with 'return result; end;': adapt the edit"
    ws.edit(
        anchor,
        "  if add_step.priority is not null then\n"
        "    update pgflow.steps as s set opt_priority = add_step.priority\n"
        "    where s.flow_slug = add_step.flow_slug and s.step_slug = add_step.step_slug\n"
        "    returning * into result;\n"
        "  end if;\n" + anchor,
        "functions/add_step.sql",
    )


def change_function_body(ws: Workspace) -> None:
    path = ws.root / "spec" / "functions" / "complete_task.sql"
    path.write_text(
        "-- revised: outputs are stored as the handler returned them\n"
        + path.read_text(encoding="utf-8"),
        encoding="utf-8",
    )


def change_function_signature(ws: Workspace) -> None:
    """is_valid_slug gains an argument: the CHECKs that call it are dropped and re-added."""
    with spec_data(ws) as spec:
        spec["functions"]["is_valid_slug"]["args"]["max_length"] = {
            "type": "integer",
            "default": 128,
            "doc": "Longest valid slug.",
        }
    body = (ws.root / "spec" / "functions" / "is_valid_slug.sql").read_text(encoding="utf-8")
    if "length(slug) <= 128" in body:
        ws.edit("length(slug) <= 128", "length(slug) <= max_length", "functions/is_valid_slug.sql")


def add_status(ws: Workspace) -> None:
    """Runs can expire: a state, its timestamp, a transition and its function."""
    with spec_data(ws) as spec:
        spec["tables"]["runs"]["columns"]["expired_at"] = "timestamptz"
        run = spec["state_machines"]["run"]
        run["terminal"].append("expired")
        run["states"]["expired"] = {
            "timestamp": "expired_at",
            "after": ["started"],
            "doc": "Expired by an operator.",
        }
        run["transitions"].append({"from": "started", "to": "expired", "by": ["expire_run"]})
        spec["functions"]["expire_run"] = {
            "doc": "Expire a started run.",
            "args": {"run_id": {"type": "uuid", "doc": "The run to expire."}},
            "returns": "void",
            "language": "sql",
            "search_path": "",
            "body": "functions/expire_run.sql",
        }
    ws.write(
        "functions/expire_run.sql",
        "update pgflow.runs as r set status = 'expired', expired_at = now()\n"
        "where r.run_id = expire_run.run_id and r.status = 'started'\n",
    )


def add_role(ws: Workspace) -> None:
    with spec_data(ws) as spec:
        spec.setdefault("roles", {})["pgflow_auditor"] = {
            "doc": "Reads runs and their states.",
            "execute": ["get_run_with_states"],
            "tables": {"runs": ["select"], "step_states": ["select"]},
        }


EDITS: list[tuple[str, Callable[[Workspace], None], list[str]]] = [
    (
        "run_priority",
        add_column_with_default,
        ["alter table pgflow.runs add column priority integer not null default 0;"],
    ),
    (
        "index_run_priority",
        add_index,
        ["create index idx_runs_priority on pgflow.runs (priority);"],
    ),
    (
        "step_priority",
        add_step_option,
        [
            "alter table pgflow.steps add column opt_priority integer;",
            "create function pgflow.add_step(",
        ],
    ),
    (
        "complete_task_body",
        change_function_body,
        ["create or replace function pgflow.complete_task("],
    ),
    (
        "slug_length",
        change_function_signature,
        [
            "alter table pgflow.flows drop constraint slug_is_valid;",
            "drop function pgflow.is_valid_slug(text);",
            "alter table pgflow.flows add constraint slug_is_valid check",
        ],
    ),
    (
        "expire_runs",
        add_status,
        [
            "alter table pgflow.runs drop constraint status_is_valid;",
            "alter table pgflow.runs add column expired_at timestamptz;",
            "create function pgflow.expire_run(",
        ],
    ),
    ("auditor", add_role, ["create role pgflow_auditor nologin;"]),
]


def define_flow(conn: psycopg.Connection) -> None:
    """a → b, and a map c over the flow input."""
    conn.execute("select pgflow.create_flow(%s)", (FLOW,))
    conn.execute("select pgflow.add_step(%s, 'a')", (FLOW,))
    conn.execute("select pgflow.add_step(%s, 'b', array['a'])", (FLOW,))


def run_status(conn: psycopg.Connection, run_id: uuid.UUID) -> dict[str, Any]:
    rows = fetch(conn, "select status, output from pgflow.runs where run_id = %s", run_id)
    assert len(rows) == 1
    return rows[0]


def handler_output(task: dict[str, Any]) -> dict[str, Any]:
    """What the test's handler returns: its step, the run's input and its dependencies'."""
    return {"step": task["step_slug"], "flow": task["flow_input"], "deps": task["input"]}


def finish(conn: psycopg.Connection, started: list[dict[str, Any]]) -> None:
    """Complete the tasks started before, then everything queued, until no work is left."""
    pending = list(started)
    for _ in range(50):
        for task in pending:
            complete(conn, task, handler_output(task))
        pending = read_and_start(conn, FLOW, vt=30, qty=10)
        if not pending:
            return
    raise AssertionError("runs did not finish")


def test_engine_spec_evolves_under_live_runs(real_ws: Workspace, fresh_db: FreshDb) -> None:
    ws = real_ws
    empty, live = fresh_db(), fresh_db()
    ws.new("initial")
    for dsn in (empty, live):
        assert upgrade(dsn, ws) == ["0001_initial.sql"]

    with psycopg.connect(live, autocommit=True) as conn:
        define_flow(conn)
        runs = [start_flow(conn, FLOW, {"n": n})["run_id"] for n in range(3)]
        in_flight = read_and_start(conn, FLOW, vt=30, qty=2)  # two runs' step a started
        assert len(in_flight) == 2

    for number, (name, edit, expected) in enumerate(EDITS, start=2):
        edit(ws)
        sql = ws.new(name)
        for line in expected:
            assert line in sql, f"{name}: {line!r} missing from\n{sql}"
        stem = f"{number:04d}_{name}.sql"
        assert upgrade(empty, ws) == [stem]
        assert upgrade(live, ws) == [stem]
        fresh = fresh_db()
        install_snapshot(fresh, ws.snapshot())
        assert_same_catalog(empty, fresh, ws.snapshot())
        with psycopg.connect(live, autocommit=True) as conn:
            if number == 3:  # between migrations, one in-flight task completes
                task = in_flight.pop()
                complete(conn, task, handler_output(task))
            if number == 5:  # a run started halfway through the upgrades
                runs.append(start_flow(conn, FLOW, {"n": 3})["run_id"])

    code, output = ws.cli("check")
    assert code == 0, output
    with psycopg.connect(live, autocommit=True) as conn:
        finish(conn, in_flight)
        for index, run_id in enumerate(runs):
            run = run_status(conn, run_id)
            assert run["status"] == "completed", run
            leaf_a = {"step": "a", "flow": {"n": index}, "deps": {}}
            assert run["output"] == {"b": {"step": "b", "flow": None, "deps": {"a": leaf_a}}}
        # the new features work on the upgraded database
        conn.execute("select pgflow.add_step(%s, 'c', array['b'], priority => 5)", (FLOW,))
        assert fetch(conn, "select opt_priority from pgflow.steps where step_slug = 'c'") == [
            {"opt_priority": 5}
        ]
        run_id = start_flow(conn, FLOW, {"n": 9})["run_id"]
        conn.execute("select pgflow.expire_run(%s)", (run_id,))
        assert run_status(conn, run_id)["status"] == "expired"
        assert fetch(conn, "select priority from pgflow.runs where run_id = %s", run_id) == [
            {"priority": 0}
        ]
