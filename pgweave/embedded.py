"""A throwaway PostgreSQL cluster (initdb + pg_ctl) for tests, demos and benchmarks.

When the current user is root, the cluster is created and run as the ``postgres`` system
user, because initdb and postgres refuse to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


class EmbeddedPostgresError(RuntimeError):
    """The throwaway cluster could not be created or started."""


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl: $PGWEAVE_PG_BINDIR, `pg_config --bindir`, or Debian's."""
    candidates: list[str] = []
    if os.environ.get("PGWEAVE_PG_BINDIR"):
        candidates.append(os.environ["PGWEAVE_PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            candidates.append(result.stdout.strip())
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(debian)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found (looked at $PGWEAVE_PG_BINDIR, `pg_config --bindir` "
        "and /usr/lib/postgresql/*/bin); install the server, e.g. `apt-get install postgresql`"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in a temporary directory, removed again by ``stop``."""

    durable: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    run_as: str | None = None
    bindir: Path = field(default_factory=find_bindir)
    port: int = field(default_factory=_free_port)
    base: Path | None = None

    def __post_init__(self) -> None:
        if self.run_as is None and os.geteuid() == 0:
            self.run_as = "postgres"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        assert self.base is not None, "cluster not created"
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory of the cluster's Unix socket."""
        assert self.base is not None, "cluster not created"
        return self.base

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string for one database of the cluster (superuser postgres)."""
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def start(self) -> EmbeddedPostgres:
        """initdb a fresh cluster and start it; waits until it accepts connections."""
        self.base = Path(tempfile.mkdtemp(prefix="pgweave-pg-"))
        try:
            if self.run_as is not None:
                shutil.chown(self.base, user=self.run_as, group=None)
            self._run(
                str(self.bindir / "initdb"),
                "-D", str(self.data_dir),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )  # fmt: skip
            options = {
                **(DURABLE_SETTINGS if self.durable else FAST_SETTINGS),
                "listen_addresses": "127.0.0.1",
                "unix_socket_directories": str(self.socket_dir),
                "port": str(self.port),
                "max_connections": "200",
                **self.settings,
            }
            self._configure(options)
            self.restart()
        except BaseException:
            self.stop()
            raise
        return self

    def _configure(self, options: dict[str, str]) -> None:
        """Append settings to postgresql.auto.conf (later lines win)."""
        with (self.data_dir / "postgresql.auto.conf").open("a", encoding="utf-8") as conf:
            for key, value in options.items():
                conf.write(f"{key} = '{value}'\n")

    def restart(self) -> None:
        """Start the server on the existing data directory (first start, or after :meth:`crash`)."""
        assert self.base is not None, "cluster not created"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data_dir),
            "-l", str(self.base / "server.log"),
            "-w", "-t", "60",
            "start",
        )  # fmt: skip

    def crash(self) -> None:
        """Stop the server like a crash (``pg_ctl stop -m immediate``), keeping its data."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"
        )

    def promote(self) -> None:
        """Promote this standby to a primary; returns once it accepts writes."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60", "promote"
        )

    def start_standby(self, name: str = "standby") -> EmbeddedPostgres:
        """A streaming standby of this running cluster (``pg_basebackup`` over loopback),
        started and connecting as ``application_name=name``; stop it like any cluster.

        To make replication synchronous, set ``synchronous_standby_names`` to ``name`` on
        this primary afterwards: the standby copies the primary's settings, and a promoted
        standby must not wait for a standby of its own.
        """
        standby = EmbeddedPostgres(run_as=self.run_as, bindir=self.bindir)
        standby.base = Path(tempfile.mkdtemp(prefix="pgweave-pg-standby-"))
        try:
            if standby.run_as is not None:
                shutil.chown(standby.base, user=standby.run_as, group=None)
            source = f"host=127.0.0.1 port={self.port} user=postgres"
            standby._run(
                str(self.bindir / "pg_basebackup"),
                "-d", source,
                "-D", str(standby.data_dir),
                "-X", "stream",
                "--checkpoint=fast",
                "--no-sync",
            )  # fmt: skip
            signal = standby.data_dir / "standby.signal"
            signal.touch()
            if standby.run_as is not None:
                shutil.chown(signal, user=standby.run_as, group=None)
            standby._configure(
                {
                    "port": str(standby.port),
                    "unix_socket_directories": str(standby.socket_dir),
                    "primary_conninfo": f"{source} application_name={name}",
                    "synchronous_standby_names": "",
                }
            )
            standby.restart()
        except BaseException:
            standby.stop()
            raise
        return standby

    def log(self) -> str:
        """The server log so far (for error reports)."""
        path = (self.base or Path("/nonexistent")) / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server (immediately) and delete the cluster's directory."""
        if self.base is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                )
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
