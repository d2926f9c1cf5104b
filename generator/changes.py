"""The typed changes a migration is made of, and the plan that orders them.

A change is data: what to create, alter, rename, drop, comment, grant or revoke, with
why (its ``reason``) and whether it may lose data (``destructive``). The differs
(``pgweave_generator.differ``) produce them, the planner (``pgweave_generator.planner``) orders them,
the review pass (``pgweave_generator.review``) adds notes, and ``render/migration.py`` turns
them into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgweave_generator.ir import (
    AttributeIR,
    ColumnIR,
    CompositeTypeIR,
    ConstraintIR,
    FunctionIR,
    GrantIR,
    IndexIR,
    RoleIR,
    SchemaIR,
    TableIR,
)
from pgweave_generator.sql_types import TypeRef


class PlanError(ValueError):
    """The change from one schema to the other cannot be expressed as a migration."""


# -- typed changes ------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One step of a migration."""

    @property
    def destructive(self) -> bool:
        """True when applying it may lose data."""
        return False

    def describe(self) -> str:
        """One line for the migration's summary comment."""
        raise NotImplementedError


@dataclass(frozen=True)
class RevokePrivileges(Change):
    """Revoke grants the previous migration made to a role (the matching ``revoke``s)."""

    role: str
    grants: tuple[GrantIR, ...]  # as the previous migration made them
    reason: str

    def describe(self) -> str:
        count = len(self.grants)
        return (
            f"revoke {count} grant{'s' if count != 1 else ''} of role {self.role} ({self.reason})"
        )


@dataclass(frozen=True)
class RenameTable(Change):
    """``alter table … rename to …`` (declared with ``renamed_from``)."""

    old: str
    new: str

    def describe(self) -> str:
        return f"rename table {self.old} to {self.new}"


@dataclass(frozen=True)
class RenameColumn(Change):
    """``alter table … rename column …`` (declared with ``renamed_from``)."""

    table: str
    old: str
    new: str

    def describe(self) -> str:
        return f"rename column {self.table}.{self.old} to {self.new}"


@dataclass(frozen=True)
class RenameConstraint(Change):
    """A constraint whose definition is unchanged but whose (derived) name changed."""

    table: str
    old: str
    new: str

    def describe(self) -> str:
        return f"rename constraint {self.table}.{self.old} to {self.new}"


@dataclass(frozen=True)
class RenameIndex(Change):
    """An index whose definition is unchanged but whose name changed."""

    old: str
    new: str

    def describe(self) -> str:
        return f"rename index {self.old} to {self.new}"


@dataclass(frozen=True)
class DropConstraint(Change):
    """``alter table … drop constraint``."""

    table: str
    constraint: ConstraintIR
    reason: str

    def describe(self) -> str:
        return f"drop constraint {self.table}.{self.constraint.name} ({self.reason})"


@dataclass(frozen=True)
class DropIndex(Change):
    """``drop index``."""

    index: IndexIR
    reason: str

    def describe(self) -> str:
        return f"drop index {self.index.name} ({self.reason})"


@dataclass(frozen=True)
class DropFunction(Change):
    """``drop function`` (removed, or recreated because its signature changes)."""

    function: FunctionIR
    reason: str

    def describe(self) -> str:
        return f"drop function {self.function.name} ({self.reason})"


def _default_words(column: ColumnIR) -> str:
    """How a summary names a column's default (the spec's text, or the initial state)."""
    if column.initial_state is not None:
        return f"default initial state {column.initial_state}"
    return f"default {column.default}"


@dataclass(frozen=True)
class SetDefault(Change):
    """``alter column … set default`` / ``drop default``: the column's default now."""

    table: str
    column: ColumnIR

    def describe(self) -> str:
        what = f"set {_default_words(self.column)}" if self.column.has_default else "drop default"
        return f"{what} of {self.table}.{self.column.name}"


@dataclass(frozen=True)
class SuspendDefault(Change):
    """``drop default`` of a default that calls a function about to be recreated."""

    table: str
    column: str

    def describe(self) -> str:
        return f"drop default of {self.table}.{self.column} (its function is recreated)"


@dataclass(frozen=True)
class RestoreDefault(Change):
    """``set default`` again once the function it calls is recreated."""

    table: str
    column: str
    default: str

    def describe(self) -> str:
        return f"set default {self.default} of {self.table}.{self.column} (restored)"


@dataclass(frozen=True)
class DropTable(Change):
    """``drop table`` - destructive."""

    table: TableIR

    @property
    def destructive(self) -> bool:
        return True

    def describe(self) -> str:
        return f"drop table {self.table.name}"


@dataclass(frozen=True)
class DropType(Change):
    """``drop type`` (removed, or recreated because its attributes change)."""

    type: CompositeTypeIR
    reason: str

    def describe(self) -> str:
        return f"drop type {self.type.name} ({self.reason})"


@dataclass(frozen=True)
class CreateType(Change):
    """``create type … as (…)``."""

    type: CompositeTypeIR

    def describe(self) -> str:
        return f"create type {self.type.name}"


@dataclass(frozen=True)
class AddAttributes(Change):
    """``alter type … add attribute`` for attributes appended to a composite type."""

    type: str
    attributes: tuple[AttributeIR, ...]

    def describe(self) -> str:
        names = ", ".join(a.name for a in self.attributes)
        return f"add attribute(s) {names} to type {self.type}"


