"""The reviewer's notes: what a migration's changes mean beyond their list.

Like Atlas' analyzers, a pass over the planned changes and the two models: data a
change can fail on, columns that land elsewhere than in a fresh install, state machines
that gain or lose states, roles left behind. Destructive changes flag themselves
(``Change.destructive``); the command line refuses them unless allowed.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgweave_generator.changes import AddColumn, Change, CreateFunction, SetNullable
from pgweave_generator.ir import SchemaIR
from pgweave_generator.renames import Baseline


def _role_notes(old: SchemaIR, new: SchemaIR) -> list[str]:
    wanted = {r.name for r in new.roles}
    return [
        f"role {role.name} is no longer in the spec: its privileges are revoked but the role "
        "stays (roles belong to the whole cluster); drop it by hand once nothing uses it"
        for role in old.roles
        if role.name not in wanted
    ]


def _column_order_notes(new: SchemaIR, base: Baseline) -> list[str]:
    notes = []
    for table in base.common(new):
        names = [c.name for c in table.columns]
        kept = [c.name for c in base.tables[table.name].columns if c.name in names]
        added = [n for n in names if n not in kept]
        if added and names != kept + added:
            notes.append(
                f"upgraded databases get {', '.join(added)} at the end of table "
                f"{table.name} (fresh installs follow the spec's column order)"
            )
    return notes


def _change_notes(new: SchemaIR, changes: Sequence[Change]) -> list[str]:
    notes = []
    for change in changes:
        if isinstance(change, AddColumn) and not change.column.nullable:
            if not change.column.has_default:
                notes.append(
                    f"column {change.table}.{change.column.name} is not null without a "
                    "default: the migration fails if the table has rows"
                )
        elif isinstance(change, SetNullable) and not change.nullable:
            notes.append(
                f"set not null on {change.table}.{change.column} fails if a row holds null"
            )
        elif (
            isinstance(change, CreateFunction)
            and change.replace
            and "body" in change.reason
            and change.function in new.check_functions
        ):
            notes.append(
                f"the body of {change.function.name} changes; constraints that use it "
                "are not checked again against existing rows"
            )
    return notes


def _machine_notes(old: SchemaIR, new: SchemaIR) -> list[str]:
    notes = []
    had_machines = {m.name: m for m in old.state_machines}
    for machine in new.state_machines:
        before = had_machines.get(machine.name)
        if before is None:
            continue
        had = {s.name for s in before.states}
        now = {s.name for s in machine.states}
        if now - had:
            notes.append(
                f"state machine {machine.name}: new state(s) {', '.join(sorted(now - had))}"
            )
        if had - now:
            notes.append(
                f"state machine {machine.name}: state(s) {', '.join(sorted(had - now))} "
                f"removed; the migration fails while rows of {machine.table} are in them"
            )
        if before.initial.name != machine.initial.name:
            notes.append(
                f"state machine {machine.name}: rows now start in {machine.initial.name} "
                f"(was {before.initial.name})"
            )
    return notes


def review(old: SchemaIR, new: SchemaIR, base: Baseline, changes: Sequence[Change]) -> list[str]:
    """The notes for the reviewer of a migration with ``changes``, in a stable order."""
    return [
        *_role_notes(old, new),
        *_column_order_notes(new, base),
        *_change_notes(new, changes),
        *_machine_notes(old, new),
    ]
