"""The embedded throwaway cluster: starts as root (via the postgres user) and as a normal user."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import psycopg
import pytest

from pgweave.embedded import EmbeddedPostgres, find_bindir


def test_bindir_has_server_binaries() -> None:
    bindir = find_bindir()
    assert (bindir / "initdb").exists()
    assert (bindir / "pg_ctl").exists()


def test_cluster_starts_serves_and_is_removed() -> None:
    cluster = EmbeddedPostgres()
    with cluster:
        base = cluster.base
        assert base is not None
        with psycopg.connect(cluster.dsn()) as conn:
            assert conn.execute("select 1 + 1").fetchone() == (2,)
            assert conn.execute("show fsync").fetchone() == ("off",)
    assert not base.exists()


def test_durable_cluster_keeps_fsync_on() -> None:
    with EmbeddedPostgres(durable=True) as cluster, psycopg.connect(cluster.dsn()) as conn:
        assert conn.execute("show fsync").fetchone() == ("on",)
        assert conn.execute("show synchronous_commit").fetchone() == ("on",)


def test_cluster_is_removed_when_the_body_fails() -> None:
    cluster = EmbeddedPostgres()
    seen: list[Path] = []

    def fail_inside() -> None:
        with cluster:
            assert cluster.base is not None
            seen.append(cluster.base)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert len(seen) == 1
    assert not seen[0].exists()
    assert cluster.base is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to exercise the run-as-postgres path")
def test_as_root_the_cluster_runs_as_the_postgres_user() -> None:
    with EmbeddedPostgres() as cluster:
        assert cluster.run_as == "postgres"
        assert cluster.base is not None
        assert cluster.data_dir.owner() == "postgres"


def _probe_as_normal_user() -> tuple[str, int, str]:
    """Start a cluster from a forked child that dropped root (or as ourselves when not root).

    The interpreter may live where an unprivileged user cannot exec it (e.g. under /root), so
    the child forks from this already-running interpreter and then drops its privileges.
    """
    if os.geteuid() != 0:
        with EmbeddedPostgres() as cluster, psycopg.connect(cluster.dsn()) as conn:
            row = conn.execute("select current_user").fetchone()
            assert row is not None
            return str(row[0]), os.geteuid(), str(cluster.base)
    user = pwd.getpwnam("postgres")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_end)
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            os.environ["HOME"] = "/tmp"
            with EmbeddedPostgres() as cluster, psycopg.connect(cluster.dsn()) as conn:
                row = conn.execute("select current_user").fetchone()
                os.write(
                    write_end,
                    json.dumps([row[0] if row else None, os.geteuid(), str(cluster.base)]).encode(),
                )
            code = 0
        except BaseException as exc:
            os.write(write_end, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(output)
    assert os.waitstatus_to_exitcode(status) == 0, result
    return str(result[0]), int(result[1]), str(result[2])


def test_fixture_path_works_as_a_normal_user() -> None:
    user, euid, base = _probe_as_normal_user()
    assert user == "postgres"
    assert euid != 0
    assert not Path(base).exists()
