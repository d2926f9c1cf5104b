"""A real dashboard server (uvicorn in a thread, on a free loopback port) over the test's
fresh engine database (as its owner, or as a login granted the spec's roles), and a diamond
flow to look at."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
import uvicorn
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgweave.dashboard.app import create_app
from pgweave.dashboard.config import DashboardConfig
from tests.engine.helpers import add_step, create_flow

TOKEN = "test-token-0123456789abcdef"


@dataclass
class Served:
    """A running dashboard: its base URL and its config."""

    url: str
    config: DashboardConfig

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTP client for it (cookies kept, redirects not followed)."""
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)  # type: ignore[arg-type]


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(config: DashboardConfig) -> Iterator[Served]:
    """Run the dashboard for ``config`` until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config), host=config.host, port=config.port, log_level="warning",
            timeout_graceful_shutdown=1, lifespan="on",
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the dashboard server did not start"
        assert time.monotonic() < deadline, "the dashboard server took too long to start"
        time.sleep(0.02)
    try:
        yield Served(f"http://{config.host}:{config.port}", config)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


ServeFactory = Callable[..., Served]


@pytest.fixture
def dashboard(db: str) -> Iterator[ServeFactory]:
    """Start dashboards on the test database: ``dashboard(read_only=True, token=…)``."""
    with contextlib.ExitStack() as stack:

        def start(**options: object) -> Served:
            options.setdefault("dsn", db)
            config = DashboardConfig(port=free_port(), **options)  # type: ignore[arg-type]
            return stack.enter_context(serve(config))

        yield start


@pytest.fixture
def served(dashboard: ServeFactory) -> Served:
    """A dashboard with default settings (actions on, no token)."""
    return dashboard()


@pytest.fixture
def diamond(conn: psycopg.Connection) -> str:
    """Flow ``diamond``: root -> (left, each[map over root]) -> join."""
    create_flow(conn, "diamond", max_attempts=2)
    add_step(conn, "diamond", "root")
    add_step(conn, "diamond", "left", ["root"])
    add_step(conn, "diamond", "each", ["root"], step_type="map")
    add_step(conn, "diamond", "join", ["left", "each"])
    return "diamond"


RoleFactory = Callable[..., Served]


@pytest.fixture
def as_role(conn: psycopg.Connection, dashboard: ServeFactory, db: str) -> RoleFactory:
    """Start a dashboard that logs in as a new role granted ``roles``:
    ``as_role("pgflow_dashboard", read_only=True)``."""

    def start(*roles: str, **options: object) -> Served:
        name = f"dash_login_{uuid.uuid4().hex[:12]}"  # roles are cluster-wide
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        for role in roles:
            conn.execute(
                sql.SQL("grant {} to {}").format(sql.Identifier(role), sql.Identifier(name))
            )
        return dashboard(dsn=make_conninfo(db, user=name), **options)

    return start
