"""The ``pgweave dashboard`` command."""

from __future__ import annotations

import logging

import click

from pgweave.commands import dsn_option


@click.command()
@dsn_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port to bind.")
@click.option("--read-only", is_flag=True, help="Offer no actions (cancel, pause, retry…).")
@click.option(
    "--token", envvar="PGWEAVE_DASHBOARD_TOKEN", default=None,
    help="Require this secret (bearer token, or basic auth password); required off loopback"
    " (or $PGWEAVE_DASHBOARD_TOKEN).",
)  # fmt: skip
def dashboard(dsn: str, host: str, port: int, read_only: bool, token: str | None) -> None:
    """Serve the live web dashboard (and /metrics) for the engine in a database."""
    import uvicorn

    from pgweave.dashboard.app import create_app
    from pgweave.dashboard.config import ConfigError, DashboardConfig

    try:
        config = DashboardConfig(dsn=dsn, host=host, port=port, read_only=read_only, token=token)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(
        f"pgweave dashboard on http://{host}:{port}/" + (" (read-only)" if read_only else "")
    )
    uvicorn.run(
        create_app(config), host=host, port=port, timeout_graceful_shutdown=2, log_level="warning"
    )
