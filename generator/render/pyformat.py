"""Format generated Python with ruff (import sorting, safe fixes, then the formatter).

Generated Python must pass the project's ``ruff check`` and ``ruff format --check``; the
simplest way to guarantee that for code coming out of templates and out of
datamodel-code-generator alike is to run the same tool over it, configured explicitly so
that the result does not depend on the directory generation runs in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

# The project's style (pyproject.toml [tool.ruff]), repeated so generation is independent
# of the working directory; the generated package is checked with the project's config.
_SETTINGS = ("--line-length", "100", "--target-version", "py311")
_FIXES = "I,F401,UP,RUF022,RUF100"


@cache
def _ruff() -> str:
    """The ruff executable: the one installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "ruff"
    found = str(beside) if beside.is_file() else shutil.which("ruff")
    if found is None:  # pragma: no cover - ruff comes with pgweave[generator]
        raise ModuleNotFoundError("generating Python needs ruff", name="ruff")
    return found


def _run(args: list[str], code: str, filename: str) -> str:
    result = subprocess.run(
        [_ruff(), *args, "--isolated", *_SETTINGS, "--stdin-filename", filename, "-"],
        input=code,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1) or not result.stdout:
        raise RuntimeError(f"ruff failed on generated {filename}:\n{result.stderr}\n{code}")
    return result.stdout


def format_python(code: str, filename: str) -> str:
    """``code`` with imports sorted, unused imports dropped and ruff's formatting applied."""
    fixed = _run(["check", "--fix", "--exit-zero", "--quiet", "--select", _FIXES], code, filename)
    return _run(["format", "--quiet"], fixed, filename)
