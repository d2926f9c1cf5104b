"""The dashboard's pages against live PostgreSQL: what each shows, filters, pagination,
escaping of every database value, and errors."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from pgweave.dashboard import queries
from tests.dashboard.conftest import Served
from tests.engine.helpers import complete, fail, read_and_start, start_flow

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'


def run_diamond(conn: psycopg.Connection, flow: str, items: list[str]) -> uuid.UUID:
    """A run of the diamond flow driven to completion; returns its id."""
    run_id: uuid.UUID = start_flow(conn, flow, {"items": items})["run_id"]
    (root,) = read_and_start(conn, flow)
    complete(conn, root, items)
    while tasks := read_and_start(conn, flow, qty=10):
        for task in tasks:
            complete(conn, task, {"done": task["step_slug"], "i": task["task_index"]})
    return run_id


def test_overview_counts_runs_queue_and_workers(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    run_diamond(conn, diamond, ["a", "b"])
    start_flow(conn, diamond, {"items": []})  # one running run, its root task queued
    cancelled = start_flow(conn, diamond, {"items": []})["run_id"]
    conn.execute("select pgflow.cancel_run(%s)", (cancelled,))  # its root message archived

    page = served.client().get("/")

    assert page.status_code == 200
    row = re.search(r'<tr data-flow="diamond">(.*?)</tr>', page.text, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(\d*)</td>", row.group(1))
    # hour: running, completed, failed, cancelled; day: the same;
    # queue: queued, visible, in flight, delayed
    assert cells == ["1", "1", "0", "1", "1", "1", "0", "1", "1", "1", "0", "0"]
    assert "tasks completed in the last minute" in page.text
    assert re.search(r"<strong>5</strong> tasks completed", page.text)  # root, left, 2 each, join
    assert re.search(r"<strong>1</strong> workers alive", page.text)


def test_run_page_shows_dag_steps_map_progress_and_timeline(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    run_id = run_diamond(conn, diamond, ["a", "b", "c"])

    page = served.client().get(f"/runs/{run_id}").text

    nodes = {
        step: status
        for status, step in re.findall(r'class="node st-(\w+)" data-step="(\w+)"', page)
    }
    assert nodes == {
        "root": "completed", "left": "completed", "each": "completed", "join": "completed",
    }  # fmt: skip
    assert page.count('class="edge"') == 4
    assert "3/3" in page  # the map's progress
    events = re.findall(r'<span class="event">([^<]+)</span>', page)
    assert events[0] == "run:started"
    assert events[-1] == "run:completed"
    assert "step:each:completed" in events
    assert "&#34;items&#34;" in page or "&quot;items&quot;" in page  # input shown (escaped JSON)


def test_run_page_in_progress_colours_and_counts(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    (root,) = read_and_start(conn, diamond)
    complete(conn, root, ["x", "y"])
    (task, *_rest) = read_and_start(conn, diamond, qty=2)

    page = served.client().get(f"/runs/{run_id}").text

    nodes = {
        step: status
        for status, step in re.findall(r'class="node st-(\w+)" data-step="(\w+)"', page)
    }
    assert nodes == {"root": "completed", "left": "started", "each": "started", "join": "created"}
    assert "0/2" in page
    assert task["step_slug"] in page


def test_failed_task_error_is_shown(conn: psycopg.Connection, served: Served, diamond: str) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    for attempt in range(2):  # max_attempts=2
        (root,) = read_and_start(conn, diamond, vt=0)
        fail(conn, root, f"boom {attempt}")
        conn.execute("update pgmq.q_diamond set vt = now()")  # skip the retry delay

    page = served.client().get(f"/runs/{run_id}").text

    assert 'id="run-status"><span class="status st-failed">failed</span>' in page
    assert "boom 1" in page
    assert "task:root[0]:failed" in page


def test_failed_task_type_and_bounded_traceback(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    conn.execute("update pgflow.flows set opt_max_attempts = 1")
    run_id = start_flow(conn, diamond, {})["run_id"]
    assert len(read_and_start(conn, diamond)) == 1  # root started
    traceback = "Traceback (most recent call last):\n" + "x" * 6000 + "\n<End>Error: gone"
    conn.execute(
        "select pgflow.fail_task_with_details(%s, 'root', 0, 'gone',"
        " error_type => '<Err>Type', error_traceback => %s)",
        (run_id, traceback),
    )

    page = served.client().get(f"/runs/{run_id}").text

    assert '<td class="error-type"><code>&lt;Err&gt;Type</code></td>' in page
    shown = re.search(
        r'<details class="traceback"><summary>Traceback <span class="muted">'
        r"\(last (\d+) of (\d+) characters\)</span></summary><pre>(.*?)</pre></details>",
        page,
        re.S,
    )
    assert shown is not None  # collapsed: a <details> without "open"
    last, total, text = int(shown.group(1)), int(shown.group(2)), shown.group(3)
    assert (last, total) == (queries.TRACEBACK_CHARS, len(traceback))
    assert text.endswith("x\n&lt;End&gt;Error: gone")  # the end is kept, escaped
    assert "Traceback (most recent" not in text


def test_large_outputs_are_cut(conn: psycopg.Connection, served: Served, diamond: str) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    (root,) = read_and_start(conn, diamond)
    complete(conn, root, ["y" * 50_000])

    page = served.client().get(f"/runs/{run_id}").text

    assert "y" * 3_900 in page
    assert "y" * 4_001 not in page
    assert "(truncated: 48.8 kB in all)" in page


def test_database_values_are_escaped(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    run_id = start_flow(conn, diamond, {"x": XSS})["run_id"]
    (root,) = read_and_start(conn, diamond)
    complete(conn, root, [XSS])
    (task, *_) = read_and_start(conn, diamond, qty=2)
    conn.execute("update pgflow.flows set opt_max_attempts = 1")
    conn.execute("update pgflow.steps set opt_max_attempts = null")
    fail(conn, task, XSS)

    page = served.client().get(f"/runs/{run_id}").text

    assert "<script>window.__xss" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page  # the error, shown as text
    assert page.count("&lt;img src=x") >= 2  # the error and the input/output


def test_runs_filters_and_keyset_pagination(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    ids = [start_flow(conn, diamond, {"n": n})["run_id"] for n in range(5)]
    # distinct, known start times: run n started n minutes after a base time
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for n, run_id in enumerate(ids):
        conn.execute(
            "update pgflow.runs set started_at = %s where run_id = %s",
            (base + timedelta(minutes=n), run_id),
        )
    conn.execute(
        "update pgflow.runs set status = 'failed', failed_at = now() where run_id = %s", (ids[1],)
    )
    client = served.client()

    def listed(url: str) -> list[str]:
        return re.findall(r'<tr data-run-id="([0-9a-f-]+)">', client.get(url).text)

    first = client.get("/runs", params={"flow": diamond}).text
    # 50 per page: all five, newest first
    assert listed("/runs") == [str(i) for i in reversed(ids)]
    assert listed("/runs?status=failed") == [str(ids[1])]
    assert listed("/runs?since=2026-01-01T00:02:00&until=2026-01-01T00:04:00") == [
        str(ids[3]),
        str(ids[2]),
    ]
    assert 'rel="next"' not in first


def test_runs_next_page_continues_where_the_first_ended(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    conn.execute(
        "insert into pgflow.runs (flow_slug, status, input, started_at)"
        " select 'diamond', 'started', '{}', now() - n * interval '1 second' from generate_series(1, 120) as n"
    )
    client = served.client()
    seen: list[str] = []
    url: str | None = "/runs"
    pages = 0
    while url:
        text = client.get(url).text
        seen += re.findall(r'<tr data-run-id="([0-9a-f-]+)">', text)
        match = re.search(r'<a rel="next" href="([^"]+)"', text)
        url = match.group(1).replace("&amp;", "&") if match else None
        pages += 1
    expected = [
        str(r[0])
        for r in conn.execute(
            "select run_id from pgflow.runs order by started_at desc, run_id desc"
        )
    ]
    assert seen == expected
    assert pages == 3


def test_find_by_id_and_bad_input(conn: psycopg.Connection, served: Served, diamond: str) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = served.client()

    found = client.get("/runs", params={"q": f" {run_id} "})
    assert found.status_code == 303
    assert found.headers["location"] == f"/runs/{run_id}"
    bad = client.get("/runs", params={"q": "nope<b>"})
    assert bad.status_code == 400
    assert "Not a run id" in bad.text
    assert client.get("/runs", params={"status": "<b>weird"}).status_code == 400
    assert client.get("/runs", params={"after": "garbage"}).status_code == 400
    assert client.get(f"/runs/{uuid.uuid4()}").status_code == 404
    assert client.get("/runs/not-a-uuid").status_code == 404
    assert client.get("/flows/nope").status_code == 404


def test_flow_page_shows_definition_and_recent_runs(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    conn.execute(
        "update pgflow.steps set required_input_pattern = '{\"go\": true}', opt_timeout = 9 where step_slug = 'left'"
    )

    page = served.client().get(f"/flows/{diamond}").text

    assert str(run_id) in page
    assert 'data-step="each"' in page
    assert "[map]" in page
    assert "timeout=9" in page
    assert "left, each" in page or "each, left" in page  # join's dependencies
    assert '<code>{"go": true}</code>' in page  # tojson: quotes are safe in text; <>&' escaped


def test_workers_page(conn: psycopg.Connection, served: Served) -> None:
    conn.execute(
        "insert into pgflow.workers (worker_id, queue_name, function_name, last_heartbeat_at, stopped_at) values"
        " (gen_random_uuid(), 'q1', 'alive_fn', now(), null),"
        " (gen_random_uuid(), 'q1', 'stale_fn', now() - interval '5 minutes', null),"
        " (gen_random_uuid(), 'q2', 'stopped_fn', now() - interval '1 hour', now())"
    )

    page = served.client().get("/workers").text

    states = re.findall(r"<td>(\w+_fn)</td><td><span class=\"status wk-(\w+)\">", page)
    assert states == [("alive_fn", "alive"), ("stale_fn", "stale"), ("stopped_fn", "stopped")]


def test_static_assets_ship_with_the_package(served: Served) -> None:
    client = served.client()
    htmx = client.get("/static/htmx.min.js")
    assert htmx.status_code == 200
    assert "htmx" in htmx.text[:2000]
    assert client.get("/static/htmx.LICENSE.txt").status_code == 200
    assert client.get("/static/dashboard.js").status_code == 200
    page = client.get("/")
    assert "https://" not in page.text  # nothing from a CDN
    assert "script-src 'self'" in page.headers["content-security-policy"]
