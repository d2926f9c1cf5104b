"""Running the cases: driver processes, timing, WAL/CPU accounting, profile, anchors."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg.types.json import Jsonb

from bench import PROJECT_ROOT
from bench.cluster import Server
from bench.workloads import Workload
from pgweave.client import Client

DRIVERS = ("worker", "raw-task", "raw-batch")
PEER_VENV = PROJECT_ROOT / "bench" / ".venv-peer"
PEER_REQUIREMENTS = ["pgqueuer==1.6.0", "asyncpg==0.32.0"]


class BenchError(RuntimeError):
    """The benchmark could not run (a driver died, a case timed out)."""


@dataclass
class Options:
    """What a run measures and how."""

    ks: Sequence[int]
    drivers: Sequence[str]
    batch: int = 50
    task_batch: int = 10
    case_timeout: float = 600.0
    poll_seconds: int = 2
    hold_seconds: float = 3.0
    checkpoint: bool = True
    """CHECKPOINT before each case, so every case pays its own full-page writes."""
    logs: Path = PROJECT_ROOT / "bench" / "out" / "logs"


@dataclass
class CaseResult:
    """One workload x driver x K."""

    workload: str
    driver: str
    k: int
    runs: int
    tasks: int
    seconds: float
    tasks_per_s: float
    start_s: float
    wal_bytes: int
    wal_fpi: int | None
    server_cpu_s: float | None
    worker_cpu_s: float
    worker_maxrss_mb: float
    round_trips: int
    problems: list[str]
    start_path: str = "start_flows"
    """How the runs were started: start_flows (one call), or start_flow per run."""
    violation_call_ms: list[float] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    samples: list[float] = field(default_factory=list)
    """Start-to-finish tasks/s of every repetition (--repeat); this result is their median."""
    drain_samples: list[float] = field(default_factory=list)
    """Drain-only tasks/s of every repetition."""

    @property
    def start_to_finish_s(self) -> float:
        """Seconds from the start of the runs to the last task: start + drain."""
        return self.start_s + self.seconds

    @property
    def start_to_finish_per_s(self) -> float:
        """The headline figure: tasks / (start + drain)."""
        return self.tasks / self.start_to_finish_s

    @property
    def verified(self) -> bool:
        """No verification problem."""
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """The case as a JSON object, with per-task figures."""
        data = asdict(self)
        data["verified"] = self.verified
        data["start_to_finish_s"] = self.start_to_finish_s
        data["start_to_finish_per_s"] = self.start_to_finish_per_s
        data["wal_bytes_per_task"] = self.wal_bytes / self.tasks if self.tasks else None
        data["server_cpu_ms_per_task"] = (
            1000 * self.server_cpu_s / self.tasks if self.server_cpu_s is not None else None
        )
        data["worker_cpu_ms_per_task"] = 1000 * self.worker_cpu_s / self.tasks
        return data


class Driver:
    """K driver processes of one kind (see bench.procs, or the PgQueuer peer)."""

    def __init__(
        self,
        commands: list[list[str]],
        log_dir: Path,
        name: str,
        env_extra: dict[str, str] | None = None,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[IO[str]] = []
        self.log_paths: list[Path] = []
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
        for index, command in enumerate(commands):
            self.log_paths.append(log_dir / f"{name}-{index}.log")
            log = self.log_paths[-1].open("w")
            self.logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    command,
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            )

    @property
    def pids(self) -> list[int]:
        """The processes' ids."""
        return [p.pid for p in self.procs]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every process printed ``ready``."""
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            assert proc.stdout is not None
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([proc.stdout], [], [], max(remaining, 0))
            line = proc.stdout.readline() if readable else ""
            if line.strip() != "ready":
                self.kill()
                raise BenchError(f"driver process did not become ready (got {line!r}); see logs")

    def go(self) -> None:
        """Release every process."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def alive(self) -> bool:
        """Whether every process still runs."""
        return all(p.poll() is None for p in self.procs)

    def stop(self, timeout: float = 60.0, *, signal_them: bool = True) -> list[dict[str, Any]]:
        """SIGTERM every process, wait, and collect each one's statistics line."""
        if signal_them:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        stats = []
        for proc, log_path in zip(self.procs, self.log_paths, strict=True):
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            lines = [line for line in (out or "").splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                stats.append({"error": f"exit {proc.returncode}{_last_error(log_path)}"})
            else:
                stats.append(json.loads(lines[-1]))
        for log in self.logs:
            log.close()
        return stats

    def kill(self) -> None:
        """Kill every process still running (our own children only)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


def driver_commands(mode: str, dsn: str, flow: str, k: int, options: Options) -> list[list[str]]:
    """The command lines of K driver processes."""
    batch = options.task_batch if mode == "raw-task" else options.batch
    base = [sys.executable, "-m", "bench.procs", mode, "--dsn", dsn, "--flow", flow]
    base += ["--batch", str(batch), "--concurrency", str(batch)]
    base += ["--poll-seconds", str(options.poll_seconds)]
    return [list(base) for _ in range(k)]


def _wal_fpi(conn: psycopg.Connection) -> int | None:
    row = conn.execute("select wal_fpi from pg_stat_wal").fetchone()
    return int(row[0]) if row else None


def _wait_backends_gone(conn: psycopg.Connection, timeout: float = 10.0) -> None:
    """Wait until the drivers' backends exited (so their statistics are flushed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "select count(*) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
        ).fetchone()
        if row and row[0] == 0:
            return
        time.sleep(0.05)


