"""Fixtures of the runtime tests: ``pgweave worker`` processes and their marker files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.processes import Spawn, WorkerProcess

FLOWS = "tests.runtime.flows"


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    """The directory the test flows' handlers write their marker files into."""
    path = tmp_path / "markers"
    path.mkdir()
    return path


@pytest.fixture
def spawn(db: str, tmp_path: Path, markers: Path) -> Iterator[Spawn]:
    """Start ``pgweave worker`` processes (this test's database unless ``dsn`` is given)."""
    started: list[WorkerProcess] = []

    def start(*refs: str, args: tuple[str, ...] = (), dsn: str | None = None) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        flows = [f"{FLOWS}:{r}" for r in refs]
        process = WorkerProcess(dsn or db, flows, log, markers, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
