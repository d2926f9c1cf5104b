"""The database server of a benchmark run: a durable throwaway cluster or a given DSN.

Besides databases it measures the server: its CPU time (the postmaster and its children,
read from /proc; only for a local cluster), WAL position, and pgbench's tpcb-like TPS.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.flows import FLOWS
from pgweave.compile import compile_statements
from pgweave.embedded import EmbeddedPostgres, find_bindir
from pgweave.install import apply_migrations, install_pgmq

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SETTINGS = {
    # pg_stat_statements is only switched on (track = all) for the profile pass.
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "none",
    "pg_stat_statements.max": "2000",
    "track_functions": "none",
}


@dataclass
class Server:
    """Where the benchmark databases live."""

    base_dsn: str
    cluster: EmbeddedPostgres | None = None
    template: str = "bench_template"
    has_pgss: bool = False
    _dbs: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, dsn: str | None) -> Server:
        """Connect to ``dsn``, or start a durable throwaway cluster (fsync, synchronous_commit on)."""
        if dsn:
            return cls(dsn)
        cluster = EmbeddedPostgres(durable=True, settings=dict(SETTINGS))
        cluster.start()
        return cls(cluster.dsn("postgres"), cluster)

    def stop(self) -> None:
        """Drop what the run created; stop the throwaway cluster."""
        if self.cluster is not None:
            self.cluster.stop()
            return
        for name in [*self._dbs, self.template, "bench_pgbench"]:
            self.drop_database(name)

    def dsn(self, dbname: str) -> str:
        """DSN of one database of this server."""
        return make_conninfo(self.base_dsn, dbname=dbname)

    def params(self, dbname: str) -> dict[str, Any]:
        """Connection parameters (host, port, user, dbname) for non-libpq clients."""
        params = conninfo_to_dict(self.dsn(dbname))
        return {
            "host": str(params.get("host") or "localhost"),
            "port": int(str(params.get("port") or 5432)),
            "user": str(params.get("user") or os.environ.get("USER", "postgres")),
            "dbname": dbname,
        }

    def admin(self) -> psycopg.Connection:
        """An autocommit connection to the base database."""
        return psycopg.connect(self.base_dsn, autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (from a template)."""
        with self.admin() as conn:
            clause = f" template {template}" if template else ""
            conn.execute(f"create database {name}{clause}")
        self._dbs.append(name)
        return name

    def discard_database(self, name: str) -> None:
        """A case's database is no longer needed: dropped now on a given server, left to
        the throwaway cluster's removal otherwise (DROP DATABASE costs a checkpoint)."""
        if self.cluster is None:
            self.drop_database(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its users."""
        with self.admin() as conn:
            conn.execute(f"drop database if exists {name} with (force)")

    def prepare_template(self, name: str | None = None, migrations: Path | None = None) -> None:
        """The template every case starts from: pgmq, the migrations (by default the
        generated ones; another directory for an older engine) and the bench flows."""
        name = name or self.template
        self.drop_database(name)
        self.create_database(name)
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            install_pgmq(conn)
            apply_migrations(conn, migrations)
            try:
                conn.execute("create extension if not exists pg_stat_statements")
                self.has_pgss = (
                    conn.execute(
                        "select count(*) from pg_settings where name = 'shared_preload_libraries'"
                        " and setting like '%%pg_stat_statements%%'"
                    ).fetchone()
                    or (0,)
                )[0] == 1
            except psycopg.Error:
                self.has_pgss = False
            for flow in FLOWS.values():
                for statement in compile_statements(flow):
                    conn.execute(statement)
        with self.admin() as conn:
            conn.execute("checkpoint")

    def case_database(self, template: str | None = None) -> str:
        """A fresh database for one case, cloned from the template (or another one)."""
        return self.create_database(
            f"bench_{uuid.uuid4().hex[:10]}", template=template or self.template
        )

    def set_profiling(self, on: bool) -> None:
        """Switch pg_stat_statements (track = all) and track_functions on or off."""
        if not self.has_pgss:
            return
        with self.admin() as conn:
            conn.execute(f"alter system set pg_stat_statements.track = '{'all' if on else 'none'}'")
            conn.execute(f"alter system set track_functions = '{'all' if on else 'none'}'")
            conn.execute("select pg_reload_conf()")

    # -- measurements -----------------------------------------------------------------------

    def postmaster_pid(self) -> int | None:
        """The server's postmaster pid when it runs on this machine and we can see it."""
        if self.cluster is None or self.cluster.base is None:
            return None
        pid_file = self.cluster.data_dir / "postmaster.pid"
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cpu_seconds(self) -> float | None:
        """CPU time of the server so far: postmaster (with its reaped children) + live children."""
        root = self.postmaster_pid()
        if root is None:
            return None
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            pid = int(stat.parent.name)
            fields = text[text.rindex(")") + 2 :].split()
            ppid = int(fields[1])
            utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
            if pid == root:
                total += utime + stime + cutime + cstime
            elif ppid == root:
                total += utime + stime
        return total / CLOCK_TICKS

    def wal_lsn(self, conn: psycopg.Connection) -> str:
        """The current WAL insert position."""
        row = conn.execute("select pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def wal_bytes_since(self, conn: psycopg.Connection, lsn: str) -> int:
        """WAL bytes written since ``lsn`` (from :meth:`wal_lsn`)."""
        row = conn.execute("select pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,)).fetchone()
        return int(row[0]) if row else 0

    def server_info(self) -> dict[str, Any]:
        """Version and the settings that matter for the figures."""
        with self.admin() as conn:
            version = conn.execute("select version()").fetchone()
            settings = conn.execute(
                "select name, setting from pg_settings where name = any(%s)",
                (
                    [
                        "fsync",
                        "synchronous_commit",
                        "full_page_writes",
                        "wal_sync_method",
                        "shared_buffers",
                        "max_connections",
                        "shared_preload_libraries",
                    ],
                ),
            ).fetchall()
        return {
            "version": version[0] if version else None,
            "settings": dict(settings),
            "embedded": self.cluster is not None,
        }


def pg_binary(name: str) -> str:
    """Path of a PostgreSQL client program (pgbench) next to the server binaries."""
    try:
        return str(find_bindir() / name)
    except Exception:
        return name


def pgbench_init(server: Server, scale: int) -> str:
    """Create and fill the pgbench database; returns its name."""
    server.drop_database("bench_pgbench")
    name = server.create_database("bench_pgbench")
    subprocess.run(
        [pg_binary("pgbench"), "-i", "-q", "-s", str(scale), server.dsn(name)],
        check=True,
        capture_output=True,
        text=True,
    )
    return name


TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


def pgbench_tps(server: Server, dbname: str, clients: int, seconds: int) -> float:
    """pgbench's built-in tpcb-like script with ``clients`` clients for ``seconds``."""
    result = subprocess.run(
        [
            pg_binary("pgbench"),
            "-n",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(seconds),
            server.dsn(dbname),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    match = TPS.search(result.stdout)
    if match is None:
        raise RuntimeError(f"unexpected pgbench output:\n{result.stdout}{result.stderr}")
    return float(match.group(1))
