"""SQL target: the schema as a migration, from the intermediate model."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pgweave_generator.ir import (
    ColumnIR,
    ConstraintIR,
    ConstraintKind,
    ForeignKeyAction,
    FunctionIR,
    GrantIR,
    GrantTarget,
    ImpliedExecuteIR,
    SchemaIR,
    StateRule,
)
from pgweave_generator.render import GeneratedFile, header
from pgweave_generator.templating import environment, render, sql_literal

INITIAL_MIGRATION = "migrations/0001_initial.sql"


def function_identity(schema: SchemaIR, function: FunctionIR) -> str:
    """``schema.name(argtype, …)``: how grants and comments name a function."""
    types = ", ".join(arg.type.sql(schema.schema) for arg in function.args)
    return f"{schema.schema}.{function.name}({types})"


def check_expression(constraint: ConstraintIR) -> str:
    """A check's boolean expression: the spec's text, or a state machine's rule spelled out."""
    derived = constraint.state_check
    if derived is None:
        assert constraint.expression is not None
        return constraint.expression
    columns = constraint.columns
    match derived.rule:
        case StateRule.IS_STATE:
            states = ", ".join(sql_literal(state) for state in derived.states)
            return f"{columns[0]} in ({states})"
        case StateRule.ONE_TERMINAL_TIMESTAMP:
            return f"num_nonnulls({', '.join(columns)}) <= 1"
    later, earlier = columns
    return f"{later} is null or {later} >= {earlier}"


def column_default(column: ColumnIR) -> str | None:
    """The DEFAULT expression of a column: the spec's, or a status column's initial state."""
    if column.initial_state is not None:
        return sql_literal(column.initial_state)
    return column.default


def constraint_definition(schema: str, constraint: ConstraintIR) -> str:
    """What follows ``constraint <name>``: ``primary key (…)``, ``check (…)`` …"""
    columns = ", ".join(constraint.columns)
    match constraint.kind:
        case ConstraintKind.CHECK:
            return f"check ({check_expression(constraint)})"
        case ConstraintKind.FOREIGN_KEY:
            target = constraint.references
            assert target is not None
            text = (
                f"foreign key ({columns}) references {schema}.{target.table} "
                f"({', '.join(target.columns)})"
            )
            if target.on_delete is not ForeignKeyAction.NO_ACTION:
                text += f" on delete {target.on_delete}"
            if target.on_update is not ForeignKeyAction.NO_ACTION:
                text += f" on update {target.on_update}"
            return text
    return f"{constraint.kind} ({columns})"


def _grant_object(grant: GrantIR) -> str:
    match grant.target:
        case GrantTarget.SCHEMA:
            return f"schema {grant.schema}"
        case GrantTarget.FUNCTION:
            types = ", ".join(t.sql(grant.schema) for t in grant.arg_types)
            return f"function {grant.schema}.{grant.name}({types})"
        case GrantTarget.TABLE:
            return f"{grant.schema}.{grant.name}"
        case GrantTarget.ALL_FUNCTIONS:
            return f"all functions in schema {grant.schema}"
        case GrantTarget.ALL_TABLES:
            return f"all tables in schema {grant.schema}"
    return "tables"  # future tables: named by the default-privileges prefix


def implied_reason(implied: ImpliedExecuteIR) -> str:
    """Why a role needs a function the spec does not grant it, in a few words."""
    if implied.called_by is not None:
        return f"called by {implied.called_by}"
    return f"checks of {implied.checks_of}"


def grant_sql(grant: GrantIR) -> str:
    """The GRANT statement, with why when the grant is implied by another."""
    prefix = (
        f"alter default privileges in schema {grant.schema} "
        if grant.target is GrantTarget.FUTURE_TABLES
        else ""
    )
    text = f"{prefix}grant {', '.join(grant.privileges)} on {_grant_object(grant)} to {grant.role};"
    return f"{text} -- {implied_reason(grant.implied)}" if grant.implied else text


def revoke_sql(grant: GrantIR) -> str:
    """The REVOKE undoing ``grant``.

    Default privileges on tables also reached the tables created since (e.g. the queues of
    new flows): those grants are revoked too.
    """
    privileges = ", ".join(grant.privileges)
    revoke = f"revoke {privileges} on {_grant_object(grant)} from {grant.role};"
    if grant.target is not GrantTarget.FUTURE_TABLES:
        return revoke
    return (
        f"alter default privileges in schema {grant.schema} {revoke}\n"
        f"revoke {privileges} on all tables in schema {grant.schema} from {grant.role};"
    )


def function_returns(schema: SchemaIR, function: FunctionIR) -> str:
    """The RETURNS clause of a function."""
    returns = function.returns
    if returns.table is not None:
        columns = ", ".join(f"{a.name} {a.type.sql(schema.schema)}" for a in returns.table)
        return f"table ({columns})"
    assert returns.type is not None
    text = returns.type.sql(schema.schema)
    return f"setof {text}" if returns.setof else text


def search_path_clause(value: str) -> str:
    """``set search_path = …`` with an empty path spelled as ''."""
    return "set search_path = ''" if value == "" else f"set search_path = {value}"


def summary(schema: SchemaIR) -> str:
    """One line a reviewer reads first: what the migration creates."""
    parts = [
        f"{len(schema.tables)} tables",
        f"{len(schema.types)} types",
        f"{len(schema.all_functions)} functions",
        f"{len(schema.state_machines)} state machines",
        f"{len(schema.roles)} roles",
    ]
    return f"creates schema {schema.schema}: " + ", ".join(parts)


def template_context(schema: SchemaIR) -> dict[str, object]:
    """What the SQL templates (and their object macros) need to render ``schema``."""
    return {
        "s": schema,
        "identity": lambda f: function_identity(schema, f),
        "returns": lambda f: function_returns(schema, f),
        "search_path": search_path_clause,
        "definition": lambda c: constraint_definition(schema.schema, c),
        "column_default": column_default,
        "grant": grant_sql,
    }


def render_initial_migration(schema: SchemaIR, source: str, name: str = "initial") -> GeneratedFile:
    """The first migration: everything the spec holds, created from nothing."""
    migration = f"0001_{name}"
    content = render(
        "sql/initial_migration.sql.j2",
        header=header("--", source),
        summary=summary(schema),
        migration=migration,
        **template_context(schema),
    )
    return GeneratedFile(f"migrations/{migration}.sql", content)


@lru_cache(maxsize=8)
def _objects(schema: SchemaIR) -> Any:
    """The initial template as a module, for its object macros (create_table, role …)."""
    return (
        environment()
        .get_template("sql/initial_migration.sql.j2")
        .make_module({"header": "", "summary": "", "migration": "", **template_context(schema)})
    )


def render_object(schema: SchemaIR, macro: str, *args: object, **kwargs: object) -> str:
    """One object macro of the initial template (``create_table``, ``function``, ``role`` …).

    Migrations build their statements from the same macros as the initial migration, so
    an object created by an upgrade is spelled exactly as in a fresh install.
    """
    return str(getattr(_objects(schema), macro)(*args, **kwargs))
