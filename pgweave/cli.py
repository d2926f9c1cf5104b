"""The ``pgweave`` command line: generate/check the database layer, install it, run a smoke test."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import psycopg

from pgweave.cli_common import fail, fail_on_spec_error, out_option, spec_option
from pgweave.cli_errors import OneLineErrors
from pgweave.commands import dsn_option
from pgweave.commands import register as register_flow_commands
from pgweave.dashboard.cli import dashboard as dashboard_command
from pgweave.migration_cli import pending_message
from pgweave.migration_cli import register as register_migration_commands
from pgweave.run_commands import register as register_run_commands
from pgweave_generator.render import GeneratedFile

generated_option = out_option("Directory of the generated files.")


@click.group(cls=OneLineErrors)
@click.version_option(package_name="pgweave", message="%(prog)s %(version)s")
def main() -> None:
    """pgweave: a PostgreSQL-native DAG workflow engine, generated from one spec."""


def _files(spec: Path, out: Path) -> list[GeneratedFile]:
    from pgweave_generator.changes import PlanError
    from pgweave_generator.diagnostics import SpecError
    from pgweave_generator.pipeline import generate_files
    from pgweave_generator.snapshot import SnapshotError

    try:
        return generate_files(spec, out)
    except SpecError as exc:
        fail_on_spec_error(exc, "nothing written")
    except (SnapshotError, PlanError) as exc:
        fail(f"{exc}; nothing written.")


@main.command()
@spec_option
@generated_option
def generate(spec: Path, out: Path) -> None:
    """Generate every output from the spec into the output directory."""
    from pgweave_generator.pipeline import write

    drift = write(_files(spec, out), out)
    pending = pending_message(spec, out)
    if pending:
        click.secho(pending, fg="yellow", err=True)
    if drift.clean:
        click.echo(f"{out}: up to date")
        return
    for label, paths in (("wrote", drift.changed + drift.missing), ("removed", drift.stale)):
        for path in sorted(paths):
            click.echo(f"{label} {out / path}")


@main.command()
@spec_option
@generated_option
def check(spec: Path, out: Path) -> None:
    """Fail (exit 1, with a unified diff) when the output directory is not what the spec produces.

    Also fails when the spec differs from the last recorded migration snapshot.
    """
    from pgweave_generator.pipeline import diff

    drift = diff(_files(spec, out), out)
    pending = pending_message(spec, out)
    if pending:
        click.secho(pending, fg="red", err=True)
    if drift.clean:
        if pending:
            sys.exit(1)
        click.echo(f"{out}: up to date with {spec}")
        return
    click.echo(drift.diff, nl=False)
    summary = ", ".join(
        f"{len(paths)} {label}"
        for label, paths in (
            ("changed", drift.changed),
            ("missing", drift.missing),
            ("stale", drift.stale),
        )
        if paths
    )
    click.secho(f"{out} is stale ({summary}): run `pgweave generate`.", fg="red", err=True)
    sys.exit(1)


@main.command("install-pgmq")
@dsn_option
def install_pgmq_command(dsn: str) -> None:
    """Install pgmq: CREATE EXTENSION when available, else the SQL shipped in the pgmq PyPI package."""
    from pgweave.install import install_pgmq

    with psycopg.connect(dsn, autocommit=True) as conn:
        click.echo(f"pgmq: {install_pgmq(conn)}")


@main.command()
@spec_option
@generated_option
def smoke(spec: Path, out: Path) -> None:
    """Generate, then install everything into a throwaway PostgreSQL and run a flow there."""
    from pgweave.embedded import EmbeddedPostgres
    from pgweave.install import apply_migrations, install_pgmq
    from pgweave.smoke import run_smoke
    from pgweave_generator.pipeline import write

    drift = write(_files(spec, out), out)
    click.echo(f"generated {out} ({len(drift.changed) + len(drift.missing)} files changed)")
    with EmbeddedPostgres() as cluster, psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        click.echo(f"throwaway PostgreSQL at {cluster.socket_dir} port {cluster.port}")
        click.echo(f"pgmq: {install_pgmq(conn)}")
        click.echo("applied: " + ", ".join(apply_migrations(conn, out / "migrations")))
        run_smoke(conn, click.echo)
    click.echo("smoke run passed; the throwaway cluster is removed")


register_flow_commands(main)  # install, compile, worker, start, status, demo
register_run_commands(main)  # runs, cancel, pause, unpause, retry, resume, flows, workers
register_migration_commands(main)  # migration new|redo|plan
main.add_command(dashboard_command)
