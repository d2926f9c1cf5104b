"""Every failure of the ``pgweave`` command line is one line saying what failed and what to do
(plus one line per problem of a refused spec), with exit 1 (2 for a wrong command line)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from pgweave.cli import main
from pgweave.config import WorkerConfig
from pgweave.worker import WorkerThread
from tests.generator.conftest import MINI
from tests.runtime.flows import arithmetic

REFUSED = "host=127.0.0.1 port=1 user=nobody dbname=nothing connect_timeout=5"
NO_RUN = "00000000-0000-0000-0000-000000000000"


def invoke(*args: str) -> Result:
    """Run ``pgweave ARGS`` in-process; no exception may escape the command line."""
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def one_line(result: Result, code: int) -> str:
    """The single line on stderr of a command that failed with ``code``."""
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_install_with_a_refused_connection() -> None:
    line = one_line(invoke("install", "--dsn", REFUSED), 1)
    assert line.startswith("cannot connect to PostgreSQL (connection failed: ")
    assert "Connection refused" in line
    assert line.endswith("check --dsn (or $PGWEAVE_DSN) and that the server is running")


def test_install_with_a_changed_applied_migration(empty_db: str) -> None:
    assert invoke("install", "--dsn", empty_db).exit_code == 0
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("update pgweave.schema_migrations set checksum = 'x' where version = '0001'")
    line = one_line(invoke("install", "--dsn", empty_db), 1)
    assert line == (
        "install failed: migration 0001_initial.sql was applied but its file has changed since; "
        "an applied migration must stay as it was: restore the file (or install the pgweave "
        "version that applied it) and record changes as a new migration"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["start", "arithmetic"],
        ["status", NO_RUN],
        ["worker", "tests.runtime.flows:arithmetic"],
    ],
)
def test_a_database_without_the_engine_says_to_install_it(empty_db: str, args: list[str]) -> None:
    line = one_line(invoke(*args, "--dsn", empty_db), 1)
    assert re.fullmatch(
        r"this database has no pgweave engine \(.*pgflow.*\): run `pgweave install --dsn …` first",
        line,
    ), line


def test_starting_an_unknown_flow(db: str) -> None:
    line = one_line(invoke("start", "nope", "--dsn", db), 1)
    assert line.startswith("unknown flow 'nope': this database has no such flow: run a worker")
    assert "fkey" not in line


@pytest.mark.parametrize("command", [["start", "arithmetic"], ["status", NO_RUN]])
def test_timeout_without_wait_is_refused(db: str, command: list[str]) -> None:
    line = one_line(invoke(*command, "--timeout", "5", "--dsn", db), 2)
    assert line == (
        "error: --timeout only applies with --wait: add --wait or drop --timeout "
        f"(see `{' '.join(['main', command[0]])} --help`)"
    )


def test_start_wait_progress_lines_carry_no_source_locations(db: str) -> None:
    with WorkerThread([arithmetic], db, WorkerConfig(max_poll_seconds=1, requeue_interval=0)):
        result = invoke("start", "arithmetic", "--input", '{"a": 1, "b": 2}', "--wait", "--dsn", db)
    assert result.exit_code == 0, result.output
    assert "run:completed" in result.output
    assert re.search(r"\w+\.py:\d+", result.output) is None, result.output


def test_migration_plan_on_a_malformed_spec_suggests_the_closest_names(tmp_path: Path) -> None:
    shutil.copytree(MINI, tmp_path / "spec")
    spec = tmp_path / "spec" / "spec.yaml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(text.replace("nullable", "nulable", 1), encoding="utf-8")
    result = invoke("migration", "plan", "--spec", str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{spec}:13: tables.customers.columns.customer_id.nulable: unknown key "
        "(did you mean 'nullable'?)",
        "1 problem(s) in the spec; no plan.",
    ]
    for old, new in (("nulable", "nullable"), ("name: {type: text", "name: {type: txt"),
                     ("raises: [order_not_found]", "raises: [order_not_fund]"),
                     ("execute: [place_order,", "execute: [place_ordr,")):  # fmt: skip
        text = spec.read_text(encoding="utf-8")
        spec.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = invoke("migration", "plan", "--spec", str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert [line.split(": ", 1)[-1] for line in result.stderr.splitlines()] == [
        "tables.customers.columns.name.type: unknown type 'txt' (did you mean 'text'?)",
        "functions.ship_order.raises[0]: unknown error 'order_not_fund' "
        "(did you mean 'order_not_found'?)",
        "roles.shop_clerk.execute[0]: unknown function 'place_ordr' (did you mean 'place_order'?)",
        "3 problem(s) in the spec; no plan.",
    ]


def test_a_missing_spec_file(tmp_path: Path) -> None:
    line = one_line(invoke("generate", "--spec", str(tmp_path / "nope.yaml")), 2)
    assert line == (
        f"error: Invalid value for '--spec': no spec file {tmp_path / 'nope.yaml'}: pass "
        "--spec FILE, or run where spec/pgflow.yaml is (see `main generate --help`)"
    )


def test_the_generator_without_its_extra_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_ruff() -> str:
        raise ModuleNotFoundError("generating Python needs ruff", name="ruff")

    monkeypatch.setattr("pgweave_generator.render.pyformat._ruff", no_ruff)
    result = invoke("generate", "--spec", str(MINI / "spec.yaml"), "--out", str(tmp_path / "out"))
    assert one_line(result, 1) == (
        "the generator needs ruff, which is not installed: pip install 'pgweave[generator]'"
    )
    assert not (tmp_path / "out").exists()


def test_an_error_in_the_users_flow_module(tmp_path: Path) -> None:
    module = tmp_path / "broken_flows.py"
    module.write_text("raise RuntimeError('cannot configure the flows')\n", encoding="utf-8")
    line = one_line(invoke("compile", f"{module}:flow", "--stdout"), 1)
    assert line == (
        "main compile failed: RuntimeError: cannot configure the flows "
        "(set PGWEAVE_TRACEBACK=1 to see the traceback)"
    )


def test_a_group_without_its_subcommand_shows_its_help() -> None:
    result = invoke("migration")
    assert result.exit_code == 2
    assert result.output.startswith("Usage: main migration [OPTIONS] COMMAND [ARGS]...")
    assert "plan  Print the migration" in result.output
