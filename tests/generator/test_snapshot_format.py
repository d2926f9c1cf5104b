"""Snapshots recorded before constraints were data (format 1) still load, as the same IR."""

from __future__ import annotations

import json

from generator.build import load_ir
from generator.render.sql import constraint_definition
from generator.snapshot import Snapshot, dumps, loads
from tests.generator.conftest import MINI


def test_format_1_snapshot_loads_as_the_structured_ir() -> None:
    schema = load_ir(MINI / "spec.yaml")
    document = json.loads(dumps(Snapshot(1, "initial", schema)))
    document["format"] = 1
    for table_data, table in zip(document["schema"]["tables"], schema.tables, strict=True):
        for data, constraint in zip(table_data["constraints"], table.constraints, strict=True):
            for field in ("expression", "references", "calls"):
                del data[field]
            data["definition"] = constraint_definition(schema.schema, constraint)
    for function in document["schema"]["check_functions"] + document["schema"]["functions"]:
        function["transitions"] = ["order: placed → shipped"]  # format 1 kept them as text
    kinds = {c.kind for t in schema.tables for c in t.constraints}
    assert {"primary key", "foreign key", "check"} <= kinds  # every form is exercised
    assert any(c.calls for t in schema.tables for c in t.constraints)
    upgraded = loads(json.dumps(document), "0001_initial.json")
    assert upgraded.schema == schema
