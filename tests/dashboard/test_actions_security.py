"""The actions' safety (CSRF, read-only mode, unknown actions), authentication, the safety
rules of the settings and what the dashboard's role may not do."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgweave.dashboard.config import ConfigError, DashboardConfig
from tests.dashboard.conftest import TOKEN, RoleFactory, Served, ServeFactory
from tests.dashboard.test_actions import DASHBOARD, buttons, csrf_of
from tests.engine.helpers import run_row, start_flow


def csrf_of_cookie(client: httpx.Client) -> str:
    """The CSRF cookie the dashboard gave this client."""
    return str(client.cookies["pgweave_csrf"])


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
    assert run_row(conn, run_id)["paused_at"] is None


def test_read_only_offers_and_accepts_no_action(
    conn: psycopg.Connection, as_role: RoleFactory, diamond: str
) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    client = as_role(DASHBOARD, read_only=True).client()  # a role that may act, read-only
    page = client.get(f"/runs/{run_id}").text
    assert buttons(page) == []
    assert "read-only" in page
    answer = client.post(
        "/actions/pause",
        data={"csrf": csrf_of_cookie(client), "target": str(run_id), "confirmed": "yes"},
    )
    assert answer.status_code == 403
    assert run_row(conn, run_id)["paused_at"] is None


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


def test_unknown_action_and_bad_target(served: Served) -> None:
    client = served.client()
    client.get("/workers")
    token = csrf_of_cookie(client)
    assert client.post("/actions/explode", data={"csrf": token}).status_code == 404
    answer = client.post(
        "/actions/pause", data={"csrf": token, "target": "not-a-uuid", "confirmed": "yes"}
    )
    assert answer.status_code == 400


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
