"""CLI commands for flows: install, compile, worker, start, status, demo.

They are added to the ``pgweave`` group of :mod:`pgweave.cli` by :func:`register`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
import psycopg
from rich.console import Console

from pgweave.cli_common import fail
from pgweave.cli_errors import describe_database_error, describe_engine_error, first_line
from pgweave.config import WorkerConfig
from pgweave_client import PgflowError
from pgweave_client.errors import FlowNotFoundError

if TYPE_CHECKING:
    from pgweave.runs import RunState

dsn_option = click.option(
    "--dsn", envvar="PGWEAVE_DSN", required=True, help="libpq connection string (or $PGWEAVE_DSN)."
)


@click.command()
@dsn_option
def install(dsn: str) -> None:
    """Install pgmq (when missing) and apply the engine's migrations to a database."""
    from pgweave.install import apply_migrations, install_pgmq

    with psycopg.connect(dsn, autocommit=True) as conn:
        click.echo(f"pgmq: {install_pgmq(conn)}")
        applied = apply_migrations(conn)
    click.echo("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


@click.command("compile")
@click.argument("flow_ref", metavar="MODULE:FLOW")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("migrations"),
    show_default=True,
    help="Directory for the migration file.",
)
@click.option(
    "--stdout", "to_stdout", is_flag=True, help="Print the SQL instead of writing a file."
)
def compile_command(flow_ref: str, out_dir: Path, to_stdout: bool) -> None:
    """Compile a flow to a migration file of create_flow/add_step statements."""
    from pgweave.compile import compile_migration, migration_filename

    flow = _load(flow_ref)
    text = compile_migration(flow, source=flow_ref)
    if to_stdout:
        click.echo(text, nl=False)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(out_dir.glob(f"*_create_{flow.slug}_flow.sql"))
    if existing:
        click.secho(
            f"note: {existing[-1]} already compiles {flow.slug!r}; create_flow/add_step leave an "
            "existing flow unchanged, so a changed flow needs a new slug (or "
            "`pgweave worker --allow-data-loss`)",
            fg="yellow",
            err=True,
        )
    path = out_dir / migration_filename(flow)
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path}")


