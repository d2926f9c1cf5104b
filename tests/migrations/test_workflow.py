"""The edit → `migration new` → review → apply workflow without a database.

Snapshots, the planner's typed changes, destructive-change refusal, redo, the sum file,
and `check`'s pending-change and hand-edit detection.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from pgweave_generator.build import load_ir
from pgweave_generator.changes import AlterColumnType, PlanError, widens
from pgweave_generator.ir import GrantIR, GrantTarget, ImpliedExecuteIR
from pgweave_generator.pipeline import generate_files
from pgweave_generator.planner import plan
from pgweave_generator.renames import rename_words
from pgweave_generator.render.sql import grant_sql, render_initial_migration, revoke_sql
from pgweave_generator.snapshot import Snapshot, SnapshotError, dumps, load_history, loads
from pgweave_generator.sql_types import TypeRef
from tests import PROJECT_ROOT
from tests.migrations.conftest import Workspace

MINI_SPEC = PROJECT_ROOT / "tests" / "generator" / "fixtures" / "mini" / "spec.yaml"
PRIORITY = (
    "      cancelled_at: timestamptz\n",
    "      cancelled_at: timestamptz\n      priority: {type: integer, nullable: false, default: 0}\n",
)


def files_on_disk(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


# -- without snapshots: exactly as before ---------------------------------------------------
def test_without_snapshots_generate_renders_0001_from_the_spec(mini_ws: Workspace) -> None:
    ws = mini_ws
    code, output = ws.cli("generate")
    assert code == 0, output
    assert not (ws.out / "snapshots").exists()
    assert sorted(p.name for p in ws.migrations.iterdir()) == ["0001_initial.sql"]
    expected = render_initial_migration(load_ir(ws.spec), "spec/spec.yaml").content
    assert (ws.migrations / "0001_initial.sql").read_text() == expected
    ws.edit(*PRIORITY)
    code, output = ws.cli("check")  # an edit changes 0001 (stale), never "pending"
    assert code == 1
    assert "pending schema change" not in output
    assert "+  priority integer not null default 0," in output


def test_first_migration_new_keeps_0001_byte_identical(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.cli("generate")
    before = (ws.migrations / "0001_initial.sql").read_bytes()
    ws.new("initial")
    assert (ws.migrations / "0001_initial.sql").read_bytes() == before
    assert sorted(files_on_disk(ws.out / "snapshots")) == ["0001_initial.json"]
    sum_lines = (ws.migrations / "pgweave.sum").read_text().splitlines()
    assert sum_lines[0].startswith("h1:")
    assert [line.split()[0] for line in sum_lines[1:]] == [
        "migrations/0001_initial.sql",
        "snapshots/0001_initial.json",
    ]
    code, output = ws.cli("check")
    assert code == 0, output
    snapshot = json.loads((ws.out / "snapshots" / "0001_initial.json").read_text())
    assert "DO NOT EDIT" in snapshot["$comment"]
    assert (
        snapshot["schema"] == json.loads(dumps(Snapshot(1, "initial", load_ir(ws.spec))))["schema"]
    )


# -- snapshots --------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["spec/pgflow.yaml", "tests/generator/fixtures/mini/spec.yaml"])
def test_snapshot_round_trips_the_ir(spec: str) -> None:
    schema = load_ir(PROJECT_ROOT / spec)
    text = dumps(Snapshot(3, "x", schema))
    again = loads(text, "0003_x.json")
    assert again.schema == schema
    assert dumps(again) == text
    assert all(f.body for f in again.schema.all_functions)


def test_snapshot_errors_are_clear(mini_ws: Workspace) -> None:
    text = dumps(Snapshot(1, "initial", load_ir(mini_ws.spec)))
    data = json.loads(text)
    del data["schema"]["tables"][0]["doc"]
    with pytest.raises(SnapshotError, match=r"tables\[0\]: field 'doc' is missing"):
        loads(json.dumps(data), "0001_initial.json")
    data = json.loads(text)
    data["schema"]["tables"][0]["colour"] = "red"
    with pytest.raises(SnapshotError, match="unknown field"):
        loads(json.dumps(data), "0001_initial.json")
    with pytest.raises(SnapshotError, match=r"NNNN_name\.json"):
        loads(text, "initial.json")


def test_two_branches_adding_the_same_number_are_reported(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    ws.edit(*PRIORITY)
    ws.new("from_branch_a")
    sum_a = (ws.migrations / "pgweave.sum").read_text()
    shutil.copy(ws.out / "snapshots" / "0002_from_branch_a.json", ws.root / "a.json")
    code, output = ws.cli("migration", "redo", "--name", "from_branch_b")
    assert code == 0, output
    sum_b = (ws.migrations / "pgweave.sum").read_text()
    assert sum_a.splitlines()[0] != sum_b.splitlines()[0]  # the sum's first line conflicts in git
    shutil.copy(ws.root / "a.json", ws.out / "snapshots" / "0002_from_branch_a.json")  # the merge
    code, output = ws.cli("check")
    assert code == 1
    assert "two migrations are numbered 0002 (0002_from_branch_a, 0002_from_branch_b)" in output


# -- migration new / plan / check ----------------------------------------------------------
def test_pending_change_fails_check_until_recorded(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    ws.edit(*PRIORITY)
    code, output = ws.cli("check")
    assert code == 1
    assert "pending schema change" in output
    assert "add column orders.priority integer not null default 0" in output
    assert "pgweave migration new NAME" in output
    before = files_on_disk(ws.out)
    code, output = ws.cli("migration", "plan")
    assert code == 0
    assert "-- Migration 0002_next: 1 change." in output
    assert "alter table shop.orders add column priority integer not null default 0;" in output
    assert files_on_disk(ws.out) == before  # plan writes nothing
    code, output = ws.cli("generate")  # generate warns but cannot record a migration itself
    assert code == 0
    assert "pending schema change" in output
    assert not (ws.migrations / "0002_next.sql").exists()
    sql = ws.new("priority")
    assert sql.splitlines()[1] == "-- Migration 0002_priority: 1 change."
    assert sql.splitlines()[2] == "--   add column orders.priority integer not null default 0"
    assert ws.cli("check")[0] == 0
    code, output = ws.cli("migration", "new", "again")
    assert code == 1
    assert "nothing to migrate: the spec matches 0002_priority" in output


def test_generation_with_snapshots_is_deterministic(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    ws.edit(*PRIORITY)
    ws.new("priority")
    first = [(f.path, f.content) for f in generate_files(ws.spec, ws.out)]
    assert first == [(f.path, f.content) for f in generate_files(ws.spec, ws.out)]
    on_disk = files_on_disk(ws.out)
    assert {path: content.encode() for path, content in first} == on_disk


def test_check_catches_hand_edits_of_migrations_and_snapshots(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    ws.edit(*PRIORITY)
    ws.new("priority")
    migration = ws.migrations / "0002_priority.sql"
    original = migration.read_text()
    migration.write_text(original.replace("default 0;", "default 1;"))
    code, output = ws.cli("check")
    assert code == 1
    assert "--- a/migrations/0002_priority.sql" in output
    assert ws.cli("generate")[0] == 0
    assert migration.read_text() == original
    snapshot = ws.out / "snapshots" / "0002_priority.json"
    snapshot.write_text(json.dumps(json.loads(snapshot.read_text())))  # same data, other layout
    code, output = ws.cli("check")
    assert code == 1
    assert "snapshots/0002_priority.json" in output


def test_destructive_refusal_lists_drops_and_narrowing(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    ws.edit("      shipped_at: timestamptz\n", "")
    ws.edit("      shipped: {timestamp: shipped_at, after: [placed]}\n", "      shipped: {}\n")
    ws.edit("payload: {order_id: bigint, shipped_at: timestamptz}", "payload: {order_id: bigint}")
    ws.edit(
        "order_id: {type: bigint, nullable: false}", "order_id: {type: integer, nullable: false}"
    )
    code, output = ws.cli("migration", "new", "shrink")
    assert code == 1
    assert "refusing 2 destructive change(s):" in output
    assert "  - drop column orders.shipped_at" in output
    assert "  - change type of orders.order_id from bigint to integer (narrow)" in output
    assert "--allow-destructive" in output
    assert not (ws.out / "snapshots" / "0002_shrink.json").exists()
    sql = ws.new("shrink", "--allow-destructive")
    assert "-- Migration 0002_shrink:" in sql
    assert "--   DESTRUCTIVE drop column orders.shipped_at" in sql
    assert "alter column order_id type integer using order_id::integer;" in sql


def test_dropping_a_table_is_destructive() -> None:
    schema = load_ir(MINI_SPEC)
    without_orders = replace(
        schema, tables=schema.tables[:1], functions=(), state_machines=(), roles=()
    )
    step = plan(schema, without_orders)
    assert [c.describe() for c in step.destructive] == ["drop table orders"]
    kinds = [type(c).__name__ for c in step.changes]
    assert kinds.index("DropFunction") < kinds.index("DropTable")  # functions return its rows


# -- redo ---------------------------------------------------------------------------------
def test_redo_rerecords_the_last_migration(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    ws.edit(*PRIORITY)
    ws.new("priority")
    ws.edit(
        "where: \"status = 'placed'\"}\n",
        "where: \"status = 'placed'\"}\n      - {name: idx_orders_priority, columns: [priority]}\n",
    )
    assert ws.cli("check")[0] == 1
    code, output = ws.cli("migration", "redo")
    assert code == 0, output
    sql = (ws.migrations / "0002_priority.sql").read_text()
    assert "-- Migration 0002_priority: 2 changes." in sql
    assert "create index idx_orders_priority on shop.orders (priority);" in sql
    assert ws.cli("check")[0] == 0
    code, output = ws.cli("migration", "redo", "--name", "priorities")
    assert code == 0, output
    assert sorted(p.name for p in ws.migrations.glob("*.sql")) == [
        "0001_initial.sql",
        "0002_priorities.sql",
    ]
    assert sorted(p.name for p in (ws.out / "snapshots").iterdir()) == [
        "0001_initial.json",
        "0002_priorities.json",
    ]
    ws.edit("      - {name: idx_orders_priority, columns: [priority]}\n", "")
    ws.edit(PRIORITY[1], PRIORITY[0])
    code, output = ws.cli("migration", "redo")
    assert code == 1
    assert "no longer differs from 0001_initial" in output


# -- planner details ----------------------------------------------------------------------
def test_renames_are_declared_never_guessed(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    ws.edit("      shipped_at: timestamptz\n", "      sent_at: timestamptz\n")
    ws.edit("shipped: {timestamp: shipped_at,", "shipped: {timestamp: sent_at,")
    ws.edit("shipped_at: timestamptz}", "sent_at: timestamptz}")
    code, output = ws.cli("migration", "plan")
    assert code == 0
    assert "drop column orders.shipped_at" in output  # without renamed_from: a drop and an add
    assert "add column sent_at" in output
    ws.edit(
        "      sent_at: timestamptz\n",
        "      sent_at: {type: timestamptz, renamed_from: shipped_at}\n",
    )
    sql = ws.new("sent_at")
    assert "alter table shop.orders rename column shipped_at to sent_at;" in sql
    assert "drop column" not in sql
    # derived names follow the rename: constraints are renamed, not rebuilt
    assert (
        "alter table shop.orders rename constraint shipped_at_is_after_placed_at "
        "to sent_at_is_after_placed_at;" in sql
    )
    assert "shipped_at_or_cancelled_at" not in sql  # its definition follows the rename
    # once released, a leftover renamed_from is a no-op
    assert ws.cli("check")[0] == 0


def test_renamed_from_naming_a_live_object_is_a_spec_error(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.edit(
        "      shipped_at: timestamptz\n",
        "      shipped_at: {type: timestamptz, renamed_from: placed_at}\n",
    )
    code, output = ws.cli("generate")
    assert code == 1
    assert "renamed_from: 'placed_at' is still a column of table 'orders'" in output


def test_column_inserted_mid_table_gets_a_note(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    ws.edit("      placed_at:", "      note: text\n      placed_at:")
    sql = ws.new("note")
    assert "upgraded databases get note at the end of table orders" in sql


def test_schema_rename_is_refused() -> None:
    schema = load_ir(MINI_SPEC)
    other = replace(schema, schema="store")
    with pytest.raises(PlanError, match="renaming the schema is not supported"):
        plan(schema, other)


def test_widening_rules() -> None:
    def t(name: str, array: bool = False) -> TypeRef:
        return TypeRef(name, "base", array)

    assert widens(t("integer"), t("bigint"))
    assert widens(t("smallint"), t("numeric"))
    assert widens(t("uuid"), t("text"))
    assert not widens(t("bigint"), t("integer"))
    assert not widens(t("text"), t("jsonb"))
    assert not widens(t("integer", True), t("bigint"))
    assert AlterColumnType.__dataclass_fields__  # a typed change, destructive when narrowing


def test_rename_words_leaves_literals_calls_and_qualified_names() -> None:
    text = "status <> 'status' and pgflow.status(status) and status(x) and t.status = status"
    assert rename_words(text, {"status": "state"}) == (
        "state <> 'status' and pgflow.status(state) and status(x) and t.status = state"
    )


def test_history_requires_consecutive_numbers(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    (ws.out / "snapshots" / "0001_initial.json").rename(ws.out / "snapshots" / "0002_initial.json")
    with pytest.raises(SnapshotError, match="should be numbered 0001"):
        load_history(ws.out)


def test_grant_and_revoke_of_each_grant_form() -> None:
    table = GrantIR("clerk", GrantTarget.TABLE, ("select", "insert"), "shop", "orders")
    assert grant_sql(table) == "grant select, insert on shop.orders to clerk;"
    assert revoke_sql(table) == "revoke select, insert on shop.orders from clerk;"
    function = GrantIR(
        "clerk",
        GrantTarget.FUNCTION,
        ("execute",),
        "s",
        "f",
        (TypeRef("text", "base"),),
        ImpliedExecuteIR("f", called_by="g"),
    )
    assert grant_sql(function) == "grant execute on function s.f(text) to clerk; -- called by g"
    assert revoke_sql(function) == "revoke execute on function s.f(text) from clerk;"
    future = GrantIR("worker", GrantTarget.FUTURE_TABLES, ("select",), "pgmq")
    assert grant_sql(future) == (
        "alter default privileges in schema pgmq grant select on tables to worker;"
    )
    assert revoke_sql(future) == (
        "alter default privileges in schema pgmq revoke select on tables from worker;\n"
        "revoke select on all tables in schema pgmq from worker;"
    )
    assert revoke_sql(GrantIR("w", GrantTarget.ALL_FUNCTIONS, ("execute",), "pgmq")) == (
        "revoke execute on all functions in schema pgmq from w;"
    )


def test_unplannable_pending_change_is_reported_by_check(mini_ws: Workspace) -> None:
    ws = mini_ws
    ws.new("initial")
    ws.edit("  schema: shop\n", "  schema: store\n")
    ws.edit("check: shop.is_valid_name(name)}", "check: store.is_valid_name(name)}")
    for body in ("place_order", "ship_order", "cancel_order"):
        ws.edit("shop.orders", "store.orders", f"functions/{body}.sql")
    ws.edit("shop._emit", "store._emit", "functions/ship_order.sql")
    code, output = ws.cli("check")
    assert code == 1
    assert "no migration can express: the schema name changes from shop to store" in output
    code, output = ws.cli("migration", "new", "rename_schema")
    assert code == 1
    assert "renaming the schema is not supported" in output
