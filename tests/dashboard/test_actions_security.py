"""Actions (shown only when the engine defines them, CSRF-protected, confirmed, logged),
read-only mode, authentication, and the safety rules of the settings."""

from __future__ import annotations

import logging
import re

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgweave.dashboard.config import ConfigError, DashboardConfig
from tests.dashboard.conftest import TOKEN, Served, ServeFactory
from tests.dashboard.stub_actions import calls, install_stub_actions
from tests.engine.helpers import start_flow


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def buttons(page: str) -> list[str]:
    """The action buttons on a page."""
    return re.findall(r'<button type="submit">([^<]+)…</button>', page)


def test_no_actions_without_engine_functions(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = served.client()
    page = client.get(f"/runs/{run_id}").text
    assert buttons(page) == []
    answer = client.post(
        "/actions/pause",
        data={"csrf": csrf_of_cookie(client), "target": str(run_id), "confirmed": "yes"},
    )
    assert answer.status_code == 404


def csrf_of_cookie(client: httpx.Client) -> str:
    """The CSRF cookie the dashboard gave this client."""
    return str(client.cookies["pgweave_csrf"])


def test_actions_appear_with_the_engine_functions(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    install_stub_actions(conn)
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = served.client()
    assert buttons(client.get(f"/runs/{run_id}").text) == [
        "Cancel run", "Pause run", "Unpause run", "Retry run", "Resume run",
    ]  # fmt: skip
    assert buttons(client.get(f"/flows/{diamond}").text) == ["Pause flow", "Unpause flow"]


def test_only_functions_the_role_may_execute_are_offered(
    conn: psycopg.Connection, dashboard: ServeFactory, diamond: str, db: str
) -> None:
    install_stub_actions(conn)
    conn.execute("revoke execute on function pgflow.pause_run(uuid) from public")
    conn.execute("create role dash_test login; grant pgflow_dashboard to dash_test")
    conn.execute(
        "grant usage on schema dashboard_test to dash_test; grant insert on dashboard_test.calls to dash_test"
    )
    conn.execute("grant execute on function pgflow.cancel_run(uuid, text) to dash_test")
    run_id = start_flow(conn, diamond, {})["run_id"]
    served = dashboard(dsn=make_conninfo(db, user="dash_test"))
    page = served.client().get(f"/runs/{run_id}")
    assert page.status_code == 200, page.text  # the role reads everything the page needs
    assert "Cancel run" in buttons(page.text)
    assert "Pause run" not in buttons(page.text)
    assert served.client().get("/metrics").status_code == 200


def test_action_needs_confirmation_then_runs_and_logs(
    conn: psycopg.Connection, served: Served, diamond: str, caplog: pytest.LogCaptureFixture
) -> None:
    install_stub_actions(conn)
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = served.client()
    token = csrf_of(client.get(f"/runs/{run_id}").text)

    ask = client.post(
        "/actions/cancel", data={"csrf": token, "target": str(run_id), "reason": "<i>bye</i>"}
    )
    assert ask.status_code == 200
    assert "Yes, cancel run" in ask.text
    assert "&lt;i&gt;bye&lt;/i&gt;" in ask.text
    assert calls(conn) == []  # nothing happened yet

    with caplog.at_level(logging.INFO, logger="pgweave.dashboard.actions"):
        done = client.post(
            "/actions/cancel",
            data={"csrf": token, "target": str(run_id), "reason": "<i>bye</i>", "confirmed": "yes"},
        )
    assert done.status_code == 303
    assert done.headers["location"] == f"/runs/{run_id}?done=cancel"
    assert calls(conn) == [("cancel_run", str(run_id), "<i>bye</i>")]
    assert any(
        f"action cancel on {run_id}" in r.getMessage() and "done" in r.getMessage()
        for r in caplog.records
    )
    assert "Cancel run: done." in client.get(done.headers["location"]).text


def test_engine_refusal_is_shown_escaped(
    conn: psycopg.Connection, served: Served, diamond: str
) -> None:
    install_stub_actions(conn)
    run_id = start_flow(conn, diamond, {})["run_id"]
    conn.execute(
        "update pgflow.runs set status = 'failed', failed_at = now() where run_id = %s", (run_id,)
    )
    client = served.client()
    token = csrf_of(client.get(f"/runs/{run_id}").text)
    answer = client.post(
        "/actions/cancel", data={"csrf": token, "target": str(run_id), "confirmed": "yes"}
    )
    assert answer.status_code == 409
    assert f"run {run_id} is not running &lt;b&gt;" in answer.text
    assert calls(conn) == []


@pytest.mark.parametrize(
    ("form", "headers"),
    [
        ({}, {}),  # no token
        ({"csrf": "x" * 43}, {}),  # not the cookie's
        (None, {"origin": "http://evil.example"}),  # right token, foreign origin
    ],
)
def test_csrf_is_required(
    conn: psycopg.Connection,
    served: Served,
    diamond: str,
    form: dict[str, str] | None,
    headers: dict[str, str],
) -> None:
    install_stub_actions(conn)
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = served.client()
    token = csrf_of(client.get(f"/runs/{run_id}").text)
    data = {
        "target": str(run_id),
        "confirmed": "yes",
        **(form if form is not None else {"csrf": token}),
    }
    answer = client.post("/actions/pause", data=data, headers=headers)
    assert answer.status_code == 403
    assert calls(conn) == []


def test_flow_action(conn: psycopg.Connection, served: Served, diamond: str) -> None:
    install_stub_actions(conn)
    client = served.client()
    token = csrf_of(client.get(f"/flows/{diamond}").text)
    done = client.post(
        "/actions/pause_flow", data={"csrf": token, "target": diamond, "confirmed": "yes"}
    )
    assert done.status_code == 303
    assert calls(conn) == [("pause_flow", diamond, None)]


def test_read_only_offers_and_accepts_no_action(
    conn: psycopg.Connection, dashboard: ServeFactory, diamond: str
) -> None:
    install_stub_actions(conn)
    run_id = start_flow(conn, diamond, {})["run_id"]
    served = dashboard(read_only=True)
    client = served.client()
    page = client.get(f"/runs/{run_id}").text
    assert buttons(page) == []
    assert "read-only" in page
    answer = client.post(
        "/actions/pause",
        data={"csrf": csrf_of_cookie(client), "target": str(run_id), "confirmed": "yes"},
    )
    assert answer.status_code == 403
    assert calls(conn) == []


def test_token_is_required_when_set(dashboard: ServeFactory) -> None:
    served = dashboard(token=TOKEN)
    client = served.client()
    denied = client.get("/")
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Basic")
    assert client.get("/metrics").status_code == 401
    assert (
        client.get("/", headers={"authorization": "Bearer wrong-token-0123456789"}).status_code
        == 401
    )
    assert client.get("/", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/", auth=("anyone", TOKEN)).status_code == 200
    assert client.get("/", auth=("anyone", "nope")).status_code == 401


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.com"])
def test_non_loopback_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigError, match="without authentication"):
        DashboardConfig(dsn="dbname=x", host=host)
    assert DashboardConfig(dsn="dbname=x", host=host, token=TOKEN).token == TOKEN


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    assert DashboardConfig(dsn="dbname=x", host=host).token is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        DashboardConfig(dsn="dbname=x", token="short")
    with pytest.raises(ConfigError, match="out of range"):
        DashboardConfig(dsn="dbname=x", port=0)


def test_unknown_action_and_bad_target(conn: psycopg.Connection, served: Served) -> None:
    install_stub_actions(conn)
    client = served.client()
    client.get("/workers")
    token = csrf_of_cookie(client)
    assert client.post("/actions/explode", data={"csrf": token}).status_code == 404
    answer = client.post(
        "/actions/pause", data={"csrf": token, "target": "not-a-uuid", "confirmed": "yes"}
    )
    assert answer.status_code == 400
    assert calls(conn) == []


def test_dashboard_role_reads_but_cannot_write(
    conn: psycopg.Connection, db: str, diamond: str
) -> None:
    conn.execute("create role dash_ro login; grant pgflow_dashboard to dash_ro")
    run_id = start_flow(conn, diamond, {})["run_id"]
    with psycopg.connect(make_conninfo(db, user="dash_ro"), autocommit=True) as dash:
        assert dash.execute("select count(*) from pgmq.q_diamond").fetchone() == (1,)
        assert dash.execute("select count(*) from pgflow.step_tasks").fetchone() == (1,)
        for statement in (
            "update pgflow.runs set status = 'failed'",
            "delete from pgmq.q_diamond",
            "select pgflow.start_flow('diamond', '{}')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                dash.execute(statement)
    assert conn.execute(
        "select status from pgflow.runs where run_id = %s", (run_id,)
    ).fetchone() == ("started",)
