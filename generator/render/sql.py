"""SQL target: the schema as a migration, from the intermediate model."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pgweave_generator.ir import FunctionIR, SchemaIR
from pgweave_generator.render import GeneratedFile, header
from pgweave_generator.templating import environment, render

INITIAL_MIGRATION = "migrations/0001_initial.sql"


def function_identity(schema: SchemaIR, function: FunctionIR) -> str:
    """``schema.name(argtype, …)``: how grants and comments name a function."""
    types = ", ".join(arg.type.sql(schema.schema) for arg in function.args)
    return f"{schema.schema}.{function.name}({types})"


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
