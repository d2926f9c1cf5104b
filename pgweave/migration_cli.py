"""``pgweave migration new|redo|plan``: record spec changes as reviewed, numbered migrations."""

from __future__ import annotations

from pathlib import Path

import click

from pgweave.cli_common import fail, fail_on_spec_error, out_option, spec_option

generated_option = out_option(
    "Directory of the generated files (snapshots/ and migrations/ live there)."
)
destructive_option = click.option(
    "--allow-destructive",
    is_flag=True,
    help="Accept destructive changes (drop table/column, narrowing a column type).",
)


def pending_message(spec: Path, out: Path) -> str | None:
    """The pending-change message when the spec differs from the last snapshot."""
    from pgweave_generator.build import load_ir
    from pgweave_generator.changes import PlanError
    from pgweave_generator.migrations import describe_pending, pending

    try:
        step = pending(load_ir(spec), out)
    except PlanError as exc:
        return f"pending schema change that no migration can express: {exc}"
    return None if step is None else describe_pending(step)


def _record(spec: Path, out: Path, name: str | None, *, redo: bool, allow: bool) -> None:
    from pgweave_generator.build import load_ir
    from pgweave_generator.changes import PlanError, summary_lines
    from pgweave_generator.diagnostics import SpecError
    from pgweave_generator.migrations import MigrationError, record
    from pgweave_generator.pipeline import generate_files, write
    from pgweave_generator.snapshot import SnapshotError, dumps

    try:
        recorded = record(load_ir(spec), out, name, redo=redo, allow_destructive=allow)
    except SpecError as exc:
        fail_on_spec_error(exc, "nothing recorded")
    except (MigrationError, PlanError, SnapshotError) as exc:
        fail(str(exc))
    target = out / recorded.snapshot.path
    replaced = out / recorded.replaced if recorded.replaced else None
    previous = replaced.read_bytes() if replaced is not None else None
    if replaced is not None:
        replaced.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dumps(recorded.snapshot), encoding="utf-8")
    try:
        files = generate_files(spec, out)
    except Exception:
        target.unlink()
        if replaced is not None and previous is not None:
            replaced.write_bytes(previous)
        raise
    write(files, out)
    verb = "re-recorded" if redo else "recorded"
    click.echo(f"{verb} migration {recorded.snapshot.stem}")
    click.echo(f"  snapshot:  {target}")
    click.echo(f"  migration: {out / recorded.snapshot.migration_path}")
    if recorded.plan is None:
        click.echo("  the whole schema, created from nothing")
        return
    for line in summary_lines(recorded.plan):
        click.echo(f"  {line}")
    for note in recorded.plan.notes:
        click.secho(f"  note: {note}", fg="yellow")
    click.echo("Review the migration, then commit the snapshot and the migration together.")


@click.group()
def migration() -> None:
    """Record schema changes: edit the spec, `migration new NAME`, review, apply (`migrate`)."""


@migration.command("new")
@click.argument("name")
@spec_option
@generated_option
@destructive_option
def new_command(name: str, spec: Path, out: Path, allow_destructive: bool) -> None:
    """Record the spec's changes since the last migration as migration NNNN_NAME.

    Writes snapshots/NNNN_NAME.json (the schema it installs) and migrations/NNNN_NAME.sql
    (only the changes, in dependency order, summarised in its first comment). The first
    migration creates everything.
    """
    _record(spec, out, name, redo=False, allow=allow_destructive)


@migration.command("redo")
@click.option("--name", default=None, help="Also rename the migration.")
@spec_option
@generated_option
@destructive_option
def redo_command(name: str | None, spec: Path, out: Path, allow_destructive: bool) -> None:
    """Record the last migration again from the current spec (only while it is unreleased).

    For further spec edits before the last migration is applied anywhere that matters:
    a database that applied it refuses the changed file (its checksum no longer matches).
    """
    _record(spec, out, name, redo=True, allow=allow_destructive)


@migration.command("plan")
@spec_option
@generated_option
def plan_command(spec: Path, out: Path) -> None:
    """Print the migration `migration new` would record now (writes nothing)."""
    from pgweave_generator.build import load_ir
    from pgweave_generator.changes import PlanError
    from pgweave_generator.diagnostics import SpecError
    from pgweave_generator.migrations import pending
    from pgweave_generator.pipeline import source_name
    from pgweave_generator.render.migration import render_upgrade
    from pgweave_generator.snapshot import SnapshotError, load_history

    try:
        schema = load_ir(spec)
        history = load_history(out)
        step = pending(schema, out)
    except SpecError as exc:
        fail_on_spec_error(exc, "no plan")
    except (PlanError, SnapshotError) as exc:
        fail(str(exc))
    if not history:
        click.echo(
            "-- no migration recorded yet: `pgweave migration new NAME` records migration "
            "0001 with the whole schema"
        )
        return
    if step is None:
        click.echo(f"-- no pending change: the spec matches {history[-1].stem}")
        return
    stem = f"{len(history) + 1:04d}_next"
    click.echo(render_upgrade(step, stem, source_name(spec, out)).content, nl=False)


def register(group: click.Group) -> None:
    """Add the ``migration`` command group to ``pgweave``."""
    group.add_command(migration)
