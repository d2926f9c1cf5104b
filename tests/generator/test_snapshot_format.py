"""Snapshots recorded before constraints were data (format 1) still load, as the same IR."""

from __future__ import annotations

import json
from pathlib import Path

from pgweave_generator.render.sql import constraint_definition, implied_reason
from pgweave_generator.snapshot import Snapshot, dumps, loads

# The released 0002 still had security-invoker grants, hence implied EXECUTE grants.
SNAPSHOT = (
    Path(__file__).resolve().parents[2]
    / "generated"
    / "snapshots"
    / "0002_batch_final_completions.json"
)


def test_format_1_snapshot_loads_as_the_structured_ir() -> None:
    schema = loads(SNAPSHOT.read_text(), SNAPSHOT.name).schema
    document = json.loads(dumps(Snapshot(1, "initial", schema)))
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
