"""Plan a migration: the typed changes that turn an installed schema into the wanted one.

Like Atlas, a migration is a list of typed changes computed from two models (what the
last migration installed, what the spec now wants), in an order the database accepts:

1. grants that go away are revoked (while objects still have their old names);
2. renames declared in the spec (``renamed_from``) - tables, columns - and constraints or
   indexes whose only difference is their (derived) name;
3. what stands in the way is dropped: changed or removed constraints and indexes, and the
   constraints, indexes and defaults that use a function about to be dropped;
4. functions removed, or whose signature changes, are dropped; then removed tables and
   composite types;
5. composite types are created or altered; functions used by checks are created before
   the tables and columns that need them;
6. tables are created; columns added, dropped or altered (type, default, nullability);
7. constraints (foreign keys last) and indexes are added;
8. the other functions are created or replaced, callees first;
9. comments change; new roles are created; grants the database lacks are made (new
   ones, and those on functions recreated above).

Renames are never guessed from a drop plus an add: only ``renamed_from`` renames data.
Destructive changes (dropping a table or a column, narrowing a column type) are marked
so the command line can refuse them unless allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from pgweave_generator.ir import (
    AttributeIR,
    ColumnIR,
    CompositeTypeIR,
    ConstraintIR,
    FunctionIR,
    IndexIR,
    ReturnsIR,
    RoleIR,
    SchemaIR,
    TableIR,
)
from pgweave_generator.render.sql import function_identity, render_object
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
    grants: tuple[str, ...]  # the old grant statements
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


@dataclass(frozen=True)
class SetDefault(Change):
    """``alter column … set default`` / ``drop default``."""

    table: str
    column: str
    default: str | None
    reason: str = ""

    def describe(self) -> str:
        what = "drop default" if self.default is None else f"set default {self.default}"
        suffix = f" ({self.reason})" if self.reason else ""
        return f"{what} of {self.table}.{self.column}{suffix}"


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
        if self.column.default is not None:
            text += f" default {self.column.default}"
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
    subject: str  # human name, e.g. runs.output
    target: str  # SQL name, e.g. pgflow.runs.output
    text: str | None

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
    grants: tuple[str, ...]
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


_WORD = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|[a-z_][a-z0-9_]*", re.IGNORECASE)


def rename_words(text: str, mapping: dict[str, str]) -> str:
    """Rename bare identifiers in an SQL expression (not literals, qualified names or calls)."""
    if not mapping:
        return text

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        start, end = match.span()
        if word[0] in "'\"" or (start > 0 and text[start - 1] == "."):
            return word
        if re.match(r"\s*\(", text[end:]):
            return word
        return mapping.get(word, word)

    return _WORD.sub(swap, text)


_FOREIGN_KEY = re.compile(
    r"^foreign key \((?P<cols>[^)]*)\) references (?P<schema>\w+)\.(?P<table>\w+) "
    r"\((?P<refs>[^)]*)\)(?P<rest>.*)$",
    re.DOTALL,
)


def references_of(constraint: ConstraintIR) -> str | None:
    """The table a foreign key points at."""
    match = _FOREIGN_KEY.match(constraint.definition)
    return match.group("table") if match else None


def _calls(text: str | None, schema: str, functions: Iterable[str]) -> bool:
    if not text:
        return False
    return any(re.search(rf"\b{schema}\.{re.escape(f)}\s*\(", text) for f in functions)


_GRANT = re.compile(
    r"^(?P<prefix>alter default privileges in schema \S+ )?grant (?P<what>.+) "
    r"to (?P<role>[a-z_][a-z0-9_]*);(?:\s*--.*)?$"
)


def grant_statements(block: str) -> dict[str, str]:
    """The grants of a rendered role block: statement without comment -> line as rendered."""
    grants: dict[str, str] = {}
    for line in block.splitlines():
        if _GRANT.match(line.strip()):
            grants[line.split(" -- ")[0].strip()] = line.strip()
    return grants


def revoke_of(grant: str) -> str:
    """The revoke undoing a grant statement (also ``alter default privileges … grant``)."""
    match = _GRANT.match(grant.strip())
    if match is None:
        raise ValueError(f"not a grant: {grant}")
    prefix = match.group("prefix") or ""
    return f"{prefix}revoke {match.group('what')} from {match.group('role')};"


# -- the planner --------------------------------------------------------------------------
def _uses_types(function: FunctionIR, names: set[str]) -> bool:
    refs = [a.type for a in function.args]
    if function.returns.type is not None:
        refs.append(function.returns.type)
    refs.extend(a.type for a in function.returns.table or ())
    return any(r.kind == "composite" and r.name in names for r in refs)


def _function_change(had: FunctionIR, wanted: FunctionIR) -> tuple[bool, str] | None:
    """None when unchanged, else (replaceable, what changes)."""
    if [(a.name, a.type) for a in had.args] != [(a.name, a.type) for a in wanted.args]:
        return False, "arguments change"
    if had.returns != wanted.returns:
        return False, "result type changes"
    for before, after in zip(had.args, wanted.args, strict=True):
        if before.default is not None and after.default is None:
            return False, f"default of {after.name} removed"
    what = [
        label
        for label, before, after in (
            ("body", had.body, wanted.body),
            ("language", had.language, wanted.language),
            ("volatility", had.volatility, wanted.volatility),
            ("parallel", had.parallel, wanted.parallel),
            ("security", had.security, wanted.security),
            ("search_path", had.search_path, wanted.search_path),
            ("strict", had.strict, wanted.strict),
            ("argument defaults", [a.default for a in had.args], [a.default for a in wanted.args]),
        )
        if before != after
    ]
    return (True, ", ".join(what)) if what else None


def _reverse_fk_order(tables: list[TableIR]) -> list[TableIR]:
    """Tables to drop, those that reference others first."""
    remaining = list(tables)
    ordered: list[TableIR] = []
    while remaining:
        ready = [
            t
            for t in remaining
            if not any(t.name in o.references for o in remaining if o.name != t.name)
        ] or remaining  # a cycle: the constraints go with the tables anyway
        ordered.extend(ready)
        remaining = [t for t in remaining if t not in ready]
    return ordered


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Renamable(_Named, Protocol):
    @property
    def renamed_from(self) -> str | None: ...


NamedT = TypeVar("NamedT", bound=_Named)


def _declared_renames(
    wanted: Iterable[_Renamable], old_names: set[str], what: str
) -> dict[str, str]:
    """Old name -> new name, for what declares ``renamed_from`` an old name it replaces.

    Two claiming one old name is an error; ``what`` starts its message ("tables ")."""
    renames: dict[str, str] = {}
    for item in wanted:
        source = item.renamed_from
        if source is None or item.name in old_names or source not in old_names:
            continue
        if source in renames:
            raise PlanError(
                f"{what}{renames[source]} and {item.name} are both renamed from {source}"
            )
        renames[source] = item.name
    return renames


def _renamed_equivalents(
    before: Sequence[NamedT],
    after: Sequence[NamedT],
    wanted: set[str],
    had: set[str],
    definition: Callable[[NamedT], object],
) -> dict[str, str]:
    """Old name -> new name, for each item of ``before`` whose name is no longer ``wanted``
    and whose definition a new item of ``after`` (one not ``had``, not claimed yet) has."""
    renames: dict[str, str] = {}
    for item in before:
        if item.name in wanted:
            continue
        for candidate in after:
            if (
                candidate.name not in had
                and candidate.name not in renames.values()
                and definition(candidate) == definition(item)
            ):
                renames[item.name] = candidate.name
                break
    return renames


def _drop_and_add_reasons(
    before: Sequence[NamedT],
    after: Sequence[NamedT],
    same: Callable[[NamedT, NamedT], bool],
    uses_dropped: Callable[[NamedT], bool],
) -> Iterator[tuple[str, str | None, str | None]]:
    """(name, why it is dropped, why it is added) for each constraint or index that is
    removed, changes, uses a function about to be recreated, or is new."""
    wanted = {item.name: item for item in after}
    for item in before:
        other = wanted.get(item.name)
        if other is None:
            yield item.name, "removed", None
        elif not same(other, item):
            yield item.name, "definition changes", "definition changed"
        elif uses_dropped(item):
            yield item.name, "its function is recreated", "its function was recreated"
    had = {item.name for item in before}
    for name in wanted:
        if name not in had:
            yield name, None, "new"


class _Planner:
    """Computes one plan; the old model is first mapped through the declared renames."""

    def __init__(self, old: SchemaIR, new: SchemaIR) -> None:
        if old.schema != new.schema:
            raise PlanError(
                f"the schema name changes from {old.schema} to {new.schema}; "
                "renaming the schema is not supported"
            )
        self.old = old
        self.new = new
        self.s = new.schema
        self.notes: list[str] = []
        self.comments: list[Change] = []
        # filled by the steps below
        self.old_tables: dict[str, TableIR] = {}
        self.old_functions: dict[str, FunctionIR] = {}
        self.recreated_types: set[str] = set()
        self.appended: dict[str, tuple[AttributeIR, ...]] = {}
        self.dropped: dict[str, str] = {}  # function -> why it is dropped
        self.created: dict[str, tuple[bool, str]] = {}  # function -> (replace, why)
        self.drop_constraints: dict[tuple[str, str], str] = {}
        self.add_constraints: dict[tuple[str, str], str] = {}
        self.drop_indexes: dict[str, str] = {}
        self.add_indexes: dict[str, str] = {}
        self.early_defaults: list[Change] = []
        self.late_defaults: list[Change] = []

    @property
    def common(self) -> list[TableIR]:
        """Wanted tables that exist already (after renames), in creation order."""
        return [t for t in self.new.tables if t.name in self.old_tables]

    def identity(self, function: FunctionIR) -> str:
        return function_identity(self.new, function)

    def run(self) -> Plan:
        resets = self.reset_roles()
        renames = self.renames()
        renames += self.rename_equivalents()
        self.diff_types()
        self.diff_functions()
        self.diff_constraints_and_indexes()
        changes = [
            *resets,
            *renames,
            *self.drops(),
            *self.types_and_check_functions(),
            *self.tables_and_columns(),
            *self.additions(),
            *self.functions(self.new.functions),
            *self.comments,
            *self.grant_roles(),
        ]
        self.add_notes(changes)
        return Plan(self.old, self.new, tuple(changes), tuple(self.notes))

    # renames ------------------------------------------------------------------------
    def map_type(self, ref: TypeRef, tables: dict[str, str]) -> TypeRef:
        if ref.kind == "table" and ref.name in tables:
            return replace(ref, name=tables[ref.name])
        return ref

    def map_function(self, function: FunctionIR, tables: dict[str, str]) -> FunctionIR:
        returns = function.returns
        return replace(
            function,
            args=tuple(replace(a, type=self.map_type(a.type, tables)) for a in function.args),
            returns=ReturnsIR(
                None if returns.type is None else self.map_type(returns.type, tables),
                returns.setof,
                None
                if returns.table is None
                else tuple(replace(a, type=self.map_type(a.type, tables)) for a in returns.table),
            ),
        )

    def map_constraint(
        self,
        constraint: ConstraintIR,
        columns: dict[str, str],
        tables: dict[str, str],
        all_columns: dict[str, dict[str, str]],
    ) -> ConstraintIR:
        definition = constraint.definition
        match = _FOREIGN_KEY.match(definition)
        if match is not None:
            target = tables.get(match.group("table"), match.group("table"))
            refs = rename_words(match.group("refs"), all_columns.get(target, {}))
            definition = (
                f"foreign key ({rename_words(match.group('cols'), columns)}) references "
                f"{match.group('schema')}.{target} ({refs}){match.group('rest')}"
            )
        else:
            definition = rename_words(definition, columns)
        return replace(
            constraint,
            definition=definition,
            columns=tuple(columns.get(c, c) for c in constraint.columns),
        )

    def renames(self) -> list[Change]:
        """Declared renames; maps the old tables and functions to their new names."""
        tables = _declared_renames(self.new.tables, {t.name for t in self.old.tables}, "tables ")
        wanted = {t.name: t for t in self.new.tables}
        column_maps: dict[str, dict[str, str]] = {}
        for table in self.old.tables:
            name = tables.get(table.name, table.name)
            if name in wanted:
                column_maps[name] = _declared_renames(
                    wanted[name].columns, {c.name for c in table.columns}, f"columns {name}."
                )
        changes: list[Change] = [RenameTable(old, new) for old, new in tables.items()]
        for table in self.new.tables:
            for old, new in column_maps.get(table.name, {}).items():
                changes.append(RenameColumn(table.name, old, new))
        for table in self.old.tables:
            name = tables.get(table.name, table.name)
            columns = column_maps.get(name, {})
            self.old_tables[name] = replace(
                table,
                name=name,
                columns=tuple(replace(c, name=columns.get(c.name, c.name)) for c in table.columns),
                constraints=tuple(
                    self.map_constraint(c, columns, tables, column_maps) for c in table.constraints
                ),
                indexes=tuple(
                    replace(
                        i,
                        table=name,
                        columns=tuple(columns.get(c, c) for c in i.columns),
                        where=None if i.where is None else rename_words(i.where, columns),
                    )
                    for i in table.indexes
                ),
                references=tuple(tables.get(r, r) for r in table.references),
            )
        self.old_functions = {f.name: self.map_function(f, tables) for f in self.old.all_functions}
        return changes

    def rename_equivalents(self) -> list[Change]:
        """Rename constraints and indexes that differ only by name (e.g. derived names)."""
        changes: list[Change] = []
        wanted_indexes = {i.name for t in self.new.tables for i in t.indexes}
        had_indexes = {i.name for t in self.old_tables.values() for i in t.indexes}
        for table in self.common:
            before = self.old_tables[table.name]
            renames = _renamed_equivalents(
                before.constraints,
                table.constraints,
                {c.name for c in table.constraints},
                {c.name for c in before.constraints},
                lambda c: (c.kind, c.definition),
            )
            changes.extend(RenameConstraint(table.name, old, new) for old, new in renames.items())
            index_renames = _renamed_equivalents(
                before.indexes,
                table.indexes,
                wanted_indexes,
                had_indexes,
                lambda i: (i.columns, i.unique, i.where),
            )
            changes.extend(RenameIndex(old, new) for old, new in index_renames.items())
            self.old_tables[table.name] = replace(
                before,
                constraints=tuple(
                    replace(c, name=renames.get(c.name, c.name)) for c in before.constraints
                ),
                indexes=tuple(
                    replace(i, name=index_renames.get(i.name, i.name)) for i in before.indexes
                ),
            )
        return changes

    # what changes -------------------------------------------------------------------
    def diff_types(self) -> None:
        had = {t.name: t for t in self.old.types}
        for wanted in self.new.types:
            before = had.get(wanted.name)
            if before is None or before.attributes == wanted.attributes:
                continue
            count = len(before.attributes)
            if wanted.attributes[:count] == before.attributes:
                self.appended[wanted.name] = wanted.attributes[count:]
                continue
            users = [
                f"{t.name}.{c.name}"
                for t in self.new.tables
                for c in t.columns
                if c.type.kind == "composite" and c.type.name == wanted.name
            ]
            if users:
                raise PlanError(
                    f"type {wanted.name} changes other than by appending attributes, but "
                    f"columns use it ({', '.join(users)}); add a new type instead"
                )
            self.recreated_types.add(wanted.name)

    def diff_functions(self) -> None:
        wanted = {f.name: f for f in self.new.all_functions}
        for name, had in self.old_functions.items():
            function = wanted.get(name)
            if function is None:
                self.dropped[name] = "removed"
                continue
            change = _function_change(had, function)
            if change is None and _uses_types(had, self.recreated_types):
                change = (False, "its type is recreated")
            if change is None and function.language == "sql" and self.result_altered(function):
                change = (True, "its result type gains attributes; body checked again")
            if change is None:
                if had.doc != function.doc:
                    self.comment("function", name, self.identity(function), function.doc)
            elif change[0]:
                self.created[name] = (True, change[1])
            else:
                self.dropped[name] = change[1]
                self.created[name] = (False, change[1])
        for name in wanted:
            if name not in self.old_functions:
                self.created[name] = (False, "new")

    def result_altered(self, function: FunctionIR) -> bool:
        """Whether the composite type a function returns gains attributes in this plan.

        SQL-language bodies are checked against their result type only when created, so
        such functions are replaced (unchanged) to fail the migration rather than a call.
        """
        refs = [function.returns.type] if function.returns.type is not None else []
        return any(r.kind == "composite" and r.name in self.appended for r in refs)

    def uses_dropped(self, text: str | None) -> bool:
        return _calls(text, self.s, self.dropped)

    def diff_constraints_and_indexes(self) -> None:
        """What to drop and add, including dependants of recreated functions and keys."""
        for table in self.common:
            before = self.old_tables[table.name]
            for name, drop, add in _drop_and_add_reasons(
                before.constraints,
                table.constraints,
                lambda a, b: (a.kind, a.definition) == (b.kind, b.definition),
                lambda c: self.uses_dropped(c.definition),
            ):
                if drop:
                    self.drop_constraints[(table.name, name)] = drop
                if add:
                    self.add_constraints[(table.name, name)] = add
            for name, drop, add in _drop_and_add_reasons(
                before.indexes,
                table.indexes,
                lambda a, b: replace(a, doc=None) == replace(b, doc=None),
                lambda i: self.uses_dropped(i.where),
            ):
                if drop:
                    self.drop_indexes[name] = drop
                if add:
                    self.add_indexes[name] = add
            for column in before.columns:
                kept = next((c for c in table.columns if c.name == column.name), None)
                if kept is None or not self.uses_dropped(column.default):
                    continue
                self.early_defaults.append(
                    SetDefault(table.name, column.name, None, "its function is recreated")
                )
                if kept.default == column.default:
                    self.late_defaults.append(
                        SetDefault(table.name, column.name, kept.default, "restored")
                    )
        # foreign keys pointing at a key that is dropped must go first and come back after
        rebuilt_keys = {
            table
            for table, name in self.drop_constraints
            if any(
                c.name == name and c.kind in ("primary key", "unique")
                for c in self.old_tables[table].constraints
            )
        }
        for table in self.common:
            wanted_names = {c.name for c in table.constraints}
            for constraint in self.old_tables[table.name].constraints:
                key = (table.name, constraint.name)
                if references_of(constraint) in rebuilt_keys and key not in self.drop_constraints:
                    self.drop_constraints[key] = "its referenced key is rebuilt"
                    if constraint.name in wanted_names:
                        self.add_constraints[key] = "its referenced key was rebuilt"

    # changes in order ---------------------------------------------------------------
    def drops(self) -> list[Change]:
        changes: list[Change] = []
        for foreign_keys in (True, False):
            for table in self.common:
                for constraint in self.old_tables[table.name].constraints:
                    reason = self.drop_constraints.get((table.name, constraint.name))
                    if reason and (constraint.kind == "foreign key") == foreign_keys:
                        changes.append(DropConstraint(table.name, constraint, reason))
        for table in self.common:
            for index in self.old_tables[table.name].indexes:
                if index.name in self.drop_indexes:
                    changes.append(DropIndex(index, self.drop_indexes[index.name]))
        changes.extend(self.early_defaults)
        for function in reversed(self.old.all_functions):
            if function.name in self.dropped:
                changes.append(
                    DropFunction(self.old_functions[function.name], self.dropped[function.name])
                )
        wanted_tables = {t.name for t in self.new.tables}
        gone = [t for name, t in self.old_tables.items() if name not in wanted_tables]
        changes.extend(DropTable(t) for t in _reverse_fk_order(gone))
        wanted_types = {t.name for t in self.new.types}
        for composite in self.old.types:
            if composite.name not in wanted_types:
                changes.append(DropType(composite, "removed"))
            elif composite.name in self.recreated_types:
                changes.append(DropType(composite, "attributes change"))
        return changes

    def types_and_check_functions(self) -> list[Change]:
        had = {t.name: t for t in self.old.types}
        changes: list[Change] = []
        for composite in self.new.types:
            before = had.get(composite.name)
            if before is None or composite.name in self.recreated_types:
                changes.append(CreateType(composite))
                continue
            if composite.name in self.appended:
                changes.append(AddAttributes(composite.name, self.appended[composite.name]))
            if before.doc != composite.doc:
                self.comment("type", composite.name, f"{self.s}.{composite.name}", composite.doc)
        return changes + self.functions(self.new.check_functions)

    def functions(self, functions: tuple[FunctionIR, ...]) -> list[Change]:
        changes: list[Change] = []
        for function in functions:
            if function.name in self.created:
                replace_, reason = self.created[function.name]
                changes.append(CreateFunction(function, replace_, reason))
        return changes

    def new_keys(self) -> set[str]:
        """Existing tables that gain a primary or unique key in this plan."""
        return {
            table.name
            for table in self.common
            for c in table.constraints
            if c.kind in ("primary key", "unique") and (table.name, c.name) in self.add_constraints
        }

    def deferred_foreign_keys(self, table: TableIR) -> tuple[ConstraintIR, ...]:
        """Foreign keys of a new table that point at a key added later in the plan."""
        keys = self.new_keys()
        return tuple(
            c for c in table.constraints if c.kind == "foreign key" and references_of(c) in keys
        )

    def tables_and_columns(self) -> list[Change]:
        changes: list[Change] = []
        for table in self.new.tables:
            if table.name not in self.old_tables:
                later = self.deferred_foreign_keys(table)
                kept = tuple(c for c in table.constraints if c not in later)
                changes.append(CreateTable(replace(table, constraints=kept)))
        for table in self.common:
            before = self.old_tables[table.name]
            if before.doc != table.doc:
                self.comment("table", table.name, f"{self.s}.{table.name}", table.doc)
            had = {c.name: c for c in before.columns}
            wanted = {c.name for c in table.columns}
            changes.extend(
                DropColumn(table.name, c) for c in before.columns if c.name not in wanted
            )
            for column in table.columns:
                target = f"{self.s}.{table.name}.{column.name}"
                subject = f"{table.name}.{column.name}"
                old = had.get(column.name)
                if old is None:
                    changes.append(AddColumn(table.name, column, self.s))
                    if column.doc:
                        self.comment("column", subject, target, column.doc)
                    continue
                if old.type != column.type:
                    changes.append(AlterColumnType(table.name, old, column, self.s))
                elif old.default != column.default:
                    changes.append(SetDefault(table.name, column.name, column.default))
                if old.nullable != column.nullable:
                    changes.append(SetNullable(table.name, column.name, column.nullable))
                if old.doc != column.doc:
                    self.comment("column", subject, target, column.doc)
        return changes + self.late_defaults

    def additions(self) -> list[Change]:
        changes: list[Change] = []
        for foreign_keys in (False, True):
            for table in self.common:
                for constraint in table.constraints:
                    reason = self.add_constraints.get((table.name, constraint.name))
                    if reason and (constraint.kind == "foreign key") == foreign_keys:
                        changes.append(AddConstraint(table.name, constraint, reason))
        for table in self.new.tables:
            if table.name not in self.old_tables:
                for constraint in self.deferred_foreign_keys(table):
                    changes.append(
                        AddConstraint(table.name, constraint, "its referenced key is new")
                    )
        for table in self.common:
            for index in table.indexes:
                if index.name in self.add_indexes:
                    changes.append(CreateIndex(index, self.add_indexes[index.name]))
        return changes

    def comment(self, kind: str, subject: str, target: str, text: str | None) -> None:
        self.comments.append(Comment(kind, subject, target, text))

    # roles ----------------------------------------------------------------------------
    def role_grants(self, schema: SchemaIR, role: RoleIR) -> dict[str, str]:
        return grant_statements(render_object(schema, "role", role))

    def reset_roles(self) -> list[Change]:
        """Grants that go away are revoked first, while the objects still have old names."""
        wanted = {r.name: r for r in self.new.roles}
        revokes: list[Change] = []
        for role in self.old.roles:
            had = self.role_grants(self.old, role)
            other = wanted.get(role.name)
            if other is None:
                revokes.append(RevokePrivileges(role.name, tuple(had), "no longer in the spec"))
                self.notes.append(
                    f"role {role.name} is no longer in the spec: its privileges are revoked "
                    "but the role stays (roles belong to the whole cluster); drop it by hand "
                    "once nothing uses it"
                )
                continue
            now = self.role_grants(self.new, other)
            gone = tuple(g for g in had if g not in now)
            if gone:
                revokes.append(RevokePrivileges(role.name, gone, "no longer granted"))
        return revokes

    def grant_roles(self) -> list[Change]:
        """New roles; grants the database lacks (new, or on functions recreated here)."""
        had = {r.name: r for r in self.old.roles}
        recreated = [
            self.identity(f)
            for f in self.new.all_functions
            if f.name in self.dropped and f.name in self.created
        ]
        changes: list[Change] = []
        for role in self.new.roles:
            before = had.get(role.name)
            if before is None:
                changes.append(GrantRole(role))
                continue
            if before.login != role.login or before.doc != role.doc:
                changes.append(AlterRole(role, before.login != role.login, before.doc != role.doc))
            old = self.role_grants(self.old, before)
            new = self.role_grants(self.new, role)
            added = tuple(line for g, line in new.items() if g not in old)
            if added:
                changes.append(GrantPrivileges(role.name, added, "newly granted"))
            again = tuple(
                line
                for g, line in new.items()
                if g in old and any(f" function {i} " in g for i in recreated)
            )
            if again:
                changes.append(GrantPrivileges(role.name, again, "their function was recreated"))
        return changes

    # notes ----------------------------------------------------------------------------
    def add_notes(self, changes: list[Change]) -> None:
        """What the reviewer should know beyond the list of changes."""
        for table in self.common:
            names = [c.name for c in table.columns]
            kept = [c.name for c in self.old_tables[table.name].columns if c.name in names]
            added = [n for n in names if n not in kept]
            if added and names != kept + added:
                self.notes.append(
                    f"upgraded databases get {', '.join(added)} at the end of table "
                    f"{table.name} (fresh installs follow the spec's column order)"
                )
        for change in changes:
            if isinstance(change, AddColumn) and not change.column.nullable:
                if change.column.default is None:
                    self.notes.append(
                        f"column {change.table}.{change.column.name} is not null without a "
                        "default: the migration fails if the table has rows"
                    )
            elif isinstance(change, SetNullable) and not change.nullable:
                self.notes.append(
                    f"set not null on {change.table}.{change.column} fails if a row holds null"
                )
            elif (
                isinstance(change, CreateFunction)
                and change.replace
                and "body" in change.reason
                and change.function in self.new.check_functions
            ):
                self.notes.append(
                    f"the body of {change.function.name} changes; constraints that use it "
                    "are not checked again against existing rows"
                )
        had_machines = {m.name: m for m in self.old.state_machines}
        for machine in self.new.state_machines:
            before = had_machines.get(machine.name)
            if before is None:
                continue
            had = {s.name for s in before.states}
            now = {s.name for s in machine.states}
            if now - had:
                added_states = ", ".join(sorted(now - had))
                self.notes.append(f"state machine {machine.name}: new state(s) {added_states}")
            if had - now:
                self.notes.append(
                    f"state machine {machine.name}: state(s) {', '.join(sorted(had - now))} "
                    f"removed; the migration fails while rows of {machine.table} are in them"
                )
            if before.initial.name != machine.initial.name:
                self.notes.append(
                    f"state machine {machine.name}: rows now start in {machine.initial.name} "
                    f"(was {before.initial.name})"
                )


def plan(old: SchemaIR, new: SchemaIR) -> Plan:
    """The changes that turn a database holding ``old`` into one holding ``new``."""
    return _Planner(old, new).run()


def summary_lines(plan_: Plan) -> list[str]:
    """One line per change, destructive ones marked."""
    return [
        ("DESTRUCTIVE " if change.destructive else "") + change.describe()
        for change in plan_.changes
    ]