@click.command()
@click.argument("flow_refs", nargs=-1, required=True, metavar="MODULE:FLOW...")
@dsn_option
@click.option("--max-concurrent", type=int, default=None, help="Handlers at once per worker [10].")
@click.option("--batch-size", type=int, default=None, help="Messages per read [10].")
@click.option("--visibility-timeout", type=int, default=None, help="Seconds, until started [5].")
@click.option("--max-poll-seconds", type=int, default=None, help="Long-poll duration [2].")
@click.option("--poll-interval-ms", type=int, default=None, help="Queue check interval [100].")
@click.option("--heartbeat-interval", type=float, default=None, help="Seconds [5].")
@click.option("--requeue-interval", type=float, default=None, help="Seconds, 0 = off [15].")
@click.option("--shutdown-timeout", type=float, default=None, help="Seconds to finish tasks [30].")
@click.option("--replicas", type=int, default=1, show_default=True, help="Workers per flow.")
@click.option("--allow-data-loss", is_flag=True, help="Recompile a changed flow (drops its runs).")
@click.option("--no-compile", is_flag=True, help="Do not create or verify the flow at start.")
@click.option("--function-name", default=None, help="Name recorded in pgflow.workers.")
@click.option(
    "--metrics-port", type=int, default=None, help="Serve Prometheus metrics on this port."
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--log-level", default="INFO", show_default=True)
def worker(
    flow_refs: tuple[str, ...],
    dsn: str,
    replicas: int,
    allow_data_loss: bool,
    no_compile: bool,
    log_format: Literal["text", "json"],
    log_level: str,
    **options: Any,
) -> None:
    """Run workers for one or more flows until SIGTERM/SIGINT (graceful: in-flight tasks finish)."""
    from pgweave.logs import configure_logging
    from pgweave.worker import WorkerError, run_workers

    configure_logging(log_level, log_format)
    flows = [_load(ref) for ref in flow_refs]
    try:
        config = WorkerConfig(allow_data_loss=allow_data_loss, compile_flow=not no_compile)
        config = config.with_overrides(**options)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        workers = asyncio.run(run_workers(flows, dsn, config, replicas=replicas))
    except WorkerError as exc:
        fail(f"error: {exc}")
    except psycopg.Error as exc:
        fail(describe_database_error(exc))
    except PgflowError as exc:
        fail(f"error: {first_line(str(exc))}")
    if any(w.abandoned_threads for w in workers):
        logging.getLogger("pgweave.worker").warning("worker.exit_with_running_handlers")
        sys.stderr.flush()
        os._exit(3)  # threads of abandoned sync handlers would block a normal exit


@click.command()
@click.argument("flow", metavar="FLOW")
@dsn_option
@click.option("--input", "input_json", default="null", show_default=True, help="JSON input.")
@click.option("--run-id", type=click.UUID, default=None, help="Choose the run id.")
@click.option(
    "--idempotency-key",
    default=None,
    help="Start at most one run per key: again, the run the key names is shown.",
)
@click.option("--wait/--no-wait", default=False, help="Wait for the run to complete or fail.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait (with --wait).")
def start(
    flow: str,
    dsn: str,
    input_json: str,
    run_id: uuid.UUID | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Start a run of FLOW (a slug or MODULE:FLOW); with --wait show progress and the result.

    With --idempotency-key (or a --run-id that exists) a repeated start shows the run the
    first one started. Exit status with --wait: 0 completed, 1 failed or cancelled, 2 timed out.
    """
    from pgweave.client import Client

    timeout_needs_wait(wait, timeout)
    try:
        flow_input = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from exc
    from pgweave.telemetry import start_span

    slug = _load(flow).slug if ":" in flow else flow
    client = Client(dsn)
    repeatable = idempotency_key is not None or run_id is not None
    if idempotency_key is None:
        # chosen here: the run's trace id is its run id (with a key, the run may exist already)
        run_id = run_id or uuid.uuid4()
    try:
        with start_span(run_id, slug) if run_id is not None else contextlib.nullcontext():
            run = client.start_flow(
                slug, flow_input, run_id=run_id, idempotency_key=idempotency_key
            )
    except FlowNotFoundError:
        fail(
            f"unknown flow {slug!r}: this database has no such flow: run a worker for it "
            "(`pgweave worker MODULE:FLOW` creates it) or apply its `pgweave compile` migration"
        )
    except PgflowError as exc:
        fail(f"cannot start {slug!r}: {describe_engine_error(exc)}")
    console = Console(log_path=False)
    if not repeatable:
        console.print(f"started run [bold]{run.run_id}[/] of flow {slug!r} ({run.status})")
    else:  # a new run, or the one a first start with this key or id began
        key = f" for idempotency key {idempotency_key!r}" if idempotency_key else ""
        line = f"run [bold]{run.run_id}[/] of flow {slug!r}{key} ({run.status})"
        console.print(line, soft_wrap=True)
    if not wait:
        return
    sys.exit(wait_and_show(client, run.run_id, timeout, console, known=run.state))


def timeout_needs_wait(wait: bool, timeout: float | None) -> None:
    """A usage error when ``--timeout`` is given without ``--wait``."""
    if timeout is not None and not wait:
        raise click.UsageError("--timeout only applies with --wait: add --wait or drop --timeout")


def wait_and_show(
    client: Any,
    run_id: uuid.UUID,
    timeout: float | None,
    console: Console,
    known: RunState | None = None,
) -> int:
    """Follow a run with a live progress line (from ``known``, the state the caller saw: what
    happened since is replayed), then show it; the exit status: 0 completed, 1 failed or
    cancelled, 2 timed out."""
    from pgweave.client import RunTimeoutError
    from pgweave.runs import RunEvent
    from pgweave.status import fetch_tasks, progress_line, run_view

    with console.status(f"waiting for run {run_id}…") as status:

        def on_event(event: RunEvent, state: RunState) -> None:
            status.update(progress_line(state))
            console.log(f"{event.event}")

        try:
            final = client.wait(run_id, timeout=timeout, on_event=on_event, known=known)
        except RunTimeoutError as exc:
            console.print(f"[yellow]{exc}[/]")
            return 2
    with psycopg.connect(client.dsn, autocommit=True) as conn:
        console.print(run_view(final, fetch_tasks(conn, run_id)))
    if final.status == "completed":
        console.print_json(json.dumps(final.output))
        return 0
    return 1


@click.command()
@click.argument("run_id", type=click.UUID)
@dsn_option
@click.option("--json", "as_json", is_flag=True, help="Print get_run_with_states as JSON.")
@click.option("--wait/--no-wait", default=False, help="First wait for the run to end.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait (with --wait).")
def status(run_id: uuid.UUID, dsn: str, as_json: bool, wait: bool, timeout: float | None) -> None:
    """Show a run: its status, a table of its steps and a table of its tasks."""
    from pgweave.client import Client, RunNotFoundError
    from pgweave.status import fetch_tasks, run_view

    timeout_needs_wait(wait, timeout)
    client = Client(dsn)
    console = Console(log_path=False)
    if wait:
        sys.exit(wait_and_show(client, run_id, timeout, console))
    try:
        state = client.get_run(run_id)
    except RunNotFoundError:
        fail(f"no run {run_id} in this database: check the run id and --dsn")
    if as_json:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("select pgflow.get_run_with_states(%s)", (run_id,)).fetchone()
        click.echo(json.dumps(row[0] if row else None, indent=2))
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        console.print(run_view(state, fetch_tasks(conn, run_id)))


@click.command()
@click.option(
    "--example",
    type=click.Choice(["website", "map", "all"]),
    default="all",
    show_default=True,
    help="Which example flow(s) to run.",
)
def demo(example: str) -> None:
    """Run the example flows end to end on a throwaway PostgreSQL and print their outputs."""
    from pgweave_examples.demo import run_demo

    sys.exit(run_demo(example))


def _load(reference: str) -> Any:
    from pgweave.dsl import FlowDefinitionError
    from pgweave.loader import FlowLoadError, load_flow

    try:
        return load_flow(reference)
    except (FlowLoadError, FlowDefinitionError) as exc:
        raise click.BadParameter(str(exc), param_hint="MODULE:FLOW") from exc


def register(group: click.Group) -> None:
    """Add the flow commands to the ``pgweave`` command group."""
    for command in (install, compile_command, worker, start, status, demo):
        group.add_command(command)
