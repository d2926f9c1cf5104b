"""pgweave.telemetry: the worker's task metrics and spans (an in-memory OpenTelemetry SDK)."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from pgweave.telemetry import TaskMetrics, TaskRef, start_span, task_span
from tests.dashboard.conftest import free_port
from tests.spans import recording_spans

RUN = uuid.UUID("0123456789abcdef0123456789abcdef")


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans recorded by the SDK."""
    yield from recording_spans()


@pytest.fixture
def recorded(spans: InMemorySpanExporter) -> InMemorySpanExporter:
    """The exporter, emptied."""
    spans.clear()
    return spans


def task(step: str = "fetch", index: int = 3) -> TaskRef:
    return TaskRef(run_id=RUN, flow_slug="analyze", step_slug=step, task_index=index)


def test_task_span_attributes_and_run_trace(recorded: InMemorySpanExporter) -> None:
    with start_span(RUN, "analyze"):
        pass
    with task_span(task()):
        pass
    with task_span(task("summary", 0)):
        pass
    started, first, second = recorded.get_finished_spans()
    assert first.name == "analyze.fetch"
    assert dict(first.attributes or {}) == {
        "pgweave.run_id": str(RUN), "pgweave.flow_slug": "analyze",
        "pgweave.step_slug": "fetch", "pgweave.task_index": 3,
    }  # fmt: skip
    # one trace per run, whose id is the run id: start and every task share it
    assert {s.context.trace_id for s in (started, first, second)} == {RUN.int}
    assert first.parent is not None
    assert first.parent.trace_id == RUN.int


def test_failed_task_span_records_the_error(recorded: InMemorySpanExporter) -> None:
    metrics = TaskMetrics()
    with pytest.raises(ValueError, match="bad"), task_span(task(), metrics):
        raise ValueError("bad")
    (span,) = recorded.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    labels = {"flow": "analyze", "step": "fetch", "outcome": "failed"}
    assert metrics.registry.get_sample_value("pgweave_worker_tasks_total", labels) == 1


def test_metrics_histogram_and_served_page(recorded: InMemorySpanExporter) -> None:
    metrics = TaskMetrics()
    for _ in range(3):
        with task_span(task(), metrics):
            pass
    metrics.observe(task(), "completed", 4.0)
    labels = {"flow": "analyze", "step": "fetch", "outcome": "completed"}
    assert metrics.registry.get_sample_value("pgweave_worker_tasks_total", labels) == 4
    assert (
        metrics.registry.get_sample_value("pgweave_worker_task_duration_seconds_count", labels) == 4
    )
    assert (
        metrics.registry.get_sample_value(
            "pgweave_worker_task_duration_seconds_bucket", {**labels, "le": "2.5"}
        )
        == 3
    )
    port = free_port()
    server = metrics.serve(port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            text = page.read().decode()
    finally:
        server.shutdown()
    assert 'pgweave_worker_tasks_total{flow="analyze",outcome="completed",step="fetch"} 4.0' in text
