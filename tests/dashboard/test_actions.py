"""The dashboard's actions on the engine's real run-control functions, as the login roles of
the spec: offered by role and state, confirmed, their effects, engine refusals, the log."""

from __future__ import annotations

import logging
import re
import uuid

import httpx
import psycopg
import pytest

from tests.dashboard.conftest import RoleFactory
from tests.dashboard.test_pages import run_diamond
from tests.engine.helpers import complete, fail, read_and_start, run_row, start_flow, statuses

DASHBOARD = "pgflow_dashboard"
ADMIN = "pgflow_admin"


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def buttons(page: str) -> list[str]:
    """The action buttons on a page."""
    return re.findall(r'<button type="submit">([^<]+)…</button>', page)


def act(
    client: httpx.Client, action: str, target: object, reason: str | None = None
) -> httpx.Response:
    """POST a confirmed action (as from a page opened earlier) with a valid CSRF token."""
    client.get("/workers")  # hands out the CSRF cookie, which forms carry as the token
    form = {"csrf": client.cookies["pgweave_csrf"], "target": str(target), "confirmed": "yes"}
    if reason is not None:
        form["reason"] = reason
    return client.post(f"/actions/{action}", data=form)


def logged(caplog: pytest.LogCaptureFixture, action: str, target: object, outcome: str) -> bool:
    """Whether the dashboard logged this action's outcome ('done' or 'failed')."""
    return any(
        r.name == "pgweave.dashboard.actions"
        and f"action {action} on {target} by 127.0.0.1 {outcome}" in r.getMessage()
        for r in caplog.records
    )


def failed_run(conn: psycopg.Connection, flow: str) -> uuid.UUID:
    """A diamond run whose root completed and whose ``left`` failed for good."""
    conn.execute("update pgflow.flows set opt_max_attempts = 1")
    run_id: uuid.UUID = start_flow(conn, flow, {})["run_id"]
    (root,) = read_and_start(conn, flow)
    complete(conn, root, ["a"])
    (left,) = [t for t in read_and_start(conn, flow, qty=2) if t["step_slug"] == "left"]
    fail(conn, left, "boom")
    assert run_row(conn, run_id)["status"] == "failed"
    return run_id


def test_actions_follow_the_role_and_the_state(
    conn: psycopg.Connection, as_role: RoleFactory, diamond: str
) -> None:
    client = as_role(DASHBOARD).client()
    running = start_flow(conn, diamond, {})["run_id"]
    assert buttons(client.get(f"/runs/{running}").text) == ["Cancel run", "Pause run"]
    conn.execute("select pgflow.pause_run(%s)", (running,))
    assert buttons(client.get(f"/runs/{running}").text) == ["Cancel run", "Unpause run"]
    failed = failed_run(conn, diamond)
    assert buttons(client.get(f"/runs/{failed}").text) == ["Retry run", "Resume run"]
    conn.execute("select pgflow.cancel_run(%s)", (running,))
    assert buttons(client.get(f"/runs/{running}").text) == ["Retry run", "Resume run"]
    # pausing flows is for pgflow_admin, which pgflow_dashboard is not
    assert buttons(client.get(f"/flows/{diamond}").text) == []
    admin = as_role(DASHBOARD, ADMIN).client()
    assert buttons(admin.get(f"/flows/{diamond}").text) == ["Pause flow"]
    conn.execute("select pgflow.pause_flow(%s)", (diamond,))
    assert buttons(admin.get(f"/flows/{diamond}").text) == ["Unpause flow"]


def test_flow_actions_are_refused_to_the_dashboard_role(
    conn: psycopg.Connection, as_role: RoleFactory, diamond: str
) -> None:
    answer = act(as_role(DASHBOARD).client(), "pause_flow", diamond)
    assert answer.status_code == 404
    assert conn.execute("select paused_at from pgflow.flows").fetchone() == (None,)


def test_revoked_function_is_neither_offered_nor_accepted(
    conn: psycopg.Connection, as_role: RoleFactory, diamond: str
) -> None:
    conn.execute(f"revoke execute on function pgflow.pause_run(uuid) from {DASHBOARD}")
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = as_role(DASHBOARD).client()
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200, page.text  # the role still reads all the page needs
    assert buttons(page.text) == ["Cancel run"]
    assert act(client, "pause", run_id).status_code == 404
    assert client.get("/metrics").status_code == 200
    assert run_row(conn, run_id)["paused_at"] is None


