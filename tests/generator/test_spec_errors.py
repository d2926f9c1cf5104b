"""A malformed spec fails with a message naming the offending path, file and line."""

from __future__ import annotations

import pytest

from pgweave_generator.build import load_ir
from pgweave_generator.diagnostics import SpecError
from tests.generator.conftest import SpecCopy

CASES = [
    pytest.param(
        "status: {type: text, nullable: false}",
        "status: {type: txt, nullable: false}",
        "tables.orders.columns.status.type: unknown type 'txt'",
        id="unknown-column-type",
    ),
    pytest.param(
        "primary_key: [order_id]",
        "primary_key: [order_ident]",
        "tables.orders.primary_key.columns[0]: unknown column 'order_ident' in table 'orders'",
        id="unknown-key-column",
    ),
    pytest.param(
        "references: customers,",
        "references: clients,",
        "tables.orders.foreign_keys[0].references: unknown table 'clients'",
        id="fk-unknown-table",
    ),
    pytest.param(
        "{name: idx_orders_open, columns: [customer_id]",
        "{name: idx_orders_open, columns: [client_id]",
        "tables.orders.indexes[0].columns[0]: unknown column 'client_id' in table 'orders'",
        id="index-unknown-column",
    ),
    pytest.param(
        "where: \"status = 'placed'\"",
        "where: \"status = 'open'\"",
        "tables.orders.indexes[0].where: 'open' is not a state of state machine 'order'",
        id="index-unknown-state-literal",
    ),
    pytest.param(
        "- {from: placed, to: shipped, by: [ship_order]}",
        "- {from: placed, to: delivered, by: [ship_order]}",
        "state_machines.order.transitions[1].to: unknown state 'delivered'",
        id="transition-unknown-state",
    ),
    pytest.param(
        "- {from: placed, to: shipped, by: [ship_order]}",
        "- {from: placed, to: shipped, by: [ship_it]}",
        "state_machines.order.transitions[1].by[0]: unknown function 'ship_it'",
        id="transition-unknown-function",
    ),
    pytest.param(
        "    table: orders\n",
        "    table: purchases\n",
        "state_machines.order.table: unknown table 'purchases'",
        id="machine-unknown-table",
    ),
    pytest.param(
        "terminal: [shipped, cancelled]",
        "terminal: [shipped, lost]",
        "state_machines.order.terminal[1]: unknown state 'lost'",
        id="machine-unknown-terminal",
    ),
    pytest.param(
        "      name: {type: text, nullable: false, check: shop.is_valid_name(name)}\n",
        "      name: {type: text, nullable: false, check: shop.is_valid_name(name)}\n"
        "      name: text\n",
        "tables.customers.columns.name: duplicate key",
        id="duplicate-column",
    ),
    pytest.param(
        "placed_at: {type: timestamptz, nullable: false, default: now()}",
        "placed_at: {type: timestamptz, nullable: false, default: now(), colour: red}",
        "tables.orders.columns.placed_at.colour: unknown key",
        id="unknown-key",
    ),
    pytest.param(
        "execute: [place_order, ship_order, is_valid_name]",
        "execute: [place_order, ship_order, is_valid_name, refund]",
        "roles.shop_clerk.execute[3]: unknown function 'refund'",
        id="grant-unknown-function",
    ),
    pytest.param(
        "customers: [select]}",
        "clients: [select]}",
        "roles.shop_clerk.tables.clients: unknown table 'clients'",
        id="grant-unknown-table",
    ),
    pytest.param(
        "raises: [order_not_found]",
        "raises: [order_lost]",
        "functions.ship_order.raises[0]: unknown error 'order_lost'",
        id="unknown-error",
    ),
    pytest.param(
        "emits: [order:shipped]",
        "emits: [order:lost]",
        "functions.ship_order.emits[0]: unknown event 'order:lost'",
        id="unknown-event",
    ),
    pytest.param(
        "body: functions/place_order.sql",
        "body: functions/no_such_file.sql",
        "functions.place_order.body: body file 'functions/no_such_file.sql' not found",
        id="missing-body",
    ),
    pytest.param(
        "status: {type: text, nullable: false}",
        "status: {type: text, nullable: false, default: \"'placed'\"}",
        "tables.orders.columns.status.default: status column default is derived from state machine 'order'",
        id="status-default-written-twice",
    ),
    pytest.param(
        "      customer_id: {type: uuid, doc: Who orders.}\n",
        "      customer_id: {type: uuidd, doc: Who orders.}\n",
        "functions.place_order.args.customer_id.type: unknown type 'uuidd'",
        id="unknown-argument-type",
    ),
    pytest.param(
        "indexes:\n      - {name: idx_orders_open",
        "indexes:\n      - {name: customers_pkey",
        "tables.orders.indexes[0].name: index name 'customers_pkey' clashes with an index of table 'customers'",
        id="duplicate-index-name",
    ),
    pytest.param(
        "body: functions/place_order.sql",
        "body: functions/place_order.sql\n    client_variants: [raw]",
        "functions.place_order.client_variants: client_variants need a set-returning function (setof or table)",
        id="client-variant-of-a-single-value",
    ),
    pytest.param(
        "emits: [order:shipped]",
        "emits: [order:shipped]\n    client_variants: [exec]",
        "functions.ship_order.client_variants[0]: input should be 'execrows' or 'raw', got \"exec\"",
        id="unknown-client-variant",
    ),
    pytest.param(
        "  orders:\n    doc: An order",
        "  Orders:\n    doc: An order",
        'tables.Orders: "Orders" is not a valid name (must match ^[a-z_][a-z0-9_]*$)',
        id="bad-identifier",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), CASES)
