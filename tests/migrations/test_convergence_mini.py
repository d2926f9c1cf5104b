"""Migrations 1..N give the same catalog as installing snapshot N fresh (mini spec, many edits).

One database is upgraded migration by migration; after each one a fresh database gets
snapshot N's full creation, and the two catalogs must be identical.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.migrations.conftest import (
    FreshDb,
    Workspace,
    assert_same_catalog,
    install_snapshot,
    upgrade,
)


def assert_in_order(sql: str, lines: list[str]) -> None:
    """Each line occurs in the migration, in this order."""
    positions = [sql.index(line) for line in lines]
    assert positions == sorted(positions), sql


def converge(ws: Workspace, upgraded: str, fresh_db: FreshDb, expected: str) -> None:
    """Apply the newest migration to ``upgraded``; compare with a fresh install of it."""
    assert upgrade(upgraded, ws) == [expected]
    code, output = ws.cli("check")
    assert code == 0, output
    fresh = fresh_db()
    install_snapshot(fresh, ws.snapshot())
    assert_same_catalog(upgraded, fresh, ws.snapshot())


def test_mini_spec_evolves_and_converges(mini_ws: Workspace, fresh_db: FreshDb) -> None:
    ws = mini_ws
    upgraded = fresh_db()
    ws.new("initial")
    converge(ws, upgraded, fresh_db, "0001_initial.sql")

    # 2. a column with a default (and a doc), appended
    ws.edit(
        "      cancelled_at: timestamptz\n",
        "      cancelled_at: timestamptz\n"
        "      priority: {type: integer, nullable: false, default: 0, doc: Higher ships first.}\n",
    )
    sql = ws.new("add_priority")
    assert "alter table shop.orders add column priority integer not null default 0;" in sql
    assert "comment on column shop.orders.priority is 'Higher ships first.';" in sql
    converge(ws, upgraded, fresh_db, "0002_add_priority.sql")

    # 3. an index
    ws.edit(
        "where: \"status = 'placed'\"}\n",
        "where: \"status = 'placed'\"}\n      - {name: idx_orders_priority, columns: [priority]}\n",
    )
    sql = ws.new("index_priority")
    assert "create index idx_orders_priority on shop.orders (priority);" in sql
    converge(ws, upgraded, fresh_db, "0003_index_priority.sql")

    # 4. a function body
    ws.edit("begin\n", "begin\n  -- orders ship in priority order\n", "functions/ship_order.sql")
    sql = ws.new("ship_order_body")
    assert "create or replace function shop.ship_order(" in sql
    assert "drop function" not in sql
    converge(ws, upgraded, fresh_db, "0004_ship_order_body.sql")

    # 5. the signature of a function a CHECK uses: the constraint is dropped and re-added
    ws.edit(
        "    args: {name: {type: text, doc: The name to check.}}\n",
        "    args: {name: {type: text, doc: The name to check.},"
        " max_length: {type: integer, default: 100, doc: Longest name.}}\n",
    )
    ws.edit("check: shop.is_valid_name(name)}", 'check: "shop.is_valid_name(name, 100)"}')
    ws.write("functions/is_valid_name.sql", "select length(name) between 1 and max_length\n")
    sql = ws.new("name_length")
    assert_in_order(
        sql,
        [
            "alter table shop.customers drop constraint customers_name_check;",
            "drop function shop.is_valid_name(text);",
            "create function shop.is_valid_name(",
            "alter table shop.customers add constraint customers_name_check check",
            "grant execute on function shop.is_valid_name(text, integer) to shop_clerk;",
        ],
    )
    converge(ws, upgraded, fresh_db, "0005_name_length.sql")

    # 6. a new status: its derived checks change
    ws.edit(
        "doc: Higher ships first.}\n", "doc: Higher ships first.}\n      returned_at: timestamptz\n"
    )
    ws.edit(
        "      cancelled: {timestamp: cancelled_at, after: [placed]}\n",
        "      cancelled: {timestamp: cancelled_at, after: [placed]}\n"
        "      returned: {timestamp: returned_at, after: [shipped]}\n",
    )
    ws.edit("terminal: [shipped, cancelled]", "terminal: [cancelled, returned]")
    ws.edit(
        "      - {from: placed, to: cancelled, by: [cancel_order]}\n",
        "      - {from: placed, to: cancelled, by: [cancel_order]}\n"
        "      - {from: shipped, to: returned, by: [cancel_order]}\n",
    )
    ws.edit(
        "set status = 'cancelled'",
        "set status = case o.status when 'shipped' then 'returned' else 'cancelled' end",
        "functions/cancel_order.sql",
    )
    sql = ws.new("returns")
    assert "alter table shop.orders drop constraint status_is_valid;" in sql
    assert (
        "add constraint status_is_valid check (status in "
        "('placed', 'shipped', 'cancelled', 'returned'));" in sql
    )
    assert "state machine order: new state(s) returned" in sql
    converge(ws, upgraded, fresh_db, "0006_returns.sql")

    # 7. a new role, and an existing role loses a privilege
    ws.edit(
        "roles:\n",
        "roles:\n  shop_auditor:\n    doc: Reads orders.\n    tables: {orders: [select]}\n",
    )
    ws.edit("orders: [select, insert, update]", "orders: [select, insert]")
    sql = ws.new("auditor")
    assert "revoke select, insert, update on shop.orders from shop_clerk;" in sql
    assert "grant select, insert on shop.orders to shop_clerk;" in sql
    assert "create role shop_auditor nologin;" in sql
    converge(ws, upgraded, fresh_db, "0007_auditor.sql")

    # 8. declared renames: a table and a column (their derived constraint names follow)
    ws.edit(
        "  customers:\n    doc: People who order.\n",
        "  clients:\n    renamed_from: customers\n    doc: People who order.\n",
    )
    ws.edit(
        "      customer_id: {type: uuid, nullable: false}\n",
        "      client_id: {type: uuid, nullable: false, renamed_from: customer_id}\n",
    )
    ws.edit(
        "columns: [customer_id], references: customers", "columns: [client_id], references: clients"
    )
    ws.edit("idx_orders_open, columns: [customer_id]", "idx_orders_open, columns: [client_id]")
    ws.edit("customers: [select]", "clients: [select]")
    ws.edit(
        "      customer_id: {type: uuid, doc: Who orders.}\n",
        "      client_id: {type: uuid, doc: Who orders.}\n",
    )
    ws.write(
        "functions/place_order.sql",
        "insert into shop.orders (order_id, client_id)\n"
        "values (place_order.order_id, place_order.client_id)\nreturning *\n",
    )
    with psycopg.connect(upgraded, autocommit=True) as conn:
        conn.execute("insert into shop.customers (name) values ('Ada')")
        conn.execute(
            "insert into shop.orders (order_id, customer_id)"
            " select 1, customer_id from shop.customers"
        )
    sql = ws.new("clients")
    assert "alter table shop.customers rename to clients;" in sql
    assert "alter table shop.orders rename column customer_id to client_id;" in sql
    assert "alter table shop.clients rename constraint customers_pkey to clients_pkey;" in sql
    assert "drop table" not in sql
    assert "drop column" not in sql
    converge(ws, upgraded, fresh_db, "0008_clients.sql")
    with psycopg.connect(upgraded) as conn:
        row = conn.execute(
            "select c.name from shop.orders as o join shop.clients as c on c.customer_id = o.client_id"
        ).fetchone()
        assert row == ("Ada",)

    # 9. widen a type, drop not null, change a default and docs; a type gains an attribute;
    #    a function returns the composite type
    ws.edit(
        "priority: {type: integer, nullable: false, default: 0,",
        "priority: {type: bigint, nullable: true, default: 1,",
    )
    ws.edit("doc: An order and its life.", "doc: An order, from placement to its end.")
    ws.edit("attributes: {a: integer, b: integer}", "attributes: {a: integer, b: integer, c: text}")
    ws.edit("    doc: Two numbers.\n", "    doc: Two numbers and a label.\n")
    ws.edit(
        "functions:\n",
        "functions:\n  order_pair:\n    doc: The order id and its priority.\n"
        "    args: {order_id: {type: bigint, doc: The order.}}\n    returns: pair\n    language: sql\n"
        '    search_path: ""\n    body: functions/order_pair.sql\n',
    )
    ws.write(
        "functions/order_pair.sql",
        "select row(o.order_id::integer, o.priority::integer, 'order')::shop.pair\n"
        "from shop.orders as o where o.order_id = order_pair.order_id\n",
    )
    sql = ws.new("widen")
    assert (
        "alter table shop.orders alter column priority type bigint using priority::bigint;" in sql
    )
    assert "DESTRUCTIVE" not in sql
    assert "alter type shop.pair add attribute c text;" in sql
    converge(ws, upgraded, fresh_db, "0009_widen.sql")

    # 10. destructive: refused without the flag, then allowed
    ws.edit("      - {name: idx_orders_priority, columns: [priority]}\n", "")
    ws.edit(
        "      priority: {type: bigint, nullable: true, default: 1, doc: Higher ships first.}\n", ""
    )
    ws.write(
        "functions/order_pair.sql",
        "select row(o.order_id::integer, 0, 'order')::shop.pair\n"
        "from shop.orders as o where o.order_id = order_pair.order_id\n",
    )
    code, output = ws.cli("migration", "new", "drop_priority")
    assert code == 1
    assert "refusing 1 destructive change(s)" in output
    assert "drop column orders.priority" in output
    assert "--allow-destructive" in output
    code, output = ws.cli("check")
    assert code == 1
    assert "pending schema change" in output
    sql = ws.new("drop_priority", "--allow-destructive")
    assert "--   DESTRUCTIVE drop column orders.priority" in sql
    assert "alter table shop.orders drop column priority;" in sql
    converge(ws, upgraded, fresh_db, "0010_drop_priority.sql")

    # 11. a composite type changes other than by appending: it and its users are recreated
    ws.edit(
        "attributes: {a: integer, b: integer, c: text}",
        "attributes: {a: integer, b: bigint, c: text}",
    )
    sql = ws.new("pair_bigint")
    assert_in_order(
        sql,
        [
            "drop function shop.order_pair(bigint);",
            "drop type shop.pair;",
            "create type shop.pair as (",
            "create function shop.order_pair(",
        ],
    )
    converge(ws, upgraded, fresh_db, "0011_pair_bigint.sql")

    # 12. a role leaves the spec (privileges revoked, role kept); a function is removed
    ws.edit("  shop_auditor:\n    doc: Reads orders.\n    tables: {orders: [select]}\n", "")
    ws.edit(
        "  order_pair:\n    doc: The order id and its priority.\n"
        "    args: {order_id: {type: bigint, doc: The order.}}\n    returns: pair\n    language: sql\n"
        '    search_path: ""\n    body: functions/order_pair.sql\n',
        "",
    )
    sql = ws.new("retire_auditor")
    assert "revoke select on shop.orders from shop_auditor;" in sql
    assert "drop role" not in sql
    assert "drop function shop.order_pair(bigint);" in sql
    converge(ws, upgraded, fresh_db, "0012_retire_auditor.sql")
    with psycopg.connect(upgraded) as conn:
        granted = conn.execute(
            "select has_table_privilege('shop_auditor', 'shop.orders', 'select')"
        ).fetchone()
        assert granted == (False,)


def test_sql_function_is_checked_again_when_its_result_type_grows(
    mini_ws: Workspace, fresh_db: FreshDb
) -> None:
    """A stale SQL body fails the migration (rolled back), not the first call after it."""
    ws = mini_ws
    ws.edit(
        "functions:\n",
        "functions:\n  make_pair:\n    doc: A pair.\n    returns: pair\n    language: sql\n"
        '    search_path: ""\n    body: functions/make_pair.sql\n',
    )
    ws.write("functions/make_pair.sql", "select 1, 2\n")
    ws.new("initial")
    dsn = fresh_db()
    upgrade(dsn, ws)
    ws.edit("attributes: {a: integer, b: integer}", "attributes: {a: integer, b: integer, c: text}")
    sql = ws.new("pair_label")
    assert "create or replace function shop.make_pair(" in sql
    with pytest.raises(psycopg.errors.InvalidFunctionDefinition, match="return type mismatch"):
        upgrade(dsn, ws)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select * from shop.make_pair()").fetchone() == (1, 2)
    ws.write("functions/make_pair.sql", "select 1, 2, 'two'\n")
    ws.cli("migration", "redo")
    assert upgrade(dsn, ws) == ["0002_pair_label.sql"]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select * from shop.make_pair()").fetchone() == (1, 2, "two")


def test_new_table_referencing_a_new_key_of_an_existing_table(
    mini_ws: Workspace, fresh_db: FreshDb
) -> None:
    ws = mini_ws
    upgraded = fresh_db()
    ws.new("initial")
    converge(ws, upgraded, fresh_db, "0001_initial.sql")
    ws.edit(
        "    primary_key: [customer_id]\n",
        "    primary_key: [customer_id]\n    unique:\n      - columns: [name]\n"
        "  reviews:\n    doc: What customers say.\n    columns:\n"
        "      review_id: {type: bigint, nullable: false}\n"
        "      author: {type: text, nullable: false}\n"
        "    primary_key: [review_id]\n"
        "    foreign_keys:\n      - {columns: [author], references: customers, ref_columns: [name]}\n",
    )
    sql = ws.new("reviews")
    assert_in_order(
        sql,
        [
            "create table shop.reviews (",
            "alter table shop.customers add constraint customers_name_key unique (name);",
            "alter table shop.reviews add constraint reviews_author_fkey foreign key (author)",
        ],
    )
    converge(ws, upgraded, fresh_db, "0002_reviews.sql")
