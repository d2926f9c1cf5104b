"""The development install (bootstrap.sh: strict editable mode) is visible to type checkers run
from another project, with the pgweave-prefixed import names of the installed package."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from tests import PROJECT_ROOT
from tests.packaging import clean_env

USER_CODE = """
from pgweave.dsl import Flow
from pgweave_client import PgflowClient
from pgweave_generator.diagnostics import SpecError


def double(n: int) -> int:
    return n * 2


flow = Flow[list[int]]("numbers").map("double", double)
reveal_type(flow)
client: type[PgflowClient] = PgflowClient
error: type[Exception] = SpecError
wrong: int = flow
"""


def test_mypy_from_another_project_sees_pgweave(tmp_path: Path) -> None:
    project = tmp_path / "user_project"
    project.mkdir()
    (project / "app.py").write_text(USER_CODE, encoding="utf-8")
    mypy = Path(sys.executable).with_name("mypy")
    result = subprocess.run(
        [str(mypy), "--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
         "app.py"],
        cwd=project, env=clean_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.stdout.splitlines() == [
        'app.py:12: note: Revealed type is "pgweave.dsl.Flow[list[int]]"',
        "app.py:15: error: Incompatible types in assignment (expression has type "
        '"Flow[list[int]]", variable has type "int")  [assignment]',
    ], result.stdout + result.stderr


def test_each_import_name_links_its_whole_folder(tmp_path: Path) -> None:
    """bootstrap.sh links every package as a folder, so a file added later is importable."""
    setuptools = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text("utf-8"))["tool"][
        "setuptools"
    ]
    folders = {"pgweave": "pgweave", **setuptools["package-dir"]}
    assert set(folders) == {p for p in setuptools["packages"] if "." not in p}
    probe = (
        "import importlib.util, json, sys; print(json.dumps({n: "
        "importlib.util.find_spec(n).submodule_search_locations[0] for n in sys.argv[1:]}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe, *folders],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    for name, location in json.loads(found.stdout).items():
        assert Path(location).resolve() == PROJECT_ROOT / folders[name], name