def test_malformed_spec_names_path_file_and_line(
    mini: SpecCopy, old: str, new: str, expected: str
) -> None:
    line = mini.replace(old, new)
    with pytest.raises(SpecError) as caught:
        load_ir(mini.file)
    messages = [str(issue) for issue in caught.value.issues]
    matching = [m for m in messages if expected in m]
    assert matching, f"no issue contains {expected!r}: {messages}"
    issue = next(i for i in caught.value.issues if expected in str(i))
    assert issue.file == mini.file
    assert issue.line is not None
    # The issue points at the edited line, or at the mapping/list that holds it.
    assert abs(issue.line - line) <= 3, f"line {issue.line} is far from the edit at {line}"


def test_every_issue_is_reported_not_just_the_first(mini: SpecCopy) -> None:
    mini.replace("status: {type: text, nullable: false}", "status: {type: txt, nullable: false}")
    mini.replace("emits: [order:shipped]", "emits: [order:lost]")
    with pytest.raises(SpecError) as caught:
        load_ir(mini.file)
    text = str(caught.value)
    assert "unknown type 'txt'" in text
    assert "unknown event 'order:lost'" in text


def test_yaml_syntax_error_has_a_line(mini: SpecCopy) -> None:
    line = mini.replace("    doc: People who order.\n", "    doc: [People who order.\n")
    with pytest.raises(SpecError) as caught:
        load_ir(mini.file)
    (issue,) = caught.value.issues
    assert "not valid YAML/JSON" in issue.message
    assert issue.line is not None
    assert issue.line >= line


def test_missing_required_section(mini: SpecCopy) -> None:
    mini.replace("version: 1\n", "")
    with pytest.raises(SpecError, match="version: required key is missing"):
        load_ir(mini.file)


def internal_is_valid_name(mini: SpecCopy) -> None:
    mini.replace(
        "    body: functions/is_valid_name.sql\n",
        "    body: functions/is_valid_name.sql\n    internal: true\n",
    )


def issue_at(mini: SpecCopy, expected: str) -> int:
    """The line of the one issue containing ``expected`` (in the spec file)."""
    with pytest.raises(SpecError) as caught:
        load_ir(mini.file)
    [issue] = [i for i in caught.value.issues if expected in str(i)]
    assert issue.file == mini.file
    assert issue.line is not None
    return issue.line


def test_a_role_granted_an_internal_function_is_an_error(mini: SpecCopy) -> None:
    internal_is_valid_name(mini)
    line = issue_at(
        mini,
        "roles.shop_clerk.execute[2]: function 'is_valid_name' is internal: "
        "no role may be granted it",
    )
    assert mini.text.splitlines()[line - 1].strip().startswith("execute:")


def test_an_internal_function_needed_through_a_table_write_is_an_error(mini: SpecCopy) -> None:
    internal_is_valid_name(mini)
    mini.replace("execute: [place_order, ship_order, is_valid_name]", "execute: [ship_order]")
    mini.replace("customers: [select]}", "customers: [select, insert]}")
    issue_at(
        mini,
        "roles.shop_clerk.tables.customers: needs internal function 'is_valid_name' "
        "(checks of customers): grant no writes",
    )


def test_an_internal_function_called_by_an_invoker_grant_is_an_error(mini: SpecCopy) -> None:
    internal_is_valid_name(mini)
    mini.replace("execute: [place_order, ship_order, is_valid_name]", "execute: [place_order]")
    body = mini.root / "functions" / "place_order.sql"
    body.write_text(
        "insert into shop.orders (order_id, customer_id)\n"
        "select place_order.order_id, place_order.customer_id\n"
        "where shop.is_valid_name('x')\n"
        "returning *\n",
        encoding="utf-8",
    )
    issue_at(
        mini,
        "roles.shop_clerk.execute[0]: needs internal function 'is_valid_name' "
        "(called by place_order): make 'place_order' security definer",
    )
    # as security definer it runs with its owner's rights: no grant needed, no error
    mini.replace(
        "    body: functions/place_order.sql\n",
        "    security: definer\n    body: functions/place_order.sql\n",
    )
    assert load_ir(mini.file).roles[0].implied_execute == ()


UNDOCUMENTED = "undocumented argument of a public function: give it a 'doc'"


@pytest.mark.parametrize(
    "written",
    ["      customer_id: uuid\n", "      customer_id: {type: uuid, doc: '  '}\n"],
    ids=["shorthand", "blank-doc"],
)
def test_an_undocumented_argument_of_a_public_function_is_an_error(
    mini: SpecCopy, written: str
) -> None:
    line = mini.replace("      customer_id: {type: uuid, doc: Who orders.}\n", written)
    assert issue_at(mini, f"functions.place_order.args.customer_id: {UNDOCUMENTED}") == line


def test_an_internal_function_may_leave_its_arguments_undocumented(mini: SpecCopy) -> None:
    internal_is_valid_name(mini)
    mini.replace("{name: {type: text, doc: The name to check.}}", "{name: text}")
    mini.replace("execute: [place_order, ship_order, is_valid_name]", "execute: [place_order]")
    schema = load_ir(mini.file)
    (arg,) = next(f for f in schema.all_functions if f.name == "is_valid_name").args
    assert arg.doc is None


def test_a_queue_call_needs_the_queue_setting(mini: SpecCopy) -> None:
    body = mini.root / "functions" / "is_valid_name.sql"
    body.write_text("select pgmq.format_table_name(name) is not null\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_ir(mini.file)
    (issue,) = caught.value.issues
    assert issue.file == body
    assert issue.line == 1
    assert "calls 'pgmq.format_table_name' but settings.queue is not set" in issue.message
    mini.replace("  schema: shop\n", "  schema: shop\n  queue: {provider: pgmq}\n")
    assert load_ir(mini.file).queue_provider == "pgmq"
