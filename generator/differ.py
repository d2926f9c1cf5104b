"""Differs: one per kind of object, each comparing the installed model with the wanted one.

Each differ returns typed changes (``pgweave_generator.changes``) and the facts later differs
need (types recreated, functions dropped or created, foreign keys deferred). None of them
orders changes across kinds: that is the planner's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

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
    PlanError,
    RestoreDefault,
    RevokePrivileges,
    SetDefault,
    SetNullable,
    SuspendDefault,
)
from pgweave_generator.ir import (
    AttributeIR,
    ConstraintIR,
    ConstraintKind,
    FunctionIR,
    GrantIR,
    GrantTarget,
    IndexIR,
    Language,
    RoleIR,
    SchemaIR,
    TableIR,
)
from pgweave_generator.renames import Baseline, definition
from pgweave_generator.sql_analysis import SqlSyntaxError, called_functions, parse_expression


# -- composite types ----------------------------------------------------------------------
@dataclass(frozen=True)
class TypeDiff:
    """Changes to composite types, and which are recreated or gain attributes."""

    changes: list[Change]
    recreated: set[str]
    appended: dict[str, tuple[AttributeIR, ...]]


def diff_types(old: SchemaIR, new: SchemaIR) -> TypeDiff:
    """Types are dropped, created, appended to, or (unused by columns) recreated."""
    had = {t.name: t for t in old.types}
    recreated: set[str] = set()
    appended: dict[str, tuple[AttributeIR, ...]] = {}
    for wanted in new.types:
        before = had.get(wanted.name)
        if before is None or before.attributes == wanted.attributes:
            continue
        count = len(before.attributes)
        if wanted.attributes[:count] == before.attributes:
            appended[wanted.name] = wanted.attributes[count:]
            continue
        users = [
            f"{t.name}.{c.name}"
            for t in new.tables
            for c in t.columns
            if c.type.kind == "composite" and c.type.name == wanted.name
        ]
        if users:
            raise PlanError(
                f"type {wanted.name} changes other than by appending attributes, but "
                f"columns use it ({', '.join(users)}); add a new type instead"
            )
        recreated.add(wanted.name)
    wanted_names = {t.name for t in new.types}
    changes: list[Change] = []
    for composite in old.types:
        if composite.name not in wanted_names:
            changes.append(DropType(composite, "removed"))
        elif composite.name in recreated:
            changes.append(DropType(composite, "attributes change"))
    for composite in new.types:
        before = had.get(composite.name)
        if before is None or composite.name in recreated:
            changes.append(CreateType(composite))
            continue
        if composite.name in appended:
            changes.append(AddAttributes(composite.name, appended[composite.name]))
        if before.doc != composite.doc:
            changes.append(Comment("type", composite.name, composite.doc))
    return TypeDiff(changes, recreated, appended)


# -- functions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FunctionDiff:
    """Changes to functions; why each function is dropped, and how each is (re)created."""

    changes: list[Change]
    dropped: dict[str, str]
    created: dict[str, tuple[bool, str]]  # name -> (create or replace, why)

    @property
    def recreated(self) -> set[str]:
        """Functions dropped and created again (grants on them are made again)."""
        return set(self.dropped) & set(self.created)


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
    if had.returns.sql != wanted.returns.sql:
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


def diff_functions(old: SchemaIR, new: SchemaIR, base: Baseline, types: TypeDiff) -> FunctionDiff:
    """Functions are dropped (removed, signature changed), created or replaced.

    SQL-language bodies are checked against their result type only when created, so a
    function whose composite result gains attributes is replaced (unchanged) to fail the
    migration rather than a later call.
    """
    wanted = {f.name: f for f in new.all_functions}
    dropped: dict[str, str] = {}
    created: dict[str, tuple[bool, str]] = {}
    comments: list[Change] = []
    for name, had in base.functions.items():
        function = wanted.get(name)
        if function is None:
            dropped[name] = "removed"
            continue
        change = _function_change(had, function)
        if change is None and _uses_types(had, types.recreated):
            change = (False, "its type is recreated")
        result = function.returns.type
        if (
            change is None
            and function.language is Language.SQL
            and result is not None
            and result.kind == "composite"
            and result.name in types.appended
        ):
            change = (True, "its result type gains attributes; body checked again")
        if change is None:
            if had.doc != function.doc:
                comments.append(Comment("function", name, function.doc, function))
        elif change[0]:
            created[name] = (True, change[1])
        else:
            dropped[name] = change[1]
            created[name] = (False, change[1])
    for name in wanted:
        if name not in base.functions:
            created[name] = (False, "new")
    changes: list[Change] = [
        DropFunction(base.functions[f.name], dropped[f.name])
        for f in reversed(old.all_functions)
        if f.name in dropped
    ]
    changes += [CreateFunction(f, *created[f.name]) for f in new.all_functions if f.name in created]
    return FunctionDiff(changes + comments, dropped, created)


# -- constraints, indexes and the defaults that use recreated functions ---------------------
NamedT = TypeVar("NamedT", ConstraintIR, IndexIR)


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


def _calls_any(text: str | None, schema: str, functions: set[str]) -> bool:
    """Whether an SQL expression of the spec (default, index predicate) calls one of them."""
    if not text:
        return False
    try:
        called = called_functions(parse_expression(text))
    except SqlSyntaxError:
        return False
    return any((schema, f) in called for f in functions)


@dataclass
class ConstraintDiff:
    """What to drop and add per (table, name), and foreign keys of new tables to defer."""

    drop_constraints: dict[tuple[str, str], str] = field(default_factory=dict)
    add_constraints: dict[tuple[str, str], str] = field(default_factory=dict)
    drop_indexes: dict[str, str] = field(default_factory=dict)
    add_indexes: dict[str, str] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    deferred: dict[str, tuple[ConstraintIR, ...]] = field(default_factory=dict)


def _find_drops_and_adds(new: SchemaIR, base: Baseline, dropped: set[str]) -> ConstraintDiff:
    found = ConstraintDiff()
    schema = new.schema
    for table in base.common(new):
        before = base.tables[table.name]
        for name, drop, add in _drop_and_add_reasons(
            before.constraints,
            table.constraints,
            lambda a, b: definition(a) == definition(b),
            lambda c: any(f in dropped for f in c.calls),
        ):
            if drop:
                found.drop_constraints[(table.name, name)] = drop
            if add:
                found.add_constraints[(table.name, name)] = add
        for name, drop, add in _drop_and_add_reasons(
            before.indexes,
            table.indexes,
            lambda a, b: replace(a, doc=None) == replace(b, doc=None),
            lambda i: _calls_any(i.where, schema, dropped),
        ):
            if drop:
                found.drop_indexes[name] = drop
            if add:
                found.add_indexes[name] = add
    # foreign keys pointing at a key that is dropped must go first and come back after (a
    # foreign key depends on the unique index of exactly its referenced columns)
    rebuilt_keys = {
        (table, frozenset(c.columns))
        for table, name in found.drop_constraints
        for c in base.tables[table].constraints
        if c.name == name and c.kind in (ConstraintKind.PRIMARY_KEY, ConstraintKind.UNIQUE)
    }
    for table in base.common(new):
        wanted_names = {c.name for c in table.constraints}
        for constraint in base.tables[table.name].constraints:
            key = (table.name, constraint.name)
            target = constraint.references
            rebuilt = (
                target is not None and (target.table, frozenset(target.columns)) in rebuilt_keys
            )
            if rebuilt and key not in found.drop_constraints:
                found.drop_constraints[key] = "its referenced key is rebuilt"
                if constraint.name in wanted_names:
                    found.add_constraints[key] = "its referenced key was rebuilt"
    return found


def diff_constraints(new: SchemaIR, base: Baseline, functions: FunctionDiff) -> ConstraintDiff:
    """Constraints and indexes of kept tables that change, go or come; the defaults that
    must be dropped while the function they call is recreated; and the foreign keys of
    new tables that point at a key created later in the plan."""
    found = _find_drops_and_adds(new, base, set(functions.dropped))
    common = base.common(new)
    changes = found.changes
    for foreign_keys in (True, False):
        for table in common:
            for constraint in base.tables[table.name].constraints:
                reason = found.drop_constraints.get((table.name, constraint.name))
                if reason and (constraint.kind is ConstraintKind.FOREIGN_KEY) == foreign_keys:
                    changes.append(DropConstraint(table.name, constraint, reason))
    for table in common:
        for index in base.tables[table.name].indexes:
            if index.name in found.drop_indexes:
                changes.append(DropIndex(index, found.drop_indexes[index.name]))
    for table in common:
        kept = {c.name: c for c in table.columns}
        for column in base.tables[table.name].columns:
            now = kept.get(column.name)
            if now is None or not _calls_any(column.default, new.schema, set(functions.dropped)):
                continue
            changes.append(SuspendDefault(table.name, column.name))
            if now.default is not None and now.default == column.default:
                changes.append(RestoreDefault(table.name, column.name, now.default))
    for foreign_keys in (False, True):
        for table in common:
            for constraint in table.constraints:
                reason = found.add_constraints.get((table.name, constraint.name))
                if reason and (constraint.kind is ConstraintKind.FOREIGN_KEY) == foreign_keys:
                    changes.append(AddConstraint(table.name, constraint, reason))
    new_keys = {
        table
        for table, name in found.add_constraints
        if any(
            c.name == name and c.kind in (ConstraintKind.PRIMARY_KEY, ConstraintKind.UNIQUE)
            for c in next(t for t in new.tables if t.name == table).constraints
        )
    }
    for table in new.tables:
        if table.name in base.tables:
            continue
        later = tuple(
            c
            for c in table.constraints
            if c.references is not None and c.references.table in new_keys
        )
        found.deferred[table.name] = later
        changes.extend(AddConstraint(table.name, c, "its referenced key is new") for c in later)
    for table in common:
        for index in table.indexes:
            if index.name in found.add_indexes:
                changes.append(CreateIndex(index, found.add_indexes[index.name]))
    return found


# -- tables and columns -------------------------------------------------------------------
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


def diff_tables(new: SchemaIR, base: Baseline, constraints: ConstraintDiff) -> list[Change]:
    """Tables created and dropped; columns added, dropped and altered; their comments."""
    changes: list[Change] = []
    for table in new.tables:
        if table.name not in base.tables:
            later = constraints.deferred.get(table.name, ())
            kept = tuple(c for c in table.constraints if c not in later)
            changes.append(CreateTable(replace(table, constraints=kept)))
    wanted = {t.name for t in new.tables}
    gone = [t for name, t in base.tables.items() if name not in wanted]
    changes.extend(DropTable(t) for t in _reverse_fk_order(gone))
    comments: list[Change] = []
    for table in base.common(new):
        before = base.tables[table.name]
        if before.doc != table.doc:
            comments.append(Comment("table", table.name, table.doc))
        had = {c.name: c for c in before.columns}
        names = {c.name for c in table.columns}
        changes.extend(DropColumn(table.name, c) for c in before.columns if c.name not in names)
        for column in table.columns:
            subject = f"{table.name}.{column.name}"
            old = had.get(column.name)
            if old is None:
                changes.append(AddColumn(table.name, column, new.schema))
                if column.doc:
                    comments.append(Comment("column", subject, column.doc))
                continue
            if old.type != column.type:
                changes.append(AlterColumnType(table.name, old, column, new.schema))
            elif (old.default, old.initial_state) != (column.default, column.initial_state):
                changes.append(SetDefault(table.name, column))
            if old.nullable != column.nullable:
                changes.append(SetNullable(table.name, column.name, column.nullable))
            if old.doc != column.doc:
                comments.append(Comment("column", subject, column.doc))
    return changes + comments


# -- roles and grants ---------------------------------------------------------------------
def _grants(schema: SchemaIR, role: RoleIR) -> dict[GrantIR, GrantIR]:
    """The role's grants by what they grant (their key)."""
    return {grant.key: grant for grant in schema.grants(role)}


