"""The spec's SQL is parsed at generate time: names, empty bodies, statuses set by bodies.

Each case breaks the mini spec on purpose and expects the problem at its file and line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgweave_generator.build import load_ir
from pgweave_generator.diagnostics import SpecError
from tests.generator.conftest import SpecCopy


def problems(mini: SpecCopy) -> list[str]:
    """Every issue ``build`` reports for the (broken) spec copy."""
    with pytest.raises(SpecError) as caught:
        load_ir(mini.file)
    return [str(issue) for issue in caught.value.issues]


def edit_body(mini: SpecCopy, name: str, old: str, new: str) -> Path:
    """Replace text in a body file; returns the file."""
    path = mini.root / "functions" / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "check: shop.is_valid_name(name)}",
            "check: shop.is_valid_name(nme)}",
            "tables.customers.columns.name.check: unknown column 'nme' in table 'customers'",
            id="check-unknown-column",
        ),
        pytest.param(
            "check: shop.is_valid_name(name)}",
            "check: shop.is_valid_nam(name)}",
            "tables.customers.columns.name.check: unknown function 'shop.is_valid_nam'",
            id="check-unknown-function",
        ),
        pytest.param(
            "check: shop.is_valid_name(name)}",
            "check: shop.is_valid_name(name) and}",
            "tables.customers.columns.name.check: invalid SQL expression: syntax error",
            id="check-syntax-error",
        ),
        pytest.param(
            "where: \"status = 'placed'\"",
            "where: \"stauts = 'placed'\"",
            "tables.orders.indexes[0].where: unknown column 'stauts' in table 'orders'",
            id="index-predicate-typo",
        ),
        pytest.param(
            "placed_at: {type: timestamptz, nullable: false, default: now()}",
            "placed_at: {type: timestamptz, nullable: false, default: shipped_at}",
            "tables.orders.columns.placed_at.default: a default cannot refer to column "
            "'shipped_at'",
            id="default-names-column",
        ),
    ],
)
def test_spec_fragment_is_parsed_and_its_names_checked(
    mini: SpecCopy, old: str, new: str, expected: str
) -> None:
    line = mini.replace(old, new)
    assert f"{mini.file}:{line}: {expected}" in "\n".join(problems(mini))


def test_empty_body_file_is_an_error(mini: SpecCopy) -> None:
    (mini.root / "functions" / "is_valid_name.sql").write_text("\n\n", encoding="utf-8")
    assert any(
        "functions.is_valid_name.body: body file 'functions/is_valid_name.sql' is empty" in p
        for p in problems(mini)
    )


@pytest.mark.parametrize(
    ("old", "new", "line", "expected"),
    [
        pytest.param(
            "update shop.orders as o",
            "update shop.order as o",
            3,
            "unknown table 'shop.order'",
            id="unknown-table",
        ),
        pytest.param(
            "raise exception 'Order not found: %', ship_order.order_id;",
            "perform shop.notify_customer(ship_order.order_id);",
            8,
            "unknown function 'shop.notify_customer'",
            id="unknown-function",
        ),
        pytest.param(
            "if not found then",
            "if not found then then",
            1,
            "invalid SQL: syntax error",
            id="plpgsql-syntax-error",
        ),
    ],
)
def test_names_in_bodies_are_checked(
    mini: SpecCopy, old: str, new: str, line: int, expected: str
) -> None:
    body = edit_body(mini, "ship_order.sql", old, new)
    assert f"{body}:{line}: functions.ship_order.body: {expected}" in "\n".join(problems(mini))


def test_status_set_without_declared_transition_is_an_error(mini: SpecCopy) -> None:
    body = edit_body(mini, "ship_order.sql", "set status = 'shipped'", "set status = 'cancelled'")
    found = "\n".join(problems(mini))
    assert (
        f"{body}:4: functions.ship_order.body: sets orders.status to 'cancelled' but no "
        "transition of state machine 'order' to 'cancelled' lists ship_order in 'by'"
    ) in found
    # and the transition to shipped it declares is no longer performed by any body
    assert (
        "state_machines.order.transitions[1].by[0]: no body of ship_order (or of a function "
        "it calls) sets orders.status to 'shipped'"
    ) in found


def test_declared_transition_no_body_performs_is_an_error(mini: SpecCopy) -> None:
    line = mini.replace(
        "- {from: placed, to: cancelled, by: [cancel_order]}",
        "- {from: placed, to: cancelled, by: [cancel_order, place_order]}",
    )
    assert (
        f"{mini.file}:{line}: state_machines.order.transitions[2].by[1]: no body of "
        "place_order (or of a function it calls) sets orders.status to 'cancelled'"
    ) in problems(mini)


def test_insert_without_creating_transition_is_an_error(mini: SpecCopy) -> None:
    mini.replace(
        "- {from: [], to: placed, by: [place_order]}", "- {from: [], to: placed, by: [ship_order]}"
    )
    body = mini.root / "functions" / "place_order.sql"
    assert (
        f"{body}:1: functions.place_order.body: inserts into orders but no creating transition "
        "(from: []) of state machine 'order' lists place_order in 'by'"
    ) in problems(mini)


def test_duplicate_constraint_is_reported_at_the_duplicate(mini: SpecCopy) -> None:
    line = mini.replace(
        "    primary_key: [order_id]\n",
        "    primary_key: [order_id]\n    checks:\n"
        "      - {name: orders_pkey, expression: order_id > 0}\n",
    )
    assert (
        f"{mini.file}:{line + 2}: tables.orders.checks[0].name: duplicate constraint name "
        "'orders_pkey'"
    ) in problems(mini)


def test_event_payload_built_by_hand_is_an_error(mini: SpecCopy) -> None:
    body = edit_body(
        mini,
        "ship_order.sql",
        "  if not found then\n",
        "  perform shop._broadcast(\n"
        "    jsonb_build_object('event_type', 'order:shipped', 'order_id', ship_order.order_id),\n"
        "    'order:shipped', 'orders:' || ship_order.order_id);\n"
        "  if not found then\n",
    )
    assert (
        f"{body}:8: functions.ship_order.body: builds an event payload by hand "
        "(jsonb_build_object('event_type', …)); call the event's generated helper "
        "(shop._emit_<event> or shop._event_<event>)"
    ) in problems(mini)


def test_event_helpers_are_generated_and_callable_from_bodies(mini: SpecCopy) -> None:
    edit_body(
        mini,
        "ship_order.sql",
        "  if not found then\n",
        "  perform shop._emit_order_shipped(ship_order.order_id, now());\n  if not found then\n",
    )
    schema = load_ir(mini.file)
    functions = {f.name: f for f in schema.functions}
    emit, build = functions["_emit_order_shipped"], functions["_event_order_shipped"]
    assert [(a.name, a.type.name) for a in emit.args] == [
        ("order_id", "bigint"),
        ("shipped_at", "timestamptz"),
    ]
    assert emit.args == build.args
    assert emit.internal
    assert build.internal
    assert emit.calls == ("_broadcast",)
    assert "_emit_order_shipped" in functions["ship_order"].calls
    assert "'event_type', 'order:shipped'" in emit.body
    assert "'orders:' || _emit_order_shipped.order_id" in emit.body


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "    topic: orders:{order_id}\n",
            "    topic: orders:{order}\n",
            "events.order:shipped.topic: placeholder '{order}' is not a payload key",
            id="unknown-placeholder",
        ),
        pytest.param(
            "    payload: {order_id: bigint, shipped_at: timestamptz}\n",
            "    payload: {order_id: bigint, shipped_at: timestamptz}\n"
            "    variants: {late: {order_id: bigint}}\n",
            "events.order:shipped.variants.late.order_id: key 'order_id' is already in the payload",
            id="variant-repeats-a-key",
        ),
        pytest.param(
            "    payload: {order_id: bigint, shipped_at: timestamptz}\n",
            "    payload: {order_id: bigint, shipped_at: timestampz}\n",
            "events.order:shipped.payload.shipped_at: unknown type 'timestampz'",
            id="unknown-payload-type",
        ),
    ],
)
def test_event_declarations_are_checked(mini: SpecCopy, old: str, new: str, expected: str) -> None:
    mini.replace(old, new)
    assert any(expected in p for p in problems(mini)), problems(mini)


def test_events_need_a_broadcast_function(mini: SpecCopy) -> None:
    mini.replace("  _broadcast:\n", "  _send:\n")
    assert any("events: the event helpers call function _broadcast" in p for p in problems(mini)), (
        problems(mini)
    )


def test_body_calling_an_event_helper_must_declare_the_event(mini: SpecCopy) -> None:
    mini.replace("    emits: [order:shipped]\n", "")
    body = mini.root / "functions" / "ship_order.sql"
    assert (
        f"{body}:10: functions.ship_order.body: calls shop._emit_order_shipped but "
        "'order:shipped' is not in the 'emits' of ship_order"
    ) in problems(mini)


def test_body_building_an_event_must_declare_it_too(mini: SpecCopy) -> None:
    body = edit_body(
        mini,
        "cancel_order.sql",
        "where",
        "where shop._event_order_shipped(order_id, now()) is not null and",
    )
    found = [p for p in problems(mini) if "cancel_order" in p]
    assert found == [
        f"{body}:3: functions.cancel_order.body: calls shop._event_order_shipped but "
        "'order:shipped' is not in the 'emits' of cancel_order"
    ]


def test_declared_event_no_body_emits_is_an_error(mini: SpecCopy) -> None:
    line = mini.replace(
        "    body: functions/cancel_order.sql\n",
        "    body: functions/cancel_order.sql\n    emits: [order:shipped]\n",
    )
    assert (
        f"{mini.file}:{line + 1}: functions.cancel_order.emits[0]: no body of cancel_order "
        "(or of a function it calls) emits 'order:shipped'"
    ) in problems(mini)


def test_declared_event_emitted_by_a_callee_is_enough(mini: SpecCopy) -> None:
    edit_body(mini, "cancel_order.sql", "where", "where shop.ship_order(order_id) is null and")
    mini.replace(
        "    body: functions/cancel_order.sql\n",
        "    body: functions/cancel_order.sql\n    emits: [order:shipped]\n",
    )
    cancel = next(f for f in load_ir(mini.file).functions if f.name == "cancel_order")
    assert cancel.emits == ("order:shipped",)
    assert "ship_order" in cancel.calls
