"""Worker processes for tests: ``pgweave worker …`` as a subprocess, logs in a file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psycopg

from tests import PROJECT_ROOT

PGWEAVE = Path(sys.executable).with_name("pgweave")


class WorkerProcess:
    """One ``pgweave worker`` subprocess (started by the test, stopped by it by pid)."""

    def __init__(self, dsn: str, refs: list[str], logs: Path, markers: Path, *args: str) -> None:
        self.log_path = logs
        self._log = logs.open("wb")
        env = {**os.environ, "PGWEAVE_TEST_MARKERS": str(markers), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [str(PGWEAVE), "worker", *refs, "--dsn", dsn, "--log-format", "json", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def logs(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, signum: int) -> None:
        """Send a signal to this worker process only."""
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the process to exit; returns its exit status."""
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def stop(self) -> None:
        """Terminate (then kill) the process if it still runs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (cheap, local) until true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Spawn(Protocol):
    """The ``spawn`` fixture: start a worker process for flows of ``tests.runtime.flows``."""

    def __call__(
        self, *refs: str, args: tuple[str, ...] = (), dsn: str | None = None
    ) -> WorkerProcess: ...


def registered(conn: psycopg.Connection, count: int = 1) -> Callable[[], bool]:
    """A condition: at least ``count`` workers are registered and not stopped."""

    def check() -> bool:
        row = conn.execute(
            "select count(*) from pgflow.workers where stopped_at is null"
        ).fetchone()
        return row is not None and row[0] >= count

    return check


def log_events(process: WorkerProcess) -> list[dict[str, Any]]:
    """The worker's JSON log lines, parsed."""
    return [json.loads(line) for line in process.logs().splitlines() if line.startswith("{")]


def tasks(conn: psycopg.Connection, run_id: Any) -> list[tuple[Any, ...]]:
    """(step, index, status, attempts, error) of a run's tasks."""
    return conn.execute(
        "select step_slug, task_index, status, attempts_count, error_message"
        " from pgflow.step_tasks where run_id = %s order by step_slug, task_index",
        (run_id,),
    ).fetchall()


def refused_dsn() -> str:
    """A DSN of a local port nothing listens on: connections to it are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://nobody@127.0.0.1:{port}/nowhere?connect_timeout=2"