def test_cancel_needs_confirmation_then_cancels_and_logs(
    conn: psycopg.Connection,
    as_role: RoleFactory,
    diamond: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = as_role(DASHBOARD).client()
    token = csrf_of(client.get(f"/runs/{run_id}").text)
    ask = client.post(
        "/actions/cancel", data={"csrf": token, "target": str(run_id), "reason": "<i>bye</i>"}
    )
    assert ask.status_code == 200
    assert "Yes, cancel run" in ask.text
    assert "&lt;i&gt;bye&lt;/i&gt;" in ask.text
    assert run_row(conn, run_id)["status"] == "started"  # nothing happened yet

    with caplog.at_level(logging.INFO, logger="pgweave.dashboard.actions"):
        done = act(client, "cancel", run_id, "<i>bye</i>")
    assert done.status_code == 303
    assert done.headers["location"] == f"/runs/{run_id}?done=cancel"
    row = run_row(conn, run_id)
    assert (row["status"], row["cancel_reason"]) == ("cancelled", "<i>bye</i>")
    assert statuses(conn, run_id)["root"] == "cancelled"
    assert logged(caplog, "cancel", run_id, "done")
    page = client.get(done.headers["location"]).text
    assert "Cancel run: done." in page
    assert re.search(r'id="run-status"><span class="status st-cancelled">cancelled<', page)
    assert '<q id="cancel-reason">&lt;i&gt;bye&lt;/i&gt;</q>' in page
    assert "run:cancelled" in page  # the timeline
    listed = client.get("/runs", params={"status": "cancelled"}).text
    assert f'data-run-id="{run_id}"' in listed
    assert '<option value="cancelled" selected>' in listed


def test_pause_holds_the_run_and_unpause_releases_it(
    conn: psycopg.Connection,
    as_role: RoleFactory,
    diamond: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = as_role(DASHBOARD).client()
    with caplog.at_level(logging.INFO, logger="pgweave.dashboard.actions"):
        paused = act(client, "pause", run_id)
        assert paused.status_code == 303
        assert run_row(conn, run_id)["paused_at"] is not None
        page = client.get(f"/runs/{run_id}").text
        assert re.search(r'id="run-paused"><span class="status st-paused">paused</span> run', page)
        assert read_and_start(conn, diamond) == []  # its queued task does not start
        listed = client.get("/runs").text
        assert re.search(
            rf'data-run-id="{run_id}">.*?st-started.*?st-paused">paused<', listed, re.S
        )
        assert act(client, "unpause", run_id).status_code == 303
    assert run_row(conn, run_id)["paused_at"] is None
    assert 'id="run-paused"' not in client.get(f"/runs/{run_id}").text
    assert [t["step_slug"] for t in read_and_start(conn, diamond)] == ["root"]
    assert logged(caplog, "pause", run_id, "done")
    assert logged(caplog, "unpause", run_id, "done")


@pytest.mark.parametrize("action", ["retry", "resume"])
def test_restart_opens_the_new_run_linked_to_its_source(
    conn: psycopg.Connection,
    as_role: RoleFactory,
    diamond: str,
    caplog: pytest.LogCaptureFixture,
    action: str,
) -> None:
    source = failed_run(conn, diamond)
    client = as_role(DASHBOARD).client()
    with caplog.at_level(logging.INFO, logger="pgweave.dashboard.actions"):
        done = act(client, action, source)
    assert done.status_code == 303
    (new,) = conn.execute(
        "select run_id from pgflow.runs where restart_of_run_id = %s", (source,)
    ).fetchone() or (None,)
    assert new is not None
    assert done.headers["location"] == f"/runs/{new}?done={action}"
    assert logged(caplog, action, source, f"done, new run {new}")
    # resume carries the completed root over; retry starts it again
    assert statuses(conn, new)["root"] == ("completed" if action == "resume" else "started")
    page = client.get(done.headers["location"]).text
    assert f"{action.capitalize()} run: done." in page
    assert f'<a id="restart-of" href="/runs/{source}">' in page
    source_page = client.get(f"/runs/{source}").text
    assert re.search(
        rf'<ul id="restarts" class="plain"><li><a href="/runs/{new}">.*?st-started', source_page
    )
    assert run_row(conn, source)["status"] == "failed"  # the source is not modified


def test_flow_pause_by_a_role_that_may(
    conn: psycopg.Connection,
    as_role: RoleFactory,
    diamond: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = as_role(DASHBOARD, ADMIN).client()
    with caplog.at_level(logging.INFO, logger="pgweave.dashboard.actions"):
        done = act(client, "pause_flow", diamond)
        assert done.status_code == 303
        assert done.headers["location"] == f"/flows/{diamond}?done=pause_flow"
        assert 'id="flow-paused"' in client.get(done.headers["location"]).text
        run_page = client.get(f"/runs/{run_id}").text
        assert re.search(
            r'id="run-paused"><span class="status st-paused">paused</span> flow', run_page
        )
        assert read_and_start(conn, diamond) == []
        assert act(client, "unpause_flow", diamond).status_code == 303
    assert conn.execute("select paused_at from pgflow.flows").fetchone() == (None,)
    assert [t["step_slug"] for t in read_and_start(conn, diamond)] == ["root"]
    assert logged(caplog, "pause_flow", diamond, "done")
    assert logged(caplog, "unpause_flow", diamond, "done")


def test_engine_refusals_are_shown_escaped_and_logged(
    conn: psycopg.Connection,
    as_role: RoleFactory,
    diamond: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    conn.execute("select pgflow.cancel_run(%s)", (run_id,))
    client = as_role(DASHBOARD, ADMIN).client()
    with caplog.at_level(logging.INFO, logger="pgweave.dashboard.actions"):
        refused = act(client, "pause", run_id)  # a page opened before the cancellation
        unknown = act(client, "pause_flow", "<b>nope</b>")
    assert refused.status_code == 409
    assert f"Run {run_id} cannot be paused: it is cancelled" in refused.text
    assert unknown.status_code == 409
    assert "Flow not found: &lt;b&gt;nope&lt;/b&gt;" in unknown.text
    assert "<b>nope" not in unknown.text
    assert logged(caplog, "pause", run_id, "failed")
    assert logged(caplog, "pause_flow", "<b>nope</b>", "failed")
    assert run_row(conn, run_id)["paused_at"] is None


def test_cancelling_a_completed_run_is_refused(
    conn: psycopg.Connection, as_role: RoleFactory, diamond: str
) -> None:
    run_id = run_diamond(conn, diamond, ["a"])
    answer = act(as_role(DASHBOARD).client(), "cancel", run_id)
    assert answer.status_code == 409
    assert f"Run {run_id} cannot be cancelled: it is completed" in answer.text
    assert run_row(conn, run_id)["status"] == "completed"
