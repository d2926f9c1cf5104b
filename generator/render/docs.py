"""Docs target: a Markdown reference of the schema for mkdocs-material.

Overview, ER diagram and state diagrams (Mermaid), one page per table and per function,
the composite types, events, errors, roles, migrations and the Python client. The site's
navigation is generated too (``mkdocs.nav.yml``, inherited by the root ``mkdocs.yml``).
Everything is derived from the model, sorted where the spec gives no order, and free of
anything that changes between runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pgweave_generator.ir import (
    ConstraintIR,
    ConstraintKind,
    ErrorIR,
    EventIR,
    RoleIR,
    SchemaIR,
    StateMachineIR,
    TableIR,
)
from pgweave_generator.render import GeneratedFile, header
from pgweave_generator.render.event_helpers import helper_stem
from pgweave_generator.render.python_client import Method, class_names, error_class, method
from pgweave_generator.render.python_models import camel, row_model, status_enum, type_model
from pgweave_generator.render.sql import (
    column_default,
    constraint_definition,
    function_returns,
    implied_reason,
)
from pgweave_generator.sql_types import TypeRef
from pgweave_generator.targets import Targets
from pgweave_generator.templating import render

DOCS = "docs"
NAV_FILE = "mkdocs.nav.yml"
CSS_FILE = "stylesheets/extra.css"


# -- Markdown helpers ------------------------------------------------------------------------
def cell(text: str | None) -> str:
    """Plain text for a table cell: no line breaks, pipes and angle brackets escaped."""
    if not text:
        return ""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str | None) -> str:
    """Inline code on one line (tables keep pipes inside code spans; backticks widened when needed)."""
    if text is None or text == "":
        return ""
    flat = " ".join(text.split())
    fence = "``" if "`" in flat else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def anchor(name: str) -> str:
    """An explicit heading id: lower case, anything but letters, digits and _ becomes -."""
    return re.sub(r"[^a-z0-9_]+", "-", name.lower()).strip("-")


def indent(text: str, spaces: int = 4) -> str:
    """Indent every non-empty line (content of an admonition)."""
    pad = " " * spaces
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())


def mermaid_label(text: str) -> str:
    """Text safe in a Mermaid label."""
    return re.sub(r"[\"#;:{}<>]", " ", text).strip()


# -- derived views ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Relation:
    """A foreign key seen from both ends, for the ER diagram and table pages."""

    child: str
    parent: str
    constraint: ConstraintIR
    optional: bool  # some FK column is nullable


def relations(schema: SchemaIR) -> list[Relation]:
    """Every foreign key of the schema, in table order."""
    found: list[Relation] = []
    for table in schema.tables:
        for constraint in table.constraints:
            if constraint.references is None:
                continue
            optional = any(table.column(c).nullable for c in constraint.columns)
            found.append(Relation(table.name, constraint.references.table, constraint, optional))
    return found


def er_diagram(schema: SchemaIR) -> str:
    """The Mermaid ``erDiagram`` of every table, its columns, keys and foreign keys."""
    lines = ["erDiagram"]
    rels = relations(schema)
    for table in schema.tables:
        pk = next(
            (c.columns for c in table.constraints if c.kind is ConstraintKind.PRIMARY_KEY), ()
        )
        fk = {col for r in rels if r.child == table.name for col in r.constraint.columns}
        uk = {
            col for c in table.constraints if c.kind is ConstraintKind.UNIQUE for col in c.columns
        }
        lines.append(f"    {table.name} {{")
        for column in table.columns:
            keys = [k for k, cols in (("PK", pk), ("FK", fk), ("UK", uk)) if column.name in cols]
            type_name = column.type.sql(schema.schema).replace(" ", "_").replace(".", "_")
            suffix = f" {', '.join(keys)}" if keys else ""
            lines.append(f"        {type_name} {column.name}{suffix}")
        lines.append("    }")
    for rel in rels:
        left = "|o" if rel.optional else "||"
        lines.append(f'    {rel.parent} {left}--o{{ {rel.child} : "{rel.constraint.name}"')
    return "\n".join(lines)


def state_diagram(machine: StateMachineIR) -> str:
    """The Mermaid ``stateDiagram-v2`` of one state machine."""
    lines = ["stateDiagram-v2"]
    for transition in machine.transitions:
        label = mermaid_label(", ".join(transition.by))
        for source in transition.sources or ("[*]",):
            lines.append(f"    {source} --> {transition.target}: {label}")
    for state in machine.states:
        if state.terminal:
            lines.append(f"    {state.name} --> [*]")
    return "\n".join(lines)


def type_link(ref: TypeRef, schema: SchemaIR, prefix: str) -> str:
    """A type, linked to its page when the spec defines it."""
    text = code(ref.sql(schema.schema))
    if ref.kind == "table":
        return f"[{text}]({prefix}tables/{ref.name}.md)"
    if ref.kind == "composite":
        return f"[{text}]({prefix}types.md#{anchor(ref.name)})"
    return text


def roles_executing(schema: SchemaIR, function: str) -> list[tuple[RoleIR, str]]:
    """(role, why) for every role that may call ``function``, by role name.

    ``why`` is '' for a declared grant, else the reason the generator implied it (e.g.
    "called by complete_task").
    """
    granted = []
    for role in sorted(schema.roles, key=lambda r: r.name):
        implied = role.implied(function)
        if function in role.execute or implied is not None:
            granted.append((role, implied_reason(implied) if implied is not None else ""))
    return granted


def table_grants(schema: SchemaIR, table: str) -> list[tuple[str, tuple[str, ...]]]:
    """(role, privileges) for every role granted something on ``table``, by role name."""
    return sorted(
        (role.name, privileges)
        for role in schema.roles
        for name, privileges in role.tables
        if name == table
    )


# -- pages -----------------------------------------------------------------------------------
def _page(path: str, template: str, source: str, **context: object) -> GeneratedFile:
    text = render(template, header=header("<!--", source) + " -->", **context)
    return GeneratedFile(f"{DOCS}/{path}", text.rstrip("\n") + "\n")


def render_docs(
    schema: SchemaIR,
    targets: Targets,
    source: str,
    migrations: Sequence[tuple[str, str]],
) -> list[GeneratedFile]:
    """Every page of the reference, plus the site navigation; ``migrations`` lists each
    migration file with what it does."""
    errors_by_name = {e.name: e for e in schema.errors}
    functions = sorted(schema.all_functions, key=lambda f: f.name)
    public = [f for f in functions if not f.internal]
    internal = [f for f in functions if f.internal]
    methods: dict[str, Method] = {f.name: method(schema, f, errors_by_name) for f in public}
    events_by_name = {e.name: e for e in schema.events}
    tables = list(schema.tables)
    rels = relations(schema)
    callers: dict[str, list[str]] = {f.name: [] for f in functions}
    for f in functions:
        for callee in f.calls:
            callers.setdefault(callee, []).append(f.name)

    def raised_by(error: ErrorIR) -> list[str]:
        return [f.name for f in functions if error.name in f.raises]

    def emitted_by(event: EventIR) -> list[str]:
        return [f.name for f in functions if event.name in f.emits]

    def machine_of(table: TableIR) -> list[StateMachineIR]:
        return [m for m in schema.state_machines if m.table == table.name]

    common: dict[str, object] = {
        "s": schema,
        "cell": cell,
        "code": code,
        "anchor": anchor,
        "indent": indent,
        "type_link": lambda ref, prefix="../": type_link(ref, schema, prefix),
        "returns_sql": lambda f: function_returns(schema, f),
        "definition": lambda c: constraint_definition(schema.schema, c),
        "column_default": column_default,
        "implied_reason": implied_reason,
        "transitions_by": lambda name: [
            (m.name, t) for m in schema.state_machines for t in m.transitions if name in t.by
        ],
        "roles_executing": lambda name: roles_executing(schema, name),
        "table_grants": lambda name: table_grants(schema, name),
        "row_model": row_model,
        "camel": camel,
        "status_enum": status_enum,
        "type_model": type_model,
        "error_class": error_class,
        **class_names(targets),
        "title": targets.docs_title,
        "tables": tables,
        "public": public,
        "internal": internal,
        "methods": methods,
        "relations": rels,
        "callers": callers,
        "errors_by_name": errors_by_name,
        "events_by_name": events_by_name,
        "raised_by": raised_by,
        "emitted_by": emitted_by,
        "helper_stems": lambda e: [
            helper_stem(e.name, v) for v in (None, *(v.name for v in e.variants))
        ],
        "machine_of": machine_of,
        "spec_source": source,
    }
    pages = [
        _page("index.md", "docs/index.md.j2", source, **common),
        _page(
            "er-diagram.md", "docs/er-diagram.md.j2", source, diagram=er_diagram(schema), **common
        ),
        _page(
            "state-machines.md",
            "docs/state-machines.md.j2",
            source,
            diagrams={m.name: state_diagram(m) for m in schema.state_machines},
            **common,
        ),
        _page("types.md", "docs/types.md.j2", source, **common),
        _page("events.md", "docs/events.md.j2", source, **common),
        _page("errors.md", "docs/errors.md.j2", source, **common),
        _page("roles.md", "docs/roles.md.j2", source, **common),
        _page(
            "migrations.md",
            "docs/migrations.md.j2",
            source,
            migrations=migrations,
            **common,
        ),
        _page("python-client.md", "docs/python-client.md.j2", source, **common),
        _page("tables/index.md", "docs/tables-index.md.j2", source, **common),
        _page("functions/index.md", "docs/functions-index.md.j2", source, **common),
    ]
    pages += [
        _page(f"tables/{t.name}.md", "docs/table.md.j2", source, t=t, **common) for t in tables
    ]
    pages += [
        _page(f"functions/{f.name}.md", "docs/function.md.j2", source, f=f, **common)
        for f in functions
    ]
    nav = render("docs/mkdocs.nav.yml.j2", header=header("#", source), **common)
    css = render("docs/extra.css.j2", header=header("/*", source) + " */")
    return [*pages, GeneratedFile(f"{DOCS}/{CSS_FILE}", css), GeneratedFile(NAV_FILE, nav)]