def diff_roles(old: SchemaIR, new: SchemaIR, functions: FunctionDiff) -> list[Change]:
    """Grants that go away are revoked; new roles created; grants the database lacks made
    (new ones, and those on functions recreated by this plan)."""
    wanted = {r.name: r for r in new.roles}
    had_roles = {r.name: r for r in old.roles}
    changes: list[Change] = []
    for role in old.roles:
        had = _grants(old, role)
        other = wanted.get(role.name)
        if other is None:
            changes.append(
                RevokePrivileges(role.name, tuple(had.values()), "no longer in the spec")
            )
            continue
        now = _grants(new, other)
        gone = tuple(grant for key, grant in had.items() if key not in now)
        if gone:
            changes.append(RevokePrivileges(role.name, gone, "no longer granted"))
    recreated = functions.recreated
    for role in new.roles:
        before = had_roles.get(role.name)
        if before is None:
            changes.append(GrantRole(role))
            continue
        if before.login != role.login or before.doc != role.doc:
            changes.append(AlterRole(role, before.login != role.login, before.doc != role.doc))
        had = _grants(old, before)
        now = _grants(new, role)
        added = tuple(grant for key, grant in now.items() if key not in had)
        if added:
            changes.append(GrantPrivileges(role.name, added, "newly granted"))
        again = tuple(
            grant
            for key, grant in now.items()
            if key in had and key.target is GrantTarget.FUNCTION and key.name in recreated
        )
        if again:
            changes.append(GrantPrivileges(role.name, again, "their function was recreated"))
    return changes
