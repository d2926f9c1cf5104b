"""Worker processes for tests: ``pgweave worker …`` as a subprocess, logs in a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

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
