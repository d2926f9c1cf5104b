"""The built wheel is the product: installed into a fresh virtualenv outside the checkout,
its ``pgweave`` command installs the engine, runs a worker and a flow, the demo and the
generator, with everything it needs shipped as package data."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests import PROJECT_ROOT
from tests.generator.conftest import MINI
from tests.packaging import clean_env

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    """A virtualenv with only the wheel (and its dependencies) installed."""

    venv: Path
    wheel: Path
    home: Path
    """An empty working directory outside the checkout."""

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        """Run a program of the virtualenv (``pgweave``, ``python``) in the empty directory."""
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            cwd=cwd or self.home,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """``python -m build`` on a copy of the checkout's files (sdist, then the wheel from the
    sdist; the build backend of the development virtualenv), installed with the generator
    extra into a new venv.

    The dependencies are pinned to the versions of the development virtualenv, so pip takes
    them from its cache.
    """
    root = tmp_path_factory.mktemp("wheel")
    source, dist = root / "source", root / "dist"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    for name in filter(None, listed.stdout.split("\0")):  # a clone's files (no build/, .venv)
        if (PROJECT_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("pgweave-*.whl")
    assert len(list(dist.glob("pgweave-*.tar.gz"))) == 1
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    freeze = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "freeze",
            "--exclude-editable",
            "--disable-pip-version-check",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    constraints = root / "constraints.txt"
    constraints.write_text(freeze.stdout, encoding="utf-8")
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
         "--disable-pip-version-check", "-c", str(constraints), f"{wheel}[generator]"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    home = root / "home"
    home.mkdir()
    return Installed(venv, wheel, home)


def test_wheel_has_only_pgweave_prefixed_top_level_names(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {
        "pgweave",
        "pgweave_client",
        "pgweave_examples",
        "pgweave_generator",
        "pgweave_migrations",
        "pgweave_spec",
        "pgweave_templates",
        f"pgweave-{installed.wheel.name.split('-')[1]}.dist-info",
    }
    for data in (
        "pgweave_migrations/0001_initial.sql",
        "pgweave_spec/pgflow.yaml",
        "pgweave_templates/sql/initial_migration.sql.j2",
        "pgweave_client/py.typed",
    ):
        assert data in names


def test_version_comes_from_pyproject(installed: Installed) -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    version = project["project"]["version"]
    result = installed.run("pgweave", "--version")
    assert (result.returncode, result.stdout) == (0, f"pgweave {version}\n")
    imported = installed.run(
        "python", "-c", "import pgweave, pgweave_generator; print(pgweave.__version__); "
        "print(pgweave.__file__); print(pgweave_generator.__file__)",
    )  # fmt: skip
    lines = imported.stdout.splitlines()
    assert lines[0] == version, imported.stderr
    for path in lines[1:]:
        assert Path(path).is_relative_to(installed.venv), path


def test_install_worker_start_wait_status(installed: Installed, empty_db: str) -> None:
    result = installed.run("pgweave", "install", "--dsn", empty_db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("applied: 0001_initial.sql")
    log = (installed.home / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(installed.venv / "bin" / "pgweave"), "worker", "pgweave_examples.map_example:flow",
         "--dsn", empty_db],
        cwd=installed.home, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_flow(empty_db, "word_stats", worker)
        started = installed.run(
            "pgweave", "start", "word_stats", "--dsn", empty_db, "--input",
            json.dumps(["Wheels ship", "from one spec"]), "--wait", "--timeout", "60",
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        run_id = started.stdout.split("started run ", 1)[1].split()[0]
        assert '"longest": "wheels"' in started.stdout
        status = installed.run("pgweave", "status", run_id, "--dsn", empty_db, "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["run"]["status"] == "completed"
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        log.close()
    assert code == 0, (installed.home / "worker.log").read_text()


def wait_for_flow(dsn: str, slug: str, worker: subprocess.Popen[bytes]) -> None:
    """Wait until the worker has compiled the flow into the database."""
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not conn.execute("select 1 from pgflow.flows where flow_slug = %s", (slug,)).rowcount:
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, f"flow {slug} not compiled within 60 s"
            time.sleep(0.1)


def test_demo(installed: Installed) -> None:
    result = installed.run("pgweave", "demo", "--example", "map", timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "demo complete" in result.stdout


def test_generator_commands(installed: Installed) -> None:
    """A project with its own spec (the mini one): generate, record, check, plan."""
    project = installed.home / "project"
    shutil.copytree(MINI, project / "spec")
    (project / "spec" / "spec.yaml").rename(project / "spec" / "pgflow.yaml")
    for args, expected in (
        (["generate", "--spec", "spec/pgflow.yaml", "--out", "generated"], "wrote generated/"),
        (["migration", "new", "initial"], "recorded migration 0001_initial"),
        (["check"], "generated: up to date with spec/pgflow.yaml"),
        (["migration", "plan"], "-- no pending change: the spec matches 0001_initial"),
    ):
        result = installed.run("pgweave", *args, cwd=project)
        assert result.returncode == 0, result.stdout + result.stderr
        assert expected in result.stdout, result.stdout
    applied = (project / "generated" / "migrations" / "0001_initial.sql").read_text("utf-8")
    assert "create table shop.orders" in applied


def test_the_shipped_engine_spec_is_complete(installed: Installed) -> None:
    """The engine's spec ships with its function bodies: it loads and validates."""
    locate = installed.run(
        "python", "-c", "import importlib.resources as r; print(r.files('pgweave_spec') / 'pgflow.yaml')"
    )  # fmt: skip
    spec = locate.stdout.strip()
    assert Path(spec).is_relative_to(installed.venv), locate.stderr
    result = installed.run("pgweave", "migration", "plan", "--spec", spec, "--out", "nothing")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("-- no migration recorded yet")
