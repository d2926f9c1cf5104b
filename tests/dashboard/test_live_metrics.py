"""Server-Sent Events fed by the engine's NOTIFY channel, and /metrics."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import httpx
import psycopg

from tests.dashboard.conftest import Served
from tests.engine.helpers import (
    complete,
    ensure_worker,
    install_realtime_stub,
    notify_events,
    read_and_start,
    realtime_events,
    start_flow,
)


def sse_events(lines: Iterator[str], count: int) -> list[dict[str, object]]:
    """The next ``count`` ``pgflow`` events of an SSE stream."""
    events: list[dict[str, object]] = []
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == "pgflow":
            events.append(json.loads(line[6:]))
            if len(events) == count:
                return events
    raise AssertionError(f"stream ended after {events}")


def test_engine_events_reach_the_stream(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    with (
        httpx.Client(base_url=served.url, timeout=10) as client,
        client.stream("GET", "/events") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        run_id = start_flow(conn, diamond, {})["run_id"]
        events = sse_events(lines, 2)
    assert events == [
        {"event": "run:started", "run_id": str(run_id), "flow_slug": diamond, "status": "started"},
        {"event": "step:root:started", "run_id": str(run_id), "status": "started"},
    ]


def test_brief_copy_also_with_realtime_and_for_large_outputs(
    conn: psycopg.Connection, db: str, diamond: str
) -> None:
    install_realtime_stub(conn)
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute('listen "pgweave:events"')
        run_id = start_flow(conn, diamond, {})["run_id"]
        (root,) = read_and_start(conn, diamond)
        complete(conn, root, ["x" * 9000])  # far beyond NOTIFY's limit
        events = notify_events(listener)
    assert [e["event"] for e in events] == [
        "run:started", "step:root:started", "step:root:completed",
        "step:each:started", "step:left:started",
    ]  # fmt: skip
    assert all(e["run_id"] == str(run_id) and e["channel"] == "pgweave:events" for e in events)
    assert len(realtime_events(conn)) == 5  # pgflow's realtime.send calls are unchanged


def test_run_stream_keeps_only_its_run(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    other = start_flow(conn, diamond, {})["run_id"]
    (other_root,) = read_and_start(conn, diamond)
    mine = start_flow(conn, diamond, {})["run_id"]
    with (
        httpx.Client(base_url=served.url, timeout=10) as client,
        client.stream("GET", "/events", params={"run_id": str(mine)}) as stream,
    ):
        lines = stream.iter_lines()
        next(lines)
        complete(conn, other_root, ["a"])  # events of the other run: filtered out
        (root,) = [
            t
            for t in read_and_start(conn, diamond, qty=5)
            if t["run_id"] == mine and t["step_slug"] == "root"
        ]
        complete(conn, root, [])
        events = sse_events(lines, 1)
    assert events[0]["run_id"] == str(mine)
    assert events[0]["event"] == "step:root:completed"
    assert str(other) not in json.dumps(events)


def test_stream_of_a_bad_run_id_is_refused(served: Served) -> None:
    assert served.client().get("/events", params={"run_id": "x"}).status_code == 404


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the metrics page (labels come sorted by name)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    assert match is not None, f"{name}{{{wanted}}} missing"
    return float(match.group(1))


def test_metrics_from_the_database(conn: psycopg.Connection, served: Served, diamond: str) -> None:
    done = start_flow(conn, diamond, {})["run_id"]
    (root,) = read_and_start(conn, diamond)
    complete(conn, root, [])
    for task in read_and_start(conn, diamond, qty=5):
        complete(conn, task, 1)
    for task in read_and_start(conn, diamond, qty=5):
        complete(conn, task, 2)
    start_flow(conn, diamond, {})  # running, root queued and visible
    conn.execute("update pgflow.runs set status = 'failed', failed_at = now(), remaining_steps = 0"
                 " where run_id = (select run_id from pgflow.runs where run_id <> %s limit 1)", (done,))  # fmt: skip
    start_flow(conn, diamond, {})
    ensure_worker(conn, diamond, uuid.uuid4())
    conn.execute("update pgflow.step_tasks set queued_at = completed_at - interval '3 seconds',"
                 " started_at = completed_at - interval '2 seconds'"
                 " where step_slug = 'root' and status = 'completed'")  # fmt: skip

    text = served.client().get("/metrics").text

    assert sample(text, "pgweave_runs_started_total", flow=diamond) == 3
    assert sample(text, "pgweave_runs_completed_total", flow=diamond) == 1
    assert sample(text, "pgweave_runs_failed_total", flow=diamond) == 1
    assert sample(text, "pgweave_runs_in_progress", flow=diamond) == 1
    assert sample(text, "pgweave_queue_messages", flow=diamond, state="visible") == 2
    assert sample(text, "pgweave_queue_messages", flow=diamond, state="in_flight") == 0
    assert sample(text, "pgweave_workers", queue=diamond, state="alive") == 2
    # root took 2 s: outside the 1 s bucket, inside 2.5 s
    assert (
        sample(text, "pgweave_task_duration_seconds_bucket", flow=diamond, step="root", le="1.0")
        == 0
    )
    assert (
        sample(text, "pgweave_task_duration_seconds_bucket", flow=diamond, step="root", le="2.5")
        == 1
    )
    assert sample(text, "pgweave_task_duration_seconds_gcount", flow=diamond, step="root") == 1
    assert sample(text, "pgweave_task_duration_seconds_gsum", flow=diamond, step="root") == 2.0
    assert sample(text, "pgweave_task_duration_seconds_gcount", flow=diamond, step="join") == 1