@dataclass(frozen=True)
class CreateFunction(Change):
    """``create function``, or ``create or replace function`` when the signature is kept."""

    function: FunctionIR
    replace: bool
    reason: str

    def describe(self) -> str:
        verb = "replace" if self.replace else "create"
        return f"{verb} function {self.function.name} ({self.reason})"


@dataclass(frozen=True)
class CreateTable(Change):
    """``create table`` with its constraints, indexes and comments."""

    table: TableIR

    def describe(self) -> str:
        return f"create table {self.table.name}"


@dataclass(frozen=True)
class AddColumn(Change):
    """``alter table … add column``."""

    table: str
    column: ColumnIR
    schema: str

    def describe(self) -> str:
        text = f"add column {self.table}.{self.column.name} {self.column.type.sql(self.schema)}"
        if not self.column.nullable:
            text += " not null"
        if self.column.has_default:
            text += f" {_default_words(self.column)}"
        return text


@dataclass(frozen=True)
class DropColumn(Change):
    """``alter table … drop column`` - destructive."""

    table: str
    column: ColumnIR

    @property
    def destructive(self) -> bool:
        return True

    def describe(self) -> str:
        return f"drop column {self.table}.{self.column.name}"


@dataclass(frozen=True)
class AlterColumnType(Change):
    """``alter column … type … using`` - destructive unless it widens the type."""

    table: str
    old: ColumnIR
    new: ColumnIR
    schema: str

    @property
    def destructive(self) -> bool:
        return not widens(self.old.type, self.new.type)

    def describe(self) -> str:
        kind = "widen" if widens(self.old.type, self.new.type) else "narrow"
        return (
            f"change type of {self.table}.{self.new.name} from "
            f"{self.old.type.sql(self.schema)} to {self.new.type.sql(self.schema)} ({kind})"
        )


@dataclass(frozen=True)
class SetNullable(Change):
    """``alter column … set not null`` / ``drop not null``."""

    table: str
    column: str
    nullable: bool

    def describe(self) -> str:
        what = "drop not null" if self.nullable else "set not null"
        return f"{what} on {self.table}.{self.column}"


@dataclass(frozen=True)
class AddConstraint(Change):
    """``alter table … add constraint``."""

    table: str
    constraint: ConstraintIR
    reason: str

    def describe(self) -> str:
        return f"add constraint {self.table}.{self.constraint.name} ({self.reason})"


@dataclass(frozen=True)
class CreateIndex(Change):
    """``create index``."""

    index: IndexIR
    reason: str

    def describe(self) -> str:
        return f"create index {self.index.name} on {self.index.table} ({self.reason})"


@dataclass(frozen=True)
class Comment(Change):
    """``comment on …`` for the doc of an object that otherwise stays."""

    kind: str  # table | column | type | function
    subject: str  # its name in the schema, e.g. runs.output
    text: str | None
    function: FunctionIR | None = None  # for a function: the one commented (its identity)

    def describe(self) -> str:
        return f"comment on {self.kind} {self.subject}"


@dataclass(frozen=True)
class GrantRole(Change):
    """A new role: create it when missing and grant it what the spec says."""

    role: RoleIR

    def describe(self) -> str:
        return f"create role {self.role.name} with its privileges"


@dataclass(frozen=True)
class AlterRole(Change):
    """A role's login attribute or description changes."""

    role: RoleIR
    login: bool  # the login attribute changes
    doc: bool  # the description changes

    def describe(self) -> str:
        what = [w for w, changed in (("login", self.login), ("description", self.doc)) if changed]
        return f"alter role {self.role.name} ({', '.join(what)})"


@dataclass(frozen=True)
class GrantPrivileges(Change):
    """Grant statements of a role's block that the database lacks."""

    role: str
    grants: tuple[GrantIR, ...]
    reason: str

    def describe(self) -> str:
        count = len(self.grants)
        return (
            f"grant role {self.role} {count} privilege{'s' if count != 1 else ''} ({self.reason})"
        )


@dataclass(frozen=True)
class Plan:
    """The changes of one migration, in order, with notes for the reviewer."""

    old: SchemaIR
    new: SchemaIR
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the database needs no change."""
        return not self.changes

    @property
    def destructive(self) -> tuple[Change, ...]:
        """The changes that may lose data."""
        return tuple(c for c in self.changes if c.destructive)


# -- helpers ------------------------------------------------------------------------------
_INTEGERS = ("smallint", "integer", "bigint")
_LOSSLESS_TO_TEXT = ("smallint", "integer", "bigint", "numeric", "boolean", "uuid")


def widens(old: TypeRef, new: TypeRef) -> bool:
    """True when every value of ``old`` converts to ``new`` without loss."""
    if old == new:
        return True
    if old.kind != "base" or new.kind != "base" or old.array != new.array:
        return False
    if old.name in _INTEGERS and new.name in _INTEGERS:
        return _INTEGERS.index(old.name) < _INTEGERS.index(new.name)
    if old.name in _INTEGERS and new.name == "numeric":
        return True
    if new.name == "text" and old.name in _LOSSLESS_TO_TEXT:
        return True
    return old.name == "jsonb" and new.name == "json"


def summary_lines(plan_: Plan) -> list[str]:
    """One line per change, destructive ones marked."""
    return [
        ("DESTRUCTIVE " if change.destructive else "") + change.describe()
        for change in plan_.changes
    ]
