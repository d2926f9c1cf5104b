"""CLI commands for run control and listings: runs, cancel, pause, unpause, retry, resume,
flows, workers.

They are added to the ``pgweave`` group by :func:`register`. Engine errors are left to the
group (:mod:`pgweave.cli_errors`), which prints them as one line with what to do.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from pgweave.client import Client, FlowRun
from pgweave.commands import dsn_option, timeout_needs_wait, wait_and_show
from pgweave.listing import RUN_STATUSES, parse_since
from pgweave_client.models import FlowsRow, RunsRow

UNCROPPED_WIDTH = 160
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")


def _since(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> datetime | timedelta | None:
    try:
        return None if value is None else parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _as_json(row: BaseModel, **extra: Any) -> dict[str, Any]:
    return {**row.model_dump(mode="json"), **extra}


def _print(as_json: bool, rows: Sequence[dict[str, Any]], table: Table) -> None:
    """The rows as JSON, or the table."""
    if as_json:
        click.echo(json.dumps(list(rows), indent=2))
    else:
        console = Console(log_path=False)
        if not console.is_terminal:  # piped: no width to fit, so do not crop the ids
            console.width = UNCROPPED_WIDTH
        console.print(table)


@click.command()
@dsn_option
@click.option("--flow", default=None, help="Only runs of this flow.")
@click.option("--status", type=click.Choice(RUN_STATUSES), default=None, help="Only this status.")
@click.option(
    "--since",
    callback=_since,
    default=None,
    help="Started since: 30s, 15m, 1h, 2d, 1w or ISO time.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
def runs(
    dsn: str,
    flow: str | None,
    status: str | None,
    since: datetime | timedelta | None,
    limit: int,
    as_json: bool,
) -> None:
    """List runs, newest first: a table, or the run rows as JSON."""
    from pgweave.status import runs_table

    with Client(dsn) as client:
        found = client.list_runs(flow=flow, status=status, since=since, limit=limit)
    _print(as_json, [_as_json(run) for run in found], runs_table(found))


@click.command()
@click.argument("run_id", type=click.UUID, metavar="RUN")
@dsn_option
@click.option("--reason", default=None, help="Why (kept in runs.cancel_reason).")
def cancel(run_id: uuid.UUID, dsn: str, reason: str | None) -> None:
    """Cancel a started or paused run: its unfinished tasks are cancelled, nothing more starts."""
    with Client(dsn) as client:
        row = client.cancel_run(run_id, reason)
    because = f" ({row.cancel_reason})" if row.cancel_reason else ""
    click.echo(f"cancelled run {row.run_id} of flow {row.flow_slug!r}{because}")


def _pause_command(
    verb: str,
    on_run: Callable[[Client, uuid.UUID], RunsRow],
    on_flow: Callable[[Client, str], FlowsRow],
    effect: str,
) -> click.Command:
    """``pgweave pause|unpause RUN`` / ``--flow F``: one of the two, never both."""

    @click.command(verb, help=f"{verb.capitalize()} a run, or with --flow a whole flow: {effect}")
    @click.argument("run_id", type=click.UUID, required=False, metavar="[RUN]")
    @click.option("--flow", default=None, help=f"{verb.capitalize()} this flow (needs an admin).")
    @dsn_option
    def command(run_id: uuid.UUID | None, flow: str | None, dsn: str) -> None:
        if (run_id is None) == (flow is None):
            raise click.UsageError(f"name a run or --flow FLOW to {verb} (one of them)")
        with Client(dsn) as client:
            if run_id is not None:
                row = on_run(client, run_id)
                click.echo(f"{verb}d run {row.run_id} of flow {row.flow_slug!r}")
            elif flow is not None:
                on_flow(client, flow)
                click.echo(f"{verb}d flow {flow!r}")

    return command


pause = _pause_command(
    "pause",
    Client.pause_run,
    Client.pause_flow,
    "no task of it starts (started ones finish) until `pgweave unpause`.",
)
unpause = _pause_command(
    "unpause",
    Client.unpause_run,
    Client.unpause_flow,
    "its waiting tasks become ready to start again.",
)


def _restart_command(verb: str, restart: Callable[[Client, uuid.UUID], FlowRun]) -> click.Command:
    """``pgweave retry|resume RUN``: start the new run, say what it carried over, and with
    ``--wait`` follow it like ``pgweave start --wait``."""

    @click.command(verb)
    @click.argument("run_id", type=click.UUID, metavar="RUN")
    @dsn_option
    @click.option("--wait/--no-wait", default=False, help="Wait for the new run to end.")
    @click.option("--timeout", type=float, default=None, help="Seconds to wait (with --wait).")
    def command(run_id: uuid.UUID, dsn: str, wait: bool, timeout: float | None) -> None:
        timeout_needs_wait(wait, timeout)
        with Client(dsn) as client:
            new = restart(client, run_id)
            done = sum(1 for step in new.state.steps.values() if step.is_terminal)
            console = Console(log_path=False)
            console.print(
                f"started run {new.run_id} of flow {new.state.flow_slug!r} ({new.status}), "
                f"{verb} of run {run_id}: {done} of {len(new.state.steps)} steps already done",
                soft_wrap=True,
            )
            if wait:
                sys.exit(wait_and_show(client, new.run_id, timeout, console, known=new.state))

    return command


retry = _restart_command("retry", Client.retry_run)
retry.help = "Start a failed or cancelled run again from scratch: same flow, same input."
resume = _restart_command("resume", Client.resume_run)
resume.help = "Go on with a failed or cancelled run in a new run that keeps its completed work."


@click.command()
@dsn_option
@json_option
def flows(dsn: str, as_json: bool) -> None:
    """List the flows: steps, started runs, paused or not, retry and timeout options."""
    from pgweave.status import flows_table

    with Client(dsn) as client:
        found = client.list_flows()
    rows = [_as_json(f.flow, step_count=f.step_count, active_runs=f.active_runs) for f in found]
    _print(as_json, rows, flows_table(found))


@click.command()
@dsn_option
@click.option("--flow", default=None, help="Only workers of this flow.")
@click.option("--all", "include_stopped", is_flag=True, help="Also stopped workers.")
@json_option
def workers(dsn: str, flow: str | None, include_stopped: bool, as_json: bool) -> None:
    """List the registered workers (not stopped, or --all) with their last heartbeat."""
    from pgweave.status import workers_table

    with Client(dsn) as client:
        found = client.list_workers(flow=flow, include_stopped=include_stopped)
    age = "heartbeat_age_seconds"
    rows = [_as_json(w.worker, **{age: w.heartbeat_age.total_seconds()}) for w in found]
    _print(as_json, rows, workers_table(found))


def register(group: click.Group) -> None:
    """Add the run-control and listing commands to the ``pgweave`` command group."""
    for command in (runs, cancel, pause, unpause, retry, resume, flows, workers):
        group.add_command(command)
