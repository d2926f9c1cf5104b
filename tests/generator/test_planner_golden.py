"""Golden migrations: one small spec pair per kind of change, and the migration planned for it.

Each case edits the mini spec into an *old* and a *new* spec, plans the migration between
them and compares its text with ``golden/planner/<case>.sql``, so any change of the planner
shows up as a reviewable diff of expected output. Rewrite the files after an intended
change with ``PGWEAVE_UPDATE_GOLDEN=1 pytest tests/generator/test_planner_golden.py``.
The catalog-equality proofs in ``tests/migrations`` show on live PostgreSQL that such
migrations are right; these show what they say.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgweave_generator.build import load_ir
from pgweave_generator.ir import SchemaIR
from pgweave_generator.planner import plan
from pgweave_generator.render.migration import render_upgrade
from tests.generator.conftest import MINI, SpecCopy

GOLDEN = Path(__file__).parent / "golden" / "planner"
UPDATE = os.environ.get("PGWEAVE_UPDATE_GOLDEN") == "1"

Edit = tuple[str, str] | tuple[str, str, str]  # old text, new text[, body file]

PRIORITY = (
    "      cancelled_at: timestamptz\n",
    "      cancelled_at: timestamptz\n"
    "      priority: {type: integer, nullable: false, default: 0, doc: Higher ships first.}\n",
)
NOTES_TABLE = (
    "  orders:\n",
    "  notes:\n    doc: Free text about an order.\n    columns:\n"
    "      note_id: {type: bigint, nullable: false}\n      body: text\n"
    "    primary_key: [note_id]\n  orders:\n",
)
CHECK = (
    "    primary_key: [order_id]\n",
    "    primary_key: [order_id]\n    checks:\n"
    "      - {name: order_id_is_positive, expression: order_id > 0}\n",
)
PRIORITY_INDEX = (
    "where: \"status = 'placed'\"}\n",
    "where: \"status = 'placed'\"}\n      - {name: idx_orders_priority, columns: [priority]}\n",
)
VALID_COLUMN = (
    "      name: {type: text, nullable: false, check: shop.is_valid_name(name)}\n",
    "      name: {type: text, nullable: false, check: shop.is_valid_name(name)}\n"
    "      valid: {type: boolean, default: \"shop.is_valid_name('x')\"}\n",
)
ORDER_COUNT = (
    "roles:\n",
    "  order_count:\n    doc: How many orders a customer placed.\n"
    "    args: {customer_id: {type: uuid, doc: The customer.}}\n    returns: bigint\n    language: sql\n"
    '    volatility: stable\n    search_path: ""\n    body: functions/order_count.sql\n'
    "roles:\n",
)


@dataclass(frozen=True)
class Case:
    """The old spec is the mini spec with ``before`` applied, the new one with ``after``."""

    name: str
    after: tuple[Edit, ...]
    before: tuple[Edit, ...] = ()


CASES = [
    Case("add_column", (PRIORITY,)),
    Case("drop_column", (), (PRIORITY,)),
    Case(
        "rename_column",
        (
            (
                PRIORITY[0],
                PRIORITY[0] + "      rank: {type: integer, nullable: false, default: 0, "
                "doc: Higher ships first., renamed_from: priority}\n",
            ),
        ),
        (PRIORITY,),
    ),
    Case(
        "widen_column_type",
        (PRIORITY,),
        ((PRIORITY[0], PRIORITY[1].replace("integer", "smallint")),),
    ),
    Case(
        "narrow_column_type",
        ((PRIORITY[0], PRIORITY[1].replace("integer", "smallint")),),
        (PRIORITY,),
    ),
    Case(
        "set_default",
        ((PRIORITY[0], PRIORITY[1].replace("default: 0,", "default: 1,")),),
        (PRIORITY,),
    ),
    Case(
        "change_state_machine",
        (
            ("    initial: placed\n", "    initial: draft\n"),
            (
                "      placed: {timestamp: placed_at}\n",
                "      draft: {}\n      placed: {timestamp: placed_at}\n",
            ),
            (
                "      - {from: [], to: placed, by: [place_order]}\n",
                "      - {from: [], to: draft, by: [place_order]}\n"
                "      - {from: draft, to: placed, by: [place_order]}\n",
            ),
            (
                "returning *",
                "returning *;\nupdate shop.orders as o set status = 'placed'\n"
                "where o.order_id = place_order.order_id\nreturning *",
                "functions/place_order.sql",
            ),
            (
                "      cancelled: {timestamp: cancelled_at, after: [placed]}\n",
                "      cancelled: {timestamp: cancelled_at}\n",
            ),
        ),
    ),
    Case(
        "set_not_null",
        (
            (
                "      shipped_at: timestamptz\n",
                "      shipped_at: {type: timestamptz, nullable: false}\n",
            ),
        ),
    ),
    Case(
        "comment", (("doc: An order and its life.", "doc: An order, from placement to delivery."),)
    ),
    Case("create_table", (NOTES_TABLE,)),
    Case("drop_table", (), (NOTES_TABLE,)),
    Case(
        "rename_table",
        (
            ("  customers:\n", "  clients:\n    renamed_from: customers\n"),
            ("references: customers,", "references: clients,"),
            ("customers: [select]", "clients: [select]"),
        ),
    ),
    Case("add_check", (CHECK,)),
    Case("drop_check", (), (CHECK,)),
    Case(
        "change_check", ((CHECK[0], CHECK[1].replace("order_id > 0", "order_id >= 1")),), (CHECK,)
    ),
    Case("create_index", (PRIORITY, PRIORITY_INDEX), (PRIORITY,)),
    Case("drop_index", (PRIORITY,), (PRIORITY, PRIORITY_INDEX)),
    Case("rename_index", (("name: idx_orders_open,", "name: idx_orders_placed,"),)),
    Case(
        "create_type",
        (
            (
                "    attributes: {a: integer, b: integer}\n",
                "    attributes: {a: integer, b: integer}\n  triple:\n    doc: Three numbers.\n    attributes: {a: integer, b: integer, c: integer}\n",
            ),
        ),
    ),
    Case(
        "add_attribute",
        (
            (
                "attributes: {a: integer, b: integer}",
                "attributes: {a: integer, b: integer, c: integer}",
            ),
        ),
    ),
    Case(
        "recreate_type",
        (("attributes: {a: integer, b: integer}", "attributes: {b: integer, a: integer}"),),
    ),
    Case("create_function", (ORDER_COUNT,)),
    Case("drop_function", (), (ORDER_COUNT,)),
    Case(
        "replace_function_body",
        (
            (
                "length(name) between 1 and 100",
                "length(name) between 1 and 200",
                "functions/is_valid_name.sql",
            ),
        ),
    ),
    Case(
        "change_function_signature",
        (
            (
                "      order_id: {type: bigint, doc: The order.}\n    returns: setof orders\n"
                "    language: plpgsql",
                "      order_id: {type: bigint, doc: The order.}\n"
                "      note: {type: text, default: 'null', doc: A note.}\n"
                "    returns: setof orders\n    language: plpgsql",
            ),
        ),
    ),
    Case(
        "recreate_function_used_by_check_and_default",
        (
            VALID_COLUMN,
            (
                "    args: {name: {type: text, doc: The name to check.}}\n",
                "    args: {name: {type: text, doc: The name to check.},"
                " loose: {type: boolean, default: 'false', doc: Accept more.}}\n",
            ),
        ),
        (VALID_COLUMN,),
    ),
    Case(
        "foreign_key_to_new_key",
        (
            (
                "    primary_key: [customer_id]\n",
                "    primary_key: [customer_id]\n    unique: [{columns: [name]}]\n",
            ),
            (
                "  orders:\n",
                "  nicknames:\n    doc: Other names of a customer.\n    columns:\n"
                "      nickname: {type: text, nullable: false}\n"
                "      customer_name: {type: text, nullable: false}\n"
                "    primary_key: [nickname]\n    foreign_keys:\n"
                "      - {columns: [customer_name], references: customers, ref_columns: [name]}\n"
                "  orders:\n",
            ),
        ),
    ),
    Case(
        # orders' foreign key references customers' primary key, not the dropped key: kept
        "drop_unique_key",
        (),
        (
            (
                "    primary_key: [customer_id]\n",
                "    primary_key: [customer_id]\n    unique: [{columns: [name]}]\n",
            ),
        ),
    ),
    Case(
        "new_role",
        (
            (
                "roles:\n",
                "roles:\n  shop_auditor:\n    doc: Reads orders.\n    tables: {orders: [select]}\n",
            ),
        ),
    ),
    Case("alter_role", (("doc: May place and ship orders.", "doc: Places and ships orders."),)),
    Case("grant_privilege", (("customers: [select]", "customers: [select, update]"),)),
    Case("revoke_privilege", (("orders: [select, insert, update]", "orders: [select, insert]"),)),
    Case(
        "implied_grant",
        (
            (
                "execute: [place_order, ship_order, is_valid_name]",
                "execute: [place_order, ship_order]",
            ),
        ),
    ),
]


def spec_with(root: Path, edits: tuple[Edit, ...]) -> SchemaIR:
    """The mini spec copied to ``root`` with ``edits`` applied, built."""
    shutil.copytree(MINI, root)
    spec = SpecCopy(root)
    (root / "functions" / "order_count.sql").write_text(
        "select count(*) from shop.orders as o where o.customer_id = order_count.customer_id\n",
        encoding="utf-8",
    )
    for edit in edits:
        if len(edit) == 3:
            path = root / edit[2]
            text = path.read_text(encoding="utf-8")
            assert text.count(edit[0]) == 1, edit
            path.write_text(text.replace(edit[0], edit[1]), encoding="utf-8")
        else:
            spec.replace(edit[0], edit[1])
    return load_ir(spec.file)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_planned_migration_matches_golden(case: Case, tmp_path: Path) -> None:
    old = spec_with(tmp_path / "old", case.before)
    new = spec_with(tmp_path / "new", case.after)
    step = plan(old, new)
    assert not step.empty, "a golden case must change something"
    text = render_upgrade(step, f"0002_{case.name}", "spec.yaml").content
    golden = GOLDEN / f"{case.name}.sql"
    if UPDATE:
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden.name}: run with PGWEAVE_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


def test_every_golden_file_has_a_case() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.sql")) == sorted(c.name for c in CASES)
