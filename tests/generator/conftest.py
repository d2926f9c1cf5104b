"""Fixtures for generator tests: a small spec copied to a temp dir, ready to mutate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

MINI = Path(__file__).parent / "fixtures" / "mini"


class SpecCopy:
    """A writable copy of the mini spec."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "spec.yaml"

    @property
    def text(self) -> str:
        """The spec file's current text."""
        return self.file.read_text(encoding="utf-8")

    def replace(self, old: str, new: str) -> int:
        """Replace one exact occurrence; returns the 1-based line where ``new`` starts."""
        text = self.text
        assert text.count(old) == 1, f"{old!r} must occur exactly once"
        position = text.index(old)
        self.file.write_text(text.replace(old, new), encoding="utf-8")
        return text[:position].count("\n") + 1


@pytest.fixture
def mini(tmp_path: Path) -> SpecCopy:
    """A fresh copy of the mini spec (spec.yaml + functions/) in a temp dir."""
    root = tmp_path / "spec"
    shutil.copytree(MINI, root)
    return SpecCopy(root)
