"""Worker configuration, with the defaults pgflow's workers use."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker polls, runs handlers and shuts down.

    The polling defaults are pgflow's: 10 concurrent tasks, batches of 10, a 5 s
    visibility timeout, 2 s long polls checking every 100 ms.
    """

    max_concurrent: int = 10
    """Handlers running at once (sync ones each take a thread)."""
    batch_size: int = 10
    """At most this many messages per read (never more than free slots)."""
    visibility_timeout: int = 5
    """Seconds a read message stays invisible until start_tasks extends it."""
    max_poll_seconds: int = 2
    """How long one pgmq.read_with_poll waits for messages."""
    poll_interval_ms: int = 100
    """How often pgmq.read_with_poll checks the queue while waiting."""
    heartbeat_interval: float = 5.0
    """Seconds between heartbeats (a deprecated worker stops at the next one)."""
    requeue_interval: float = 15.0
    """Seconds between requeue_stalled_tasks calls (0 disables them)."""
    shutdown_timeout: float = 30.0
    """Seconds in-flight tasks get to finish after a stop request."""
    allow_data_loss: bool = False
    """Let ensure_flow_compiled replace a stored flow whose shape differs (drops its runs)."""
    compile_flow: bool = True
    """Call ensure_flow_compiled at start (creating the flow when missing)."""
    function_name: str | None = None
    """Name recorded in pgflow.workers (default ``pgweave:<flow_slug>``)."""
    metrics_port: int | None = None
    """Serve Prometheus task metrics at ``http://127.0.0.1:<port>/metrics`` (0 = any port)."""
    listen: bool = True
    """Listen to the engine's events (cancellations stop handlers, new messages wake idle
    workers); without it, workers only poll."""

    def __post_init__(self) -> None:
        for name, minimum in (
            ("max_concurrent", 1),
            ("batch_size", 1),
            ("visibility_timeout", 1),
            ("max_poll_seconds", 0),
            ("poll_interval_ms", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in ("heartbeat_interval", "shutdown_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be from 0 to 65535, got {self.metrics_port!r}")
        if self.requeue_interval < 0:
            raise ValueError(f"requeue_interval must be >= 0, got {self.requeue_interval!r}")

    def with_overrides(self, **overrides: Any) -> WorkerConfig:
        """A copy with the given fields changed (``None`` values are ignored)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown worker option(s): {', '.join(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})