def collect_profile(conn: psycopg.Connection, tasks: int) -> dict[str, Any]:
    """pg_stat_user_functions and pg_stat_statements of the case database."""
    functions = conn.execute(
        "select schemaname || '.' || funcname, calls, total_time, self_time"
        " from pg_stat_user_functions order by self_time desc"
    ).fetchall()
    total_self = sum(float(f[3]) for f in functions) or 1.0
    statements = conn.execute(
        "select query, calls, total_exec_time, mean_exec_time, rows, wal_bytes, toplevel"
        " from pg_stat_statements"
        " where dbid = (select oid from pg_database where datname = current_database())"
        " and query not like '%%pg_stat_%%' and query not like 'select not exists%%'"
        " and query not like 'select exists%%'"
        " order by total_exec_time desc limit 25"
    ).fetchall()
    return {
        "functions": [
            {
                "function": name,
                "calls": int(calls),
                "total_ms": float(total),
                "self_ms": float(self_ms),
                "mean_ms": float(total) / calls if calls else None,
                "self_share": float(self_ms) / total_self,
                "calls_per_task": calls / tasks if tasks else None,
            }
            for name, calls, total, self_ms in functions
        ],
        "statements": [
            {
                "query": " ".join(str(query).split())[:300],
                "calls": int(calls),
                "total_ms": float(total),
                "mean_ms": float(mean),
                "rows": int(rows),
                "wal_bytes": int(wal),
                "toplevel": bool(top),
            }
            for query, calls, total, mean, rows, wal, top in statements
        ],
    }


def _debug(name: str, t0: float, what: str) -> None:
    if os.environ.get("BENCH_DEBUG"):
        print(f"    [{name}] {what}: {time.perf_counter() - t0:.2f} s", file=sys.stderr)


def _last_error(log_path: Path) -> str:
    """The last line a failed driver wrote to its log (its exception), as ``: <line>``."""
    with contextlib.suppress(OSError):
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        if lines:
            return f": {lines[-1].strip()[:500]}"
    return ""


