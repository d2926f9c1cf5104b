"""Plan a migration: the typed changes that turn an installed schema into the wanted one.

Like Atlas, a migration is a list of typed changes computed from two models (what the
last migration installed, what the spec now wants):

1. ``pgweave_generator.renames`` maps the installed model through the declared renames;
2. one differ per kind of object (``pgweave_generator.differ``) yields typed changes;
3. the orderer below sorts them into an order the database accepts (``Phase``);
4. the review pass (``pgweave_generator.review``) adds notes for the reviewer.

The phases: grants that go away are revoked (while objects still have their old names);
renames; what stands in the way is dropped (changed or removed constraints and indexes,
defaults calling a function about to be recreated, functions whose signature changes,
removed tables and types); composite types; functions used by checks (before the tables
that need them); tables and columns; constraints (foreign keys last) and indexes; the
other functions; comments; roles and grants.
"""

from __future__ import annotations

from enum import IntEnum

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
    PlanError,
    RenameColumn,
    RenameConstraint,
    RenameIndex,
    RenameTable,
    RestoreDefault,
    RevokePrivileges,
    SetDefault,
    SetNullable,
    SuspendDefault,
)
from pgweave_generator.differ import (
    diff_constraints,
    diff_functions,
    diff_roles,
    diff_tables,
    diff_types,
)
from pgweave_generator.ir import ConstraintKind, SchemaIR
from pgweave_generator.renames import baseline
from pgweave_generator.review import review


class Phase(IntEnum):
    """Where a change goes in a migration; changes of one phase keep the differs' order."""

    REVOKE = 0
    RENAME = 1
    DROP_FOREIGN_KEY = 2
    DROP_CONSTRAINT = 3
    DROP_INDEX = 4
    SUSPEND_DEFAULT = 5
    DROP_FUNCTION = 6
    DROP_TABLE = 7
    DROP_TYPE = 8
    TYPE = 9
    CHECK_FUNCTION = 10
    CREATE_TABLE = 11
    COLUMN = 12
    RESTORE_DEFAULT = 13
    ADD_CONSTRAINT = 14
    ADD_FOREIGN_KEY = 15
    CREATE_INDEX = 16
    FUNCTION = 17
    COMMENT = 18
    GRANT = 19


_PHASES: dict[type[Change], Phase] = {
    RevokePrivileges: Phase.REVOKE,
    RenameTable: Phase.RENAME,
    RenameColumn: Phase.RENAME,
    RenameConstraint: Phase.RENAME,
    RenameIndex: Phase.RENAME,
    DropIndex: Phase.DROP_INDEX,
    SuspendDefault: Phase.SUSPEND_DEFAULT,
    DropFunction: Phase.DROP_FUNCTION,
    DropTable: Phase.DROP_TABLE,
    DropType: Phase.DROP_TYPE,
    CreateType: Phase.TYPE,
    AddAttributes: Phase.TYPE,
    CreateTable: Phase.CREATE_TABLE,
    AddColumn: Phase.COLUMN,
    DropColumn: Phase.COLUMN,
    AlterColumnType: Phase.COLUMN,
    SetDefault: Phase.COLUMN,
    SetNullable: Phase.COLUMN,
    RestoreDefault: Phase.RESTORE_DEFAULT,
    CreateIndex: Phase.CREATE_INDEX,
    Comment: Phase.COMMENT,
    GrantRole: Phase.GRANT,
    AlterRole: Phase.GRANT,
    GrantPrivileges: Phase.GRANT,
}
_COMMENT_ORDER = ("function", "type")  # then tables and their columns


def phase(change: Change, new: SchemaIR) -> tuple[int, int]:
    """The sort key of a change: its phase, then (for comments) the kind of object."""
    match change:
        case DropConstraint(constraint=constraint):
            foreign = constraint.kind is ConstraintKind.FOREIGN_KEY
            return (Phase.DROP_FOREIGN_KEY if foreign else Phase.DROP_CONSTRAINT, 0)
        case AddConstraint(constraint=constraint):
            foreign = constraint.kind is ConstraintKind.FOREIGN_KEY
            return (Phase.ADD_FOREIGN_KEY if foreign else Phase.ADD_CONSTRAINT, 0)
        case CreateFunction(function=function):
            early = function in new.check_functions
            return (Phase.CHECK_FUNCTION if early else Phase.FUNCTION, 0)
        case Comment(kind=kind):
            rank = _COMMENT_ORDER.index(kind) if kind in _COMMENT_ORDER else len(_COMMENT_ORDER)
            return (Phase.COMMENT, rank)
    return (_PHASES[type(change)], 0)


def plan(old: SchemaIR, new: SchemaIR) -> Plan:
    """The changes that turn a database holding ``old`` into one holding ``new``."""
    if old.schema != new.schema:
        raise PlanError(
            f"the schema name changes from {old.schema} to {new.schema}; "
            "renaming the schema is not supported"
        )
    base = baseline(old, new)
    types = diff_types(old, new)
    functions = diff_functions(old, new, base, types)
    constraints = diff_constraints(new, base, functions)
    found = [
        *base.changes,
        *types.changes,
        *functions.changes,
        *constraints.changes,
        *diff_tables(new, base, constraints),
        *diff_roles(old, new, functions),
    ]
    changes = sorted(found, key=lambda change: phase(change, new))  # stable within a phase
    return Plan(old, new, tuple(changes), tuple(review(old, new, base, changes)))
