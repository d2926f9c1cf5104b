"""The migration history: render every migration from the recorded snapshots, record new ones.

Without snapshots (a project that has not released its schema yet) the history is the
single migration ``0001_initial.sql`` rendered from the current spec. Once
``pgweave migration new`` recorded snapshots, migration 1 is the full creation of
snapshot 1 and migration N the plan from snapshot N-1 to snapshot N; a spec that differs
from the last snapshot is a *pending* change until the next ``migration new``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from pgweave_generator.changes import Plan, summary_lines
from pgweave_generator.ir import SchemaIR
from pgweave_generator.planner import plan
from pgweave_generator.render import GeneratedFile
from pgweave_generator.render.migration import change_count, render_upgrade
from pgweave_generator.render.sql import render_initial_migration, summary
from pgweave_generator.snapshot import (
    MIGRATION_LABEL,
    Snapshot,
    SnapshotError,
    load_history,
    render_snapshot,
    render_sum,
)


class MigrationError(ValueError):
    """A migration cannot be recorded as asked."""


def render_history(history: list[Snapshot], source: str) -> list[GeneratedFile]:
    """Each snapshot, its migration, and the sum file over them."""
    files: list[GeneratedFile] = []
    for index, snapshot in enumerate(history):
        if index == 0:
            files.append(render_initial_migration(snapshot.schema, source, snapshot.name))
        else:
            step = plan(history[index - 1].schema, snapshot.schema)
            files.append(render_upgrade(step, snapshot.stem, source))
        files.append(render_snapshot(snapshot))
    files.append(render_sum(files))
    return files


def render_migrations(current: SchemaIR, source: str, out_dir: Path) -> list[GeneratedFile]:
    """The migration files ``out_dir`` should hold (no snapshot yet: 0001 from the spec)."""
    history = load_history(out_dir)
    if not history:
        return [render_initial_migration(current, source)]
    return render_history(history, source)


def migration_summaries(current: SchemaIR, out_dir: Path) -> list[tuple[str, str]]:
    """(file name, what it does) of each migration, from the snapshots and their plans."""
    history = load_history(out_dir)
    if not history:
        return [("0001_initial.sql", f"{summary(current)}.")]
    found = [(f"{history[0].stem}.sql", f"{summary(history[0].schema)}.")]
    for before, after in itertools.pairwise(history):
        found.append((f"{after.stem}.sql", f"{change_count(plan(before.schema, after.schema))}."))
    return found


def pending(current: SchemaIR, out_dir: Path) -> Plan | None:
    """The changes the spec makes after the last recorded snapshot (None: nothing pending)."""
    history = load_history(out_dir)
    if not history:
        return None
    step = plan(history[-1].schema, current)
    return None if step.empty else step


@dataclass(frozen=True)
class Recorded:
    """What ``record`` did: the new snapshot, its plan (None for 0001) and a replaced file."""

    snapshot: Snapshot
    plan: Plan | None
    replaced: str | None


def refuse_destructive(step: Plan) -> None:
    """Raise with every destructive change listed."""
    if not step.destructive:
        return
    lines = "\n".join(f"  - {change.describe()}" for change in step.destructive)
    raise MigrationError(
        f"refusing {len(step.destructive)} destructive change(s):\n{lines}\n"
        "Review them (data in dropped tables and columns is lost; narrowing a type can fail "
        "or truncate), then run again with --allow-destructive."
    )


def record(
    current: SchemaIR,
    out_dir: Path,
    name: str | None,
    *,
    redo: bool = False,
    allow_destructive: bool = False,
) -> Recorded:
    """Record the current spec as a new snapshot, or (``redo``) as the last one again.

    Returns the snapshot to write; the caller writes it and regenerates. ``redo`` is for
    a migration that has not been released (applied to a database that matters) yet.
    """
    if name is not None and not MIGRATION_LABEL.match(name):
        raise MigrationError(f"migration name '{name}' must match [a-z0-9_]+")
    history = load_history(out_dir)
    replaced = None
    if redo:
        if not history:
            raise MigrationError("no migration recorded yet: use `pgweave migration new NAME`")
        last = history.pop()
        name = name or last.name
        replaced = last.path
    elif name is None:
        raise MigrationError("give the migration a name")
    snapshot = Snapshot(len(history) + 1, name, current)
    if not history:
        return Recorded(snapshot, None, replaced)
    step = plan(history[-1].schema, current)
    if step.empty:
        if redo:
            raise MigrationError(
                f"the spec no longer differs from {history[-1].stem}: delete "
                f"{out_dir / replaced if replaced else ''} and run `pgweave generate`"
            )
        raise MigrationError(f"nothing to migrate: the spec matches {history[-1].stem}")
    if not allow_destructive:
        refuse_destructive(step)
    return Recorded(snapshot, step, replaced)


def describe_pending(step: Plan) -> str:
    """The message ``check``/``generate`` print for a pending change."""
    lines = "".join(f"  {line}\n" for line in summary_lines(step))
    return (
        f"pending schema change ({len(step.changes)} change(s) since the last migration):\n"
        f"{lines}run `pgweave migration new NAME` to record it as a migration"
    )


__all__ = [
    "MigrationError",
    "Recorded",
    "SnapshotError",
    "describe_pending",
    "pending",
    "record",
    "refuse_destructive",
    "render_history",
    "render_migrations",
]
