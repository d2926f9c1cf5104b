"""What the ``pgweave`` command groups share: the --spec/--out options and how they fail."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from click.decorators import FC

if TYPE_CHECKING:
    from pgweave_generator.diagnostics import SpecError

# A project keeps its spec in spec/ and the generator's output in generated/ (like this
# repository): the defaults are relative to the working directory.
DEFAULT_SPEC = Path("spec", "pgflow.yaml")
DEFAULT_OUT = Path("generated")


def _existing_spec(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if not value.is_file():
        raise click.BadParameter(
            f"no spec file {value}: pass --spec FILE, or run where spec/pgflow.yaml is",
            ctx, param,
        )  # fmt: skip
    return value


spec_option = click.option(
    "--spec", type=click.Path(path_type=Path), default=DEFAULT_SPEC, show_default=True,
    callback=_existing_spec, help="The spec's entry file (YAML or JSON).",
)  # fmt: skip


def out_option(help: str) -> Callable[[FC], FC]:
    """``--out``: the directory of the generated files (``help`` says what it holds)."""
    return click.option(
        "--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True,
        help=help,
    )  # fmt: skip


def fail(message: str) -> NoReturn:
    """Print an error in red and exit 1."""
    click.secho(message, fg="red", err=True)
    sys.exit(1)


def fail_on_spec_error(error: SpecError, nothing: str) -> NoReturn:
    """Print every problem of a refused spec in red, then how many and that ``nothing``
    (e.g. "nothing written") happened; exit 1."""
    for issue in error.issues:
        click.secho(str(issue), fg="red", err=True)
    fail(f"{len(error.issues)} problem(s) in the spec; {nothing}.")
