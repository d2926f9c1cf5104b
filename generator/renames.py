"""Renames: the installed model seen under the wanted names, and the renames that do it.

Renames are declared in the spec (``renamed_from`` on a table or column), never guessed
from a drop plus an add. Constraints and indexes whose definition is unchanged but whose
(derived) name changed are renamed too. The result, a ``Baseline``, is what every differ
compares the wanted model with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from pgweave_generator.changes import (
    Change,
    PlanError,
    RenameColumn,
    RenameConstraint,
    RenameIndex,
    RenameTable,
)
from pgweave_generator.ir import AttributeIR, ConstraintIR, FunctionIR, ReturnsIR, SchemaIR, TableIR
from pgweave_generator.sql_types import TypeRef

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


def definition(constraint: ConstraintIR) -> object:
    """What a constraint enforces, without its name and notes."""
    return (
        constraint.kind,
        constraint.columns,
        constraint.expression,
        constraint.references,
        constraint.state_check,
    )


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
    same: Callable[[NamedT], object],
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
                and same(candidate) == same(item)
            ):
                renames[item.name] = candidate.name
                break
    return renames


@dataclass(frozen=True)
class Baseline:
    """The installed model under the wanted names, and the renames that get it there."""

    tables: dict[str, TableIR]  # by (new) name, in the installed model's order
    functions: dict[str, FunctionIR]
    changes: tuple[Change, ...]

    def common(self, new: SchemaIR) -> list[TableIR]:
        """Wanted tables that exist already (after renames), in creation order."""
        return [t for t in new.tables if t.name in self.tables]


def _map_type(ref: TypeRef, tables: dict[str, str]) -> TypeRef:
    if ref.kind == "table" and ref.name in tables:
        return replace(ref, name=tables[ref.name])
    return ref


def _map_attributes(
    attributes: tuple[AttributeIR, ...] | None, tables: dict[str, str]
) -> tuple[AttributeIR, ...] | None:
    if attributes is None:
        return None
    return tuple(replace(a, type=_map_type(a.type, tables)) for a in attributes)


def _map_function(function: FunctionIR, tables: dict[str, str]) -> FunctionIR:
    returns = function.returns
    return replace(
        function,
        args=tuple(replace(a, type=_map_type(a.type, tables)) for a in function.args),
        returns=ReturnsIR(
            None if returns.type is None else _map_type(returns.type, tables),
            returns.setof,
            _map_attributes(returns.table, tables),
            _map_attributes(returns.json_object, tables),
        ),
    )


def _map_constraint(
    constraint: ConstraintIR,
    columns: dict[str, str],
    tables: dict[str, str],
    all_columns: dict[str, dict[str, str]],
) -> ConstraintIR:
    references = constraint.references
    if references is not None:
        target = tables.get(references.table, references.table)
        renamed = all_columns.get(target, {})
        references = replace(
            references,
            table=target,
            columns=tuple(renamed.get(c, c) for c in references.columns),
        )
    return replace(
        constraint,
        expression=None
        if constraint.expression is None
        else rename_words(constraint.expression, columns),
        references=references,
        columns=tuple(columns.get(c, c) for c in constraint.columns),
    )


def _declared(old: SchemaIR, new: SchemaIR) -> tuple[list[Change], dict[str, TableIR]]:
    """Declared renames, and the old tables mapped through them."""
    tables = _declared_renames(new.tables, {t.name for t in old.tables}, "tables ")
    wanted = {t.name: t for t in new.tables}
    column_maps: dict[str, dict[str, str]] = {}
    for table in old.tables:
        name = tables.get(table.name, table.name)
        if name in wanted:
            column_maps[name] = _declared_renames(
                wanted[name].columns, {c.name for c in table.columns}, f"columns {name}."
            )
    changes: list[Change] = [RenameTable(before, after) for before, after in tables.items()]
    for table in new.tables:
        for before, after in column_maps.get(table.name, {}).items():
            changes.append(RenameColumn(table.name, before, after))
    mapped: dict[str, TableIR] = {}
    for table in old.tables:
        name = tables.get(table.name, table.name)
        columns = column_maps.get(name, {})
        mapped[name] = replace(
            table,
            name=name,
            columns=tuple(replace(c, name=columns.get(c.name, c.name)) for c in table.columns),
            constraints=tuple(
                _map_constraint(c, columns, tables, column_maps) for c in table.constraints
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
    return changes, mapped


def _equivalents(new: SchemaIR, mapped: dict[str, TableIR]) -> list[Change]:
    """Rename constraints and indexes that differ only by name (e.g. derived names)."""
    changes: list[Change] = []
    wanted_indexes = {i.name for t in new.tables for i in t.indexes}
    had_indexes = {i.name for t in mapped.values() for i in t.indexes}
    for table in new.tables:
        before = mapped.get(table.name)
        if before is None:
            continue
        renames = _renamed_equivalents(
            before.constraints,
            table.constraints,
            {c.name for c in table.constraints},
            {c.name for c in before.constraints},
            definition,
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
        mapped[table.name] = replace(
            before,
            constraints=tuple(
                replace(c, name=renames.get(c.name, c.name)) for c in before.constraints
            ),
            indexes=tuple(
                replace(i, name=index_renames.get(i.name, i.name)) for i in before.indexes
            ),
        )
    return changes


def baseline(old: SchemaIR, new: SchemaIR) -> Baseline:
    """``old`` under ``new``'s names: declared renames first, then equivalent constraints
    and indexes."""
    changes, mapped = _declared(old, new)
    changes += _equivalents(new, mapped)
    table_renames = {c.old: c.new for c in changes if isinstance(c, RenameTable)}
    functions = {f.name: _map_function(f, table_renames) for f in old.all_functions}
    return Baseline(mapped, functions, tuple(changes))