def run_case(
    server: Server,
    workload: Workload,
    driver: str,
    k: int,
    options: Options,
    *,
    profile: bool = False,
    shared_db: str | None = None,
    per_run_start: bool = False,
    template: str | None = None,
) -> CaseResult:
    """Start the workload's runs (timed: start_flows, or start_flow per run with
    ``per_run_start``), release K drivers, time until done (the drain), verify.

    Each case gets a fresh database (from ``template`` if given), unless ``shared_db`` is
    given (quick mode: the workloads' flows differ, so they can share one)."""
    name = f"{workload.key}-{driver}-k{k}{'-profile' if profile else ''}"
    tc = time.perf_counter()
    db = shared_db or server.case_database(template)
    dsn = server.dsn(db)
    _debug(name, tc, "database created")
    try:
        with psycopg.connect(dsn, autocommit=True) as mon:
            procs = Driver(
                driver_commands(driver, dsn, workload.flow, k, options), options.logs, name
            )
            start_s = workload.start(mon, per_run=per_run_start)
            _debug(name, tc, "runs started")
            if options.checkpoint:
                with contextlib.suppress(psycopg.Error):
                    mon.execute("checkpoint")
                _debug(name, tc, "checkpoint")
            try:
                procs.wait_ready()
                _debug(name, tc, "drivers ready")
                if profile:
                    server.set_profiling(True)
                    mon.execute("select pg_stat_reset()")
                    mon.execute(
                        "select pg_stat_statements_reset(0,"
                        " (select oid from pg_database where datname = current_database()), 0)"
                    )
                lsn0 = server.wal_lsn(mon)
                fpi0 = _wal_fpi(mon)
                cpu0 = server.cpu_seconds()
                t0 = time.perf_counter()
                procs.go()
                deadline = t0 + options.case_timeout
                while not workload.done(mon):
                    if not procs.alive():
                        raise BenchError(f"{name}: a driver process died; see {options.logs}")
                    if time.perf_counter() > deadline:
                        raise BenchError(f"{name}: not done within {options.case_timeout} s")
                    time.sleep(0.01)
                seconds = time.perf_counter() - t0
                cpu1 = server.cpu_seconds()
                wal_bytes = server.wal_bytes_since(mon, lsn0)
            except BaseException:
                procs.kill()
                raise
            _debug(name, tc, "done")
            stats = procs.stop()
            _debug(name, tc, "drivers stopped")
            errors = [s["error"] for s in stats if "error" in s]
            _wait_backends_gone(mon)
            fpi1 = _wal_fpi(mon)
            problems = workload.verify(mon) + [f"driver: {e}" for e in errors]
            _debug(name, tc, "verified")
            profile_data = None
            if profile:
                profile_data = collect_profile(mon, workload.tasks)
                server.set_profiling(False)
    finally:
        if shared_db is None:
            server.discard_database(db)
    tasks = workload.tasks
    return CaseResult(
        workload=workload.key,
        driver=driver,
        k=k,
        runs=workload.runs,
        tasks=tasks,
        seconds=seconds,
        tasks_per_s=tasks / seconds,
        start_s=start_s,
        wal_bytes=wal_bytes,
        wal_fpi=(fpi1 - fpi0) if fpi0 is not None and fpi1 is not None else None,
        server_cpu_s=(cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
        worker_cpu_s=sum(float(s.get("cpu_s", 0.0)) for s in stats),
        worker_maxrss_mb=max(float(s.get("maxrss_kb", 0)) for s in stats) / 1024,
        round_trips=sum(int(s.get("round_trips", 0)) for s in stats),
        problems=problems,
        start_path="start_flow per run" if per_run_start else "start_flows",
        violation_call_ms=[1000 * v for s in stats for v in s.get("violation_calls_s", [])],
        profile=profile_data,
    )


# -- engine timings -----------------------------------------------------------------------


def time_start_flow(
    server: Server, elements: int, repeats: int, template: str | None = None
) -> dict[str, Any]:
    """Seconds of start_flow alone for a root map of ``elements`` (autocommit, each repeat)."""
    db = server.case_database(template)
    try:
        with psycopg.connect(server.dsn(db), autocommit=True) as conn:
            flow_input = Jsonb(list(range(elements)))
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                conn.execute(
                    "select count(*) from pgflow.start_flow('bench_w3', %s)", (flow_input,)
                )
                times.append(time.perf_counter() - t0)
            row = conn.execute("select count(*) from pgflow.step_tasks").fetchone()
            problems = [] if row and row[0] == elements * repeats else [f"{row} tasks"]
    finally:
        server.discard_database(db)
    return {
        "elements": elements,
        "seconds": times,
        "median_ms": 1000 * statistics.median(times),
        "problems": problems,
    }


def time_type_violation(
    server: Server, elements: int, repeats: int, template: str | None = None
) -> dict[str, Any]:
    """W5's engine figure: complete_task of the violating task in a run of ``elements``
    queued map tasks, until the run is failed and every message archived (one call)."""
    db = server.case_database(template)
    times: list[float] = []
    problems: list[str] = []
    worker = uuid.uuid4()
    try:
        with psycopg.connect(server.dsn(db), autocommit=True) as conn:
            conn.execute("select pgflow.register_worker(%s, 'bench_w5', 'bench')", (worker,))
            for _ in range(repeats):
                row = conn.execute(
                    "select run_id from pgflow.start_flow('bench_w5', %s)",
                    (Jsonb(list(range(elements))),),
                ).fetchone()
                assert row is not None
                run_id = row[0]
                conn.execute("checkpoint")
                ids = [
                    r[0]
                    for r in conn.execute(
                        "select msg_id from pgmq.read_with_poll('bench_w5', 30, 1, 1, 50)"
                    ).fetchall()
                ]
                started = conn.execute(
                    "select step_slug from pgflow.start_tasks('bench_w5', %s, %s)", (ids, worker)
                ).fetchall()
                if [s[0] for s in started] != ["bad"]:
                    problems.append(f"first message is not 'bad': {started}")
                    continue
                t0 = time.perf_counter()
                conn.execute(
                    "select count(*) from pgflow.complete_task(%s, 'bad', 0, %s)",
                    (run_id, Jsonb({"not": "an array"})),
                )
                times.append(time.perf_counter() - t0)
                check = conn.execute(
                    "select r.status, (select count(*) from pgmq.q_bench_w5),"
                    " (select count(*) from pgflow.step_tasks t where t.run_id = r.run_id"
                    "  and t.status = 'cancelled')"
                    " from pgflow.runs r where r.run_id = %s",
                    (run_id,),
                ).fetchone()
                if check != ("failed", 0, elements):
                    problems.append(f"after the violation: {check}")
    finally:
        server.discard_database(db)
    return {
        "elements": elements,
        "seconds": times,
        "median_ms": 1000 * statistics.median(times) if times else None,
        "problems": problems,
    }


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


LATENCY_TIMES = (
    "select extract(epoch from min(t.started_at) - r.started_at),"
    " extract(epoch from r.completed_at - r.started_at)"
    " from pgflow.step_tasks t join pgflow.runs r using (run_id)"
    " where r.run_id = %s group by r.started_at, r.completed_at"
)


def measure_latency(server: Server, runs: int, options: Options) -> dict[str, Any]:
    """W6: one real worker (pgflow's default polling), runs started one at a time: first with
    the event-driven client (``Client.start_flow`` over its kept connections, + ``wait``),
    then as many with ``pgflow.start_flow`` over one kept connection (run end seen on
    ``pgweave:events``; apart, as the client's new backends load the machine). Start -> first task started and -> run completed from the database's
    timestamps (``runs.started_at`` is the start's transaction start); the client's run
    completed also on its own clock, as before."""
    db = server.case_database()
    dsn = server.dsn(db)
    series: dict[str, dict[str, list[float]]] = {
        name: {"first": [], "completed": [], "waited": []} for name in ("client", "kept")
    }
    problems: list[str] = []
    latency_options = Options(
        ks=[1], drivers=["worker"], batch=10, logs=options.logs, poll_seconds=options.poll_seconds
    )
    procs = Driver(
        driver_commands("worker", dsn, "bench_w6", 1, latency_options), options.logs, "W6"
    )
    try:
        procs.wait_ready()
        procs.go()
        with (
            Client(dsn) as client,
            psycopg.connect(dsn, autocommit=True) as conn,
            psycopg.connect(dsn, autocommit=True) as events,
        ):
            events.execute('listen "pgweave:events"')
            for name, i in [(name, i) for name in ("client", "kept") for i in range(runs)]:
                t0 = time.perf_counter()
                if name == "kept":
                    row = conn.execute(
                        "select run_id from pgflow.start_flow('bench_w6', %s)", (Jsonb({"n": i}),)
                    ).fetchone()
                    assert row is not None
                    run_id, status = row[0], _wait_run_end(events, row[0], 30.0)
                else:
                    run = client.start_flow("bench_w6", {"n": i})
                    state = run.wait(timeout=30)
                    run_id, status = run.run_id, state.status
                    if state.output != {"second": i + 1}:
                        problems.append(f"run {i}: output {state.output!r}")
                series[name]["waited"].append(time.perf_counter() - t0)
                if status != "completed":
                    problems.append(f"run {i} ({name}): {status}")
                times = conn.execute(LATENCY_TIMES, (run_id,)).fetchone()
                if times and times[0] is not None and times[1] is not None:
                    series[name]["first"].append(float(times[0]))
                    series[name]["completed"].append(float(times[1]))
                time.sleep(0.02)
    finally:
        procs.stop()
        server.discard_database(db)

    def summary(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"p50_ms": None, "p99_ms": None}
        return {
            "p50_ms": 1000 * _percentile(values, 0.5),
            "p99_ms": 1000 * _percentile(values, 0.99),
            "max_ms": 1000 * max(values),
        }

    client_series, kept = series["client"], series["kept"]
    return {
        "runs": runs,
        "first_task_started": summary(client_series["first"]),
        "run_completed": summary(client_series["waited"]),
        "run_completed_db": summary(client_series["completed"]),
        "kept_connection": {
            "first_task_started": summary(kept["first"]),
            "run_completed_db": summary(kept["completed"]),
        },
        "problems": problems,
    }


def _wait_run_end(events: psycopg.Connection, run_id: uuid.UUID, timeout: float) -> str:
    """The status the run ends with, from the brief events on ``events`` ("timeout" if none)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        for notify in events.notifies(timeout=remaining, stop_after=1):
            event = json.loads(notify.payload)
            if event.get("run_id") == str(run_id) and event["event"] in (
                "run:completed",
                "run:failed",
            ):
                return str(event["event"]).removeprefix("run:")
    return "timeout"


def _vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure_memory(server: Server, inflight: int, options: Options) -> dict[str, Any]:
    """Resident memory of one real worker process holding ``inflight`` tasks at once."""
    db = server.case_database()
    dsn = server.dsn(db)
    mem_options = Options(
        ks=[1],
        drivers=["worker"],
        batch=inflight,
        logs=options.logs,
        poll_seconds=options.poll_seconds,
    )
    commands = driver_commands("worker", dsn, "bench_mem", 1, mem_options)
    commands[0][commands[0].index("--batch") + 1] = "100"
    procs = Driver(
        commands, options.logs, "memory", {"BENCH_HOLD_SECONDS": str(options.hold_seconds)}
    )
    rss_at_peak = 0
    peak_inflight = 0
    problems: list[str] = []
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "select count(*) from pgflow.start_flow('bench_mem', %s)",
                (Jsonb(list(range(inflight))),),
            )
            procs.wait_ready()
            baseline = _vm_rss_kb(procs.pids[0])
            procs.go()
            deadline = time.monotonic() + 60 + options.hold_seconds
            while time.monotonic() < deadline:
                row = conn.execute(
                    "select count(*) filter (where status = 'started'),"
                    " count(*) filter (where status = 'completed') from pgflow.step_tasks"
                ).fetchone()
                assert row is not None
                if row[0] >= peak_inflight:
                    peak_inflight = row[0]
                    rss_at_peak = max(rss_at_peak, _vm_rss_kb(procs.pids[0]))
                if row[1] == inflight:
                    break
                time.sleep(0.05)
            else:
                problems.append("the memory run did not complete within 60 s")
    finally:
        stats = procs.stop()
        server.discard_database(db)
    if peak_inflight < inflight:
        problems.append(f"only {peak_inflight} tasks were in flight at once")
    return {
        "inflight": peak_inflight,
        "rss_mb_ready": baseline / 1024,
        "rss_mb_inflight": rss_at_peak / 1024,
        "maxrss_mb": float(stats[0].get("maxrss_kb", 0)) / 1024 if stats else None,
        "problems": problems,
    }


# -- the peer anchor ----------------------------------------------------------------------


def ensure_peer_venv(log: IO[str] | None = None) -> Path:
    """bench/.venv-peer with PgQueuer from PyPI (created once, reused)."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".bench-installed"
    wanted = " ".join(PEER_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *PEER_REQUIREMENTS,
        ],
        check=True,
        stdout=log,
        stderr=log,
    )
    stamp.write_text(wanted)
    return python


