"""Snapshots of older formats still load, as the same IR: format 1 (constraints as SQL text)
and format 2 (the checks and status defaults of state machines as SQL text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pgweave_generator.ir import SchemaIR, StateRule
from pgweave_generator.render.sql import check_expression, constraint_definition, implied_reason
from pgweave_generator.snapshot import Snapshot, SnapshotError, dumps, loads
from pgweave_generator.templating import sql_literal

# The released 0002 still had security-invoker grants, hence implied EXECUTE grants.
SNAPSHOT = (
    Path(__file__).resolve().parents[2]
    / "generated"
    / "snapshots"
    / "0002_batch_final_completions.json"
)


def released() -> SchemaIR:
    """The schema of the released snapshot 0002."""
    return loads(SNAPSHOT.read_text(), SNAPSHOT.name).schema


def format_2(schema: SchemaIR) -> dict[str, Any]:
    """The snapshot document of ``schema`` as format 2 wrote it."""
    document: dict[str, Any] = json.loads(dumps(Snapshot(1, "initial", schema)))
    document["format"] = 2
    for table_data, table in zip(document["schema"]["tables"], schema.tables, strict=True):
        for data, column in zip(table_data["columns"], table.columns, strict=True):
            if column.initial_state is not None:
                data["default"] = sql_literal(data.pop("initial_state"))
        for data, constraint in zip(table_data["constraints"], table.constraints, strict=True):
            if constraint.state_check is not None:
                data["expression"] = check_expression(constraint)
                del data["state_check"]
    return document


def test_format_2_snapshot_loads_as_the_structured_ir() -> None:
    schema = released()
    rules = {c.state_check.rule for t in schema.tables for c in t.constraints if c.state_check}
    assert rules == set(StateRule)  # every rule is exercised
    assert any(c.initial_state for t in schema.tables for c in t.columns)
    document = format_2(schema)
    assert "state_check" not in json.dumps(document)
    assert "initial_state" not in json.dumps(document)
    assert loads(json.dumps(document), "0001_initial.json").schema == schema


def test_format_2_check_that_is_no_rule_of_its_machine_is_refused() -> None:
    document = format_2(released())
    runs = next(t for t in document["schema"]["tables"] if t["name"] == "runs")
    check = next(c for c in runs["constraints"] if c["name"] == "status_is_valid")
    check["expression"] = "status in ('started', 'completed')"
    with pytest.raises(SnapshotError, match="check status_is_valid: not a rule of state machine"):
        loads(json.dumps(document), "0001_initial.json")


def test_format_1_snapshot_loads_as_the_structured_ir() -> None:
    schema = released()
    document = format_2(schema)
    document["format"] = 1
    for table_data, table in zip(document["schema"]["tables"], schema.tables, strict=True):
        for data, constraint in zip(table_data["constraints"], table.constraints, strict=True):
            for field in ("expression", "references", "calls"):
                del data[field]
            data["definition"] = constraint_definition(schema.schema, constraint)
    for function in document["schema"]["check_functions"] + document["schema"]["functions"]:
        function["transitions"] = ["run: started → completed"]  # format 1 kept them as text
    for role_data, role in zip(document["schema"]["roles"], schema.roles, strict=True):
        role_data["implied_execute"] = [
            [i.function, implied_reason(i)] for i in role.implied_execute
        ]
    assert any(r.implied_execute for r in schema.roles)
    kinds = {c.kind for t in schema.tables for c in t.constraints}
    assert {"primary key", "foreign key", "check"} <= kinds  # every form is exercised
    assert any(c.calls for t in schema.tables for c in t.constraints)
    upgraded = loads(json.dumps(document), "0001_initial.json")
    assert upgraded.schema == schema
