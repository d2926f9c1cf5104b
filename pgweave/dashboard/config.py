"""The dashboard's settings and the safety rules they must satisfy before it serves."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


class ConfigError(ValueError):
    """Settings the dashboard refuses to run with."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class DashboardConfig:
    """How the dashboard connects, binds and what it allows."""

    dsn: str
    host: str = "127.0.0.1"
    port: int = 8080
    read_only: bool = False
    token: str | None = None

    def __post_init__(self) -> None:
        if not self.dsn:
            raise ConfigError("a DSN is required (--dsn or $PGWEAVE_DSN)")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} is out of range 1-65535")
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("the token must be at least 16 characters long")
        if not is_loopback(self.host) and self.token is None:
            raise ConfigError(
                f"refusing to serve on {self.host}, which is not a loopback address, without"
                " authentication: set --token (or $PGWEAVE_DASHBOARD_TOKEN)"
            )