def run_peer(server: Server, jobs: int, k: int, options: Options) -> dict[str, Any]:
    """PgQueuer: ``jobs`` no-op jobs enqueued in one call (timed), then drained by K
    processes; jobs/s of the drain alone and of enqueue + drain."""
    python = str(ensure_peer_venv())
    script = str(PROJECT_ROOT / "bench" / "peer_pgqueuer.py")
    db = server.create_database(f"bench_peer_{uuid.uuid4().hex[:8]}")
    params = server.params(db)
    conn_args = [
        "--host", params["host"], "--port", str(params["port"]),
        "--user", params["user"], "--dbname", db,
    ]  # fmt: skip
    try:
        subprocess.run([python, script, "install", *conn_args], check=True, capture_output=True)
        enqueued = subprocess.run(
            [python, script, "enqueue", "--jobs", str(jobs), *conn_args],
            check=True,
            capture_output=True,
            text=True,
        )
        enqueue_s = float(json.loads(enqueued.stdout.strip().splitlines()[-1])["enqueue_s"])
        commands = [
            [python, script, "drain", "--batch", str(options.batch), *conn_args] for _ in range(k)
        ]
        with psycopg.connect(server.dsn(db), autocommit=True) as mon:
            mon.execute("checkpoint")
            procs = Driver(commands, options.logs, f"peer-k{k}")
            try:
                procs.wait_ready()
                lsn0 = server.wal_lsn(mon)
                cpu0 = server.cpu_seconds()
                t0 = time.perf_counter()
                procs.go()
                while True:
                    row = mon.execute("select count(*) from pgqueuer").fetchone()
                    if row and row[0] == 0:
                        break
                    if time.perf_counter() - t0 > options.case_timeout:
                        raise BenchError("PgQueuer did not drain in time")
                    time.sleep(0.01)
                seconds = time.perf_counter() - t0
                cpu1 = server.cpu_seconds()
                wal = server.wal_bytes_since(mon, lsn0)
            except BaseException:
                procs.kill()
                raise
            stats = procs.stop(signal_them=False)
            done = mon.execute(
                "select count(distinct job_id) from pgqueuer_log where status = 'successful'"
            ).fetchone()
            problems = (
                [] if done and done[0] == jobs else [f"{done} jobs logged successful of {jobs}"]
            )
            problems += [f"driver: {s['error']}" for s in stats if "error" in s]
    finally:
        server.discard_database(db)
    return {
        "k": k,
        "jobs": jobs,
        "enqueue_s": enqueue_s,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "start_to_finish_jobs_per_s": jobs / (enqueue_s + seconds),
        "wal_bytes_per_job": wal / jobs,
        "server_cpu_ms_per_job": 1000 * (cpu1 - cpu0) / jobs
        if cpu0 is not None and cpu1 is not None
        else None,
        "worker_cpu_ms_per_job": 1000 * sum(float(s.get("cpu_s", 0)) for s in stats) / jobs,
        "problems": problems,
    }


@contextlib.contextmanager
def phase(console: Any, title: str) -> Iterator[None]:
    """Print a phase title and its duration."""
    t0 = time.perf_counter()
    console.print(f"[bold]» {title}[/bold]")
    yield
    console.print(f"  [dim]{title}: {time.perf_counter() - t0:.1f} s[/dim]")
