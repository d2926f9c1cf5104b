"""How the ``pgweave`` command line fails: one line saying what failed and what to do.

:class:`OneLineErrors` is the command group class of ``pgweave``: usage errors and any
exception a command lets through become one line on stderr (exit 2 for usage errors, 1 for
the rest) instead of click's usage block or a traceback. ``PGWEAVE_TRACEBACK=1`` shows the
traceback instead. The engine's documented errors (the generated client's classes) keep the
engine's message, followed by what to do (:data:`ENGINE_HINTS`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import click
import psycopg

from pgweave.cli_common import fail
from pgweave_client import PgflowError, errors

INSTALL_HINT = "run `pgweave install --dsn …` first"
ENGINE_MISSING_STATES = {"3F000", "42P01", "42883"}  # no such schema / table / function
PERMISSION_HINT = (
    "connect as a login with the pgflow role this needs (pausing a flow and listing workers "
    "need pgflow_admin; see the README's Roles)"
)


def _restart_hint(params: Mapping[str, str]) -> str:
    if params.get("status") == "completed":
        return "a completed run has nothing to redo: start a new one with `pgweave start`"
    return f"cancel it first (`pgweave cancel {params.get('run_id')}`) or wait for it to fail"


ENGINE_HINTS: Mapping[type[PgflowError], Callable[[Mapping[str, str]], str]] = {
    errors.RunNotFoundError: lambda _: "check the run id and --dsn (`pgweave runs` lists runs)",
    errors.RunNotCancellableError: lambda _: "it has ended, so there is nothing to cancel",
    errors.RunNotPausableError: lambda _: "only a started run can be paused; this one has ended",
    errors.RunNotRestartableError: _restart_hint,
    errors.UnknownFlowError: lambda _: "`pgweave flows` lists the flows of this database",
    errors.IdempotencyConflictError: lambda _: (
        "use a new --idempotency-key, or repeat the first start with the same flow and input"
    ),
    errors.RootMapInputNotArrayError: lambda _: "pass a JSON array as --input",
}
"""What to do about the engine's documented errors a command can meet, by error class."""


def describe_engine_error(error: PgflowError) -> str:
    """A documented engine error's message and, when known, what to do about it."""
    message = first_line(error.message)
    hint = ENGINE_HINTS.get(type(error))
    params = error.params if isinstance(error, errors.EngineError) else {}
    return f"{message}; {hint(params)}" if hint else message


def first_line(text: str) -> str:
    """The first non-empty line of a (possibly multi-line) message."""
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


def describe_database_error(error: psycopg.Error) -> str:
    """What went wrong with the database and what to do about it, in one line."""
    message = first_line(str(error))
    if isinstance(error, psycopg.OperationalError) and error.sqlstate is None:
        return (
            f"cannot connect to PostgreSQL ({message}): check --dsn (or $PGWEAVE_DSN) "
            "and that the server is running"
        )
    if error.sqlstate in ENGINE_MISSING_STATES and "pgflow" in message:
        return f"this database has no pgweave engine ({message}): {INSTALL_HINT}"
    if error.sqlstate == "42501":
        return f"{message}: {PERMISSION_HINT}"
    hint = error.diag.message_hint
    return f"database error: {message}" + (f"; {first_line(hint)}" if hint else "")


def describe(error: Exception, command: str) -> str:
    """One line for an exception that reached the command line from ``command``."""
    from pgweave.install import InstallError

    if isinstance(error, psycopg.Error):
        return describe_database_error(error)
    if isinstance(error, PgflowError):
        line = describe_engine_error(error)
        return line if type(error) in ENGINE_HINTS else f"{command} failed: {line}"
    if isinstance(error, InstallError):
        return f"install failed: {error}"
    if isinstance(error, ModuleNotFoundError) and error.name in {
        "datamodel_code_generator",
        "ruff",
    }:
        return (
            f"the generator needs {error.name}, which is not installed: "
            "pip install 'pgweave[generator]'"
        )
    return (
        f"{command} failed: {type(error).__name__}: {first_line(str(error))} "
        "(set PGWEAVE_TRACEBACK=1 to see the traceback)"
    )


class OneLineErrors(click.Group):
    """A command group whose failures are single lines (see the module docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand, turning usage errors and exceptions into one line."""
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise  # a group without its subcommand: click shows the group's help
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            click.secho(f"error: {exc.format_message()} (see `{where} --help`)", fg="red", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except Exception as exc:
            if os.environ.get("PGWEAVE_TRACEBACK"):
                raise
            fail(describe(exc, f"{ctx.command_path} {ctx.invoked_subcommand}"))
