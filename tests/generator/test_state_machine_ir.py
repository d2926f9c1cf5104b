"""What a state machine implies for its table is data in the IR (no SQL text): the checks
(status is a state, one terminal timestamp, timestamp order) and the status default;
the SQL renderer alone spells them."""

from __future__ import annotations

from pgweave_generator.build import load_ir
from pgweave_generator.ir import (
    ConstraintIR,
    ConstraintKind,
    SchemaIR,
    StateCheckIR,
    StateRule,
    TableIR,
)
from pgweave_generator.render.sql import column_default, constraint_definition
from tests.generator.conftest import SpecCopy

ORIGIN = "state machine order"


def orders(schema: SchemaIR) -> TableIR:
    """The mini spec's table governed by state machine ``order``."""
    return next(t for t in schema.tables if t.name == "orders")


def derived(table: TableIR) -> dict[str, ConstraintIR]:
    """The table's checks derived from a state machine, by name."""
    return {c.name: c for c in table.constraints if c.origin is not None}


def check(name: str, rule: StateRule, columns: tuple[str, ...], doc: str) -> ConstraintIR:
    """A derived check of state machine ``order``."""
    states = ("placed", "shipped", "cancelled") if rule is StateRule.IS_STATE else ()
    return ConstraintIR(
        name,
        ConstraintKind.CHECK,
        columns,
        origin=ORIGIN,
        doc=doc,
        state_check=StateCheckIR(rule, states),
    )


def test_derived_checks_are_typed(mini: SpecCopy) -> None:
    table = orders(load_ir(mini.file))
    assert derived(table) == {
        "status_is_valid": check(
            "status_is_valid",
            StateRule.IS_STATE,
            ("status",),
            "status is a state of state machine order",
        ),
        "shipped_at_or_cancelled_at": check(
            "shipped_at_or_cancelled_at",
            StateRule.ONE_TERMINAL_TIMESTAMP,
            ("shipped_at", "cancelled_at"),
            "at most one terminal timestamp is set",
        ),
        "shipped_at_is_after_placed_at": check(
            "shipped_at_is_after_placed_at",
            StateRule.TIMESTAMP_ORDER,
            ("shipped_at", "placed_at"),
            "a row enters 'shipped' no earlier than 'placed'",
        ),
        "cancelled_at_is_after_placed_at": check(
            "cancelled_at_is_after_placed_at",
            StateRule.TIMESTAMP_ORDER,
            ("cancelled_at", "placed_at"),
            "a row enters 'cancelled' no earlier than 'placed'",
        ),
    }
    status = table.column("status")
    assert (status.default, status.initial_state, status.state_machine) == (None, "placed", "order")


def test_derived_checks_follow_the_machine(mini: SpecCopy) -> None:
    mini.replace("      cancelled: {timestamp: cancelled_at, after: [placed]}\n", "")
    mini.replace("      - {from: placed, to: cancelled, by: [cancel_order]}\n", "")
    mini.replace("terminal: [shipped, cancelled]", "terminal: [shipped]")
    (mini.root / "functions" / "cancel_order.sql").write_text(
        "select * from shop.orders where order_id = cancel_order.order_id", encoding="utf-8"
    )
    checks = derived(orders(load_ir(mini.file)))
    assert checks["status_is_valid"].state_check == StateCheckIR(
        StateRule.IS_STATE, ("placed", "shipped")
    )
    assert checks["shipped_at_or_cancelled_at"].columns == ("shipped_at",)
    assert "cancelled_at_is_after_placed_at" not in checks


def test_derived_checks_and_default_render_as_sql(mini: SpecCopy) -> None:
    schema = load_ir(mini.file)
    table = orders(schema)
    spelled = {name: constraint_definition("shop", c) for name, c in derived(table).items()}
    assert spelled == {
        "status_is_valid": "check (status in ('placed', 'shipped', 'cancelled'))",
        "shipped_at_or_cancelled_at": "check (num_nonnulls(shipped_at, cancelled_at) <= 1)",
        "shipped_at_is_after_placed_at": "check (shipped_at is null or shipped_at >= placed_at)",
        "cancelled_at_is_after_placed_at": (
            "check (cancelled_at is null or cancelled_at >= placed_at)"
        ),
    }
    assert column_default(table.column("status")) == "'placed'"
    assert column_default(table.column("placed_at")) == "now()"
