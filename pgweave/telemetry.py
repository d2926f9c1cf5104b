"""Metrics and traces for task execution, for the worker (and the dashboard's buckets).

- :class:`TaskMetrics`: Prometheus task duration histogram and outcome counter per flow and
  step, in its own registry, served by :meth:`TaskMetrics.serve` (``--metrics-port``).
- :func:`task_span`: one OpenTelemetry span per task with the run id, flow, step and task
  index as attributes. It is a no-op unless the application configures an SDK.
- :func:`run_trace_context`: the trace of a run. Its trace id *is* the run id (both are 128
  bits), so ``pgweave start`` and every worker put their spans into the same trace without
  carrying a context through the database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

TRACER_NAME = "pgweave"
# Seconds; shared by the worker's histogram and the dashboard's /metrics.
TASK_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                         60.0, 300.0)  # fmt: skip


@dataclass(frozen=True)
class TaskRef:
    """What identifies a task in metrics and traces."""

    run_id: uuid.UUID
    flow_slug: str
    step_slug: str
    task_index: int


class TaskMetrics:
    """The worker's task metrics, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.duration = Histogram(
            "pgweave_worker_task_duration_seconds",
            "Time a handler took for one task, by flow, step and outcome.",
            ["flow", "step", "outcome"],
            buckets=TASK_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.tasks = Counter(
            "pgweave_worker_tasks",
            "Tasks handled, by flow, step and outcome (completed or failed).",
            ["flow", "step", "outcome"],
            registry=self.registry,
        )

    def observe(self, task: TaskRef, outcome: str, seconds: float) -> None:
        """Record one handled task."""
        labels = (task.flow_slug, task.step_slug, outcome)
        self.duration.labels(*labels).observe(seconds)
        self.tasks.labels(*labels).inc()

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve the registry at ``http://addr:port/metrics`` from a daemon thread; returns
        the server (``.shutdown()`` stops it)."""
        server, _thread = start_http_server(port, addr, registry=self.registry)
        return server


def run_trace_context(run_id: uuid.UUID) -> otel_context.Context:
    """A context whose (remote, sampled) parent span lies in the run's trace: trace id =
    the run id, span id = its low 64 bits (never 0)."""
    span_id = (run_id.int & 0xFFFF_FFFF_FFFF_FFFF) or 1
    parent = trace.SpanContext(
        trace_id=run_id.int or 1,
        span_id=span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def task_attributes(task: TaskRef) -> dict[str, str | int]:
    """The span attributes of a task."""
    return {
        "pgweave.run_id": str(task.run_id),
        "pgweave.flow_slug": task.flow_slug,
        "pgweave.step_slug": task.step_slug,
        "pgweave.task_index": task.task_index,
    }


@contextmanager
def task_span(task: TaskRef, metrics: TaskMetrics | None = None) -> Iterator[trace.Span]:
    """Wrap one task's handler: a span ``<flow>.<step>`` in the run's trace (its exception
    recorded, status ERROR) and, with ``metrics``, its duration and outcome."""
    tracer = trace.get_tracer(TRACER_NAME)
    started = time.perf_counter()
    outcome = "failed"
    with tracer.start_as_current_span(
        f"{task.flow_slug}.{task.step_slug}",
        context=run_trace_context(task.run_id),
        kind=trace.SpanKind.CONSUMER,
        attributes=task_attributes(task),
    ) as span:
        try:
            yield span
            outcome = "completed"
        finally:
            if metrics is not None:
                metrics.observe(task, outcome, time.perf_counter() - started)


@contextmanager
def start_span(run_id: uuid.UUID, flow_slug: str) -> Iterator[trace.Span]:
    """A span for starting a run (``pgweave start``), in the run's trace."""
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"start {flow_slug}",
        context=run_trace_context(run_id),
        kind=trace.SpanKind.PRODUCER,
        attributes={"pgweave.run_id": str(run_id), "pgweave.flow_slug": flow_slug},
    ) as span:
        yield span
