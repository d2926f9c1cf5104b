"""SQL of an upgrade migration: a plan's typed changes as statements, summary first.

Objects created by an upgrade use the initial migration's macros, so a table, function
or role block looks the same whether a database was upgraded or installed fresh.
"""

from __future__ import annotations

from pgweave_generator.changes import (
    AddAttributes,
    AddColumn,
    AddConstraint,
    AlterColumnType,
    AlterRole,
    Change,
    Comment,
    CreateFunction,
    CreateIndex,
    CreateTable,
    CreateType,
    DropColumn,
    DropConstraint,
    DropFunction,
    DropIndex,
    DropTable,
    DropType,
    GrantPrivileges,
    GrantRole,
    Plan,
    RenameColumn,
    RenameConstraint,
    RenameIndex,
    RenameTable,
    RestoreDefault,
    RevokePrivileges,
    SetDefault,
    SetNullable,
    SuspendDefault,
    summary_lines,
)
from pgweave_generator.ir import SchemaIR
from pgweave_generator.render import GeneratedFile, header
from pgweave_generator.render.sql import (
    column_default,
    constraint_definition,
    function_identity,
    grant_sql,
    render_object,
    revoke_sql,
)
from pgweave_generator.templating import render, sql_literal


def _alter(s: str, table: str, action: str) -> str:
    return f"alter table {s}.{table} {action};\n"


def statements(change: Change, new: SchemaIR) -> str:
    """The SQL of one change; objects are spelled as in ``new``'s fresh install."""
    s = new.schema
    match change:
        case RevokePrivileges(role=role, grants=grants, reason=reason):
            lines = "".join(f"{revoke_sql(g)}\n" for g in grants)
            return f"-- Role {role}: {reason}\n{lines}"
        case GrantPrivileges(role=role, grants=grants, reason=reason):
            lines = "".join(f"{grant_sql(g)}\n" for g in grants)
            return f"-- Role {role}: {reason}\n{lines}"
        case AlterRole(role=role, login=login, doc=doc):
            text = (
                f"alter role {role.name} {'login' if role.login else 'nologin'};\n" if login else ""
            )
            if doc:
                text += f"comment on role {role.name} is {sql_literal(role.doc)};\n"
            return text
        case RenameTable(old=before, new=after):
            return f"alter table {s}.{before} rename to {after};\n"
        case RenameColumn(table=table, old=before, new=after):
            return _alter(s, table, f"rename column {before} to {after}")
        case RenameConstraint(table=table, old=before, new=after):
            return _alter(s, table, f"rename constraint {before} to {after}")
        case RenameIndex(old=before, new=after):
            return f"alter index {s}.{before} rename to {after};\n"
        case DropConstraint(table=table, constraint=constraint):
            return _alter(s, table, f"drop constraint {constraint.name}")
        case DropIndex(index=index):
            return f"drop index {s}.{index.name};\n"
        case DropFunction(function=function):
            return f"drop function {function_identity(new, function)};\n"
        case DropTable(table=table):
            return f"drop table {s}.{table.name};\n"
        case DropType(type=composite):
            return f"drop type {s}.{composite.name};\n"
        case CreateType(type=composite):
            return render_object(new, "create_type", composite)
        case AddAttributes(type=name, attributes=attributes):
            return "".join(
                f"alter type {s}.{name} add attribute {a.name} {a.type.sql(s)};\n"
                for a in attributes
            )
        case CreateFunction(function=function, replace=replace):
            text = render_object(new, "function", function, replace)
            if not replace:
                identity = function_identity(new, function)
                text += f"revoke execute on function {identity} from public;\n"
            return text
        case CreateTable(table=table):
            return render_object(new, "create_table", table)
        case AddColumn(table=table, column=column):
            spec = f"{column.name} {column.type.sql(s)}"
            if not column.nullable:
                spec += " not null"
            if column.has_default:
                spec += f" default {column_default(column)}"
            return _alter(s, table, f"add column {spec}")
        case DropColumn(table=table, column=column):
            return _alter(s, table, f"drop column {column.name}")
        case AlterColumnType(table=table, old=before, new=after):
            text = ""
            if before.has_default:
                text += _alter(s, table, f"alter column {after.name} drop default")
            kind = after.type.sql(s)
            text += _alter(
                s, table, f"alter column {after.name} type {kind} using {after.name}::{kind}"
            )
            if after.has_default:
                default = column_default(after)
                text += _alter(s, table, f"alter column {after.name} set default {default}")
            return text
        case SuspendDefault(table=table, column=column):
            return _alter(s, table, f"alter column {column} drop default")
        case RestoreDefault(table=table, column=column, default=default):
            return _alter(s, table, f"alter column {column} set default {default}")
        case SetDefault(table=table, column=column):
            default = column_default(column)
            action = "drop default" if default is None else f"set default {default}"
            return _alter(s, table, f"alter column {column.name} {action}")
        case SetNullable(table=table, column=column, nullable=nullable):
            action = "drop not null" if nullable else "set not null"
            return _alter(s, table, f"alter column {column} {action}")
        case AddConstraint(table=table, constraint=constraint):
            definition = constraint_definition(s, constraint)
            return _alter(s, table, f"add constraint {constraint.name} {definition}")
        case CreateIndex(index=index):
            unique = "unique " if index.unique else ""
            where = f" where {index.where}" if index.where else ""
            columns = ", ".join(index.columns)
            return f"create {unique}index {index.name} on {s}.{index.table} ({columns}){where};\n"
        case Comment(kind=kind, subject=subject, text=text, function=function):
            target = f"{s}.{subject}" if function is None else function_identity(new, function)
            return f"comment on {kind} {target} is {sql_literal(text)};\n"
        case GrantRole(role=role):
            return render_object(new, "role", role)
    raise TypeError(f"no SQL for {type(change).__name__}")


def change_count(plan: Plan) -> str:
    """``N changes[, M destructive]``: what the migration's first comment line says."""
    destructive = len(plan.destructive)
    count = f"{len(plan.changes)} change{'s' if len(plan.changes) != 1 else ''}"
    if destructive:
        count += f", {destructive} destructive"
    return count


def render_upgrade(plan: Plan, stem: str, source: str) -> GeneratedFile:
    """Migration ``stem``: the plan's summary as a comment, then its statements in order."""
    parts: list[str] = []
    previous: type[Change] | None = None
    for change in plan.changes:
        text = statements(change, plan.new)
        if previous is not None and type(change) is not previous and not text.startswith("\n"):
            parts.append("\n")
        parts.append(text)
        previous = type(change)
    body = "".join(parts).strip("\n")
    content = render(
        "sql/upgrade_migration.sql.j2",
        header=header("--", source),
        migration=stem,
        count=change_count(plan),
        changes=summary_lines(plan),
        notes=plan.notes,
        body=body,
    )
    return GeneratedFile(f"migrations/{stem}.sql", content)
