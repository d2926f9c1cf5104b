"""Spec problems as data: each names the offending path, file and line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

Path_ = tuple[str | int, ...]


def format_path(path: Path_) -> str:
    """Render a location like ``tables.runs.columns.status.type`` or ``…indexes[0].columns``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text or "<root>"


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'nullable'?)`` for the valid name closest to a misspelt one, or ''."""
    close = difflib.get_close_matches(name, sorted(set(valid)), n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class SpecIssue:
    """One problem found in a spec."""

    path: Path_
    message: str
    file: Path | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return f"{where}{format_path(self.path)}: {self.message}"


class SpecError(Exception):
    """Raised when a spec cannot be loaded; carries every issue found."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))
