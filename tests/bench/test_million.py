"""The million-run benchmark's history (bench.history) and its plan recorder (bench.plans):
the rows are what the engine writes, and pruning removes them with their archives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bench import history
from bench.plans import PlanRecorder, grouped, seq_scans, summary
from tests import PROJECT_ROOT

RUNS = 400


def expected_counts(runs: int) -> dict[str, int]:
    """Runs, step states and tasks the mix of bench.history has for ``runs`` runs."""
    kinds = [i % 20 for i in range(1, runs + 1)]
    maps = [1 + (i * 7919) % 16 for i in range(1, runs + 1) if i % 20 >= 17]
    singles = sum(k < 12 for k in kinds)
    chains = sum(12 <= k < 17 for k in kinds)
    return {
        "runs": runs,
        "states": singles + 3 * chains + len(maps),
        "tasks": singles + 3 * chains + sum(maps),
    }


@pytest.fixture
def filled(conn: psycopg.Connection) -> psycopg.Connection:
    history.define_flows(conn)
    history.fill(conn, RUNS, 30)
    return conn


def test_history_has_every_row_the_engine_writes(filled: psycopg.Connection) -> None:
    want = expected_counts(RUNS)
    assert history.check(filled) == []
    sizes = history.sizes(filled)
    assert sizes["pgflow.runs"]["rows"] == want["runs"]
    assert sizes["pgflow.step_states"]["rows"] == want["states"]
    assert sizes["pgflow.step_tasks"]["rows"] == want["tasks"]
    archived = sum(sizes[f"pgmq.a_{flow}"]["rows"] for flow in history.FLOWS)
    assert archived == want["tasks"]
    row = filled.execute(
        "select count(*) filter (where status <> 'completed' or completed_at < started_at),"
        " min(started_at) < now() - interval '29 days', max(started_at) < now()"
        " from pgflow.runs"
    ).fetchone()
    assert row == (0, True, True)
    # the queue's own sequence continues after the archived ids
    next_id = filled.execute("select nextval('pgmq.q_hist_map_msg_id_seq')").fetchone()
    last_id = filled.execute("select max(msg_id) from pgmq.a_hist_map").fetchone()
    assert next_id is not None
    assert last_id is not None
    assert next_id[0] == last_id[0] + 1


def test_outputs_are_what_the_handlers_return(filled: psycopg.Connection) -> None:
    rows = filled.execute(
        "select r.flow_slug, r.input, r.output, array_agg(s.output order by s.step_slug)"
        " from pgflow.runs r join pgflow.step_states s using (run_id)"
        " group by r.run_id order by r.started_at limit 20"
    ).fetchall()
    assert {r[0] for r in rows} == set(history.FLOWS)
    for flow, flow_input, output, states in rows:
        if flow == "hist_single":
            assert output == {"only": flow_input}
            assert states == [flow_input]
        elif flow == "hist_chain":
            n = flow_input["n"]
            assert output == {"c": n + 2}
            assert states == [n, n + 1, n + 2]
        else:
            assert output == {"m": [x + 1 for x in flow_input]}
            assert states == [output["m"]]


def test_check_finds_a_missing_archived_message(filled: psycopg.Connection) -> None:
    filled.execute(
        "delete from pgmq.a_hist_chain where msg_id = (select min(msg_id) from pgmq.a_hist_chain)"
    )
    assert history.check(filled) == ["1 tasks whose message is not archived"]


def test_pruning_removes_old_runs_and_their_archived_messages(
    filled: psycopg.Connection,
) -> None:
    filled.execute("select pgflow.prune_data_older_than('10 days')")
    left = filled.execute(
        "select count(*), count(*) filter (where completed_at < now() - interval '10 days')"
        " from pgflow.runs"
    ).fetchone()
    assert left is not None
    assert 0 < left[0] < RUNS // 2
    assert left[1] == 0
    for flow in history.FLOWS:
        old = filled.execute(
            f"select count(*) from pgmq.a_{flow} where archived_at < now() - interval '10 days'"
        ).fetchone()
        assert old == (0,)
    assert history.check(filled) == []


def test_recorder_sees_the_statements_inside_a_function(conn: psycopg.Connection) -> None:
    recorder = PlanRecorder(conn)
    conn.execute("create table big (n int)")
    conn.execute("insert into big select generate_series(1, 20000)")
    conn.execute(
        "create function count_big() returns bigint language plpgsql as"
        " $$ begin return (select count(*) from big where n > 0); end $$"
    )
    with recorder.recording() as logged:
        conn.execute("select count_big()")
    queries = [summary(entry)["query"] for entry in logged]
    assert any("from big" in q for q in queries), queries
    nested = next(e for e in logged if "from big" in summary(e)["query"])
    assert seq_scans(nested, set()) == ["big (20000 rows x 1 loops)"]
    assert seq_scans(nested, set(), min_rows=10**6) == []
    folded = grouped([summary(e) for e in logged] * 2)
    assert [f["calls"] for f in folded] == [2] * len(logged)
    conn.execute("select count_big()")  # no longer recording
    assert len(logged) == len(queries)


@pytest.mark.slow
def test_million_bench_runs_small(tmp_path: Path) -> None:
    out = tmp_path / "million.json"
    command = [
        sys.executable, "-m", "bench.million", "--runs", "300", "--repeat", "1",
        "--workloads", "W1", "--drivers", "raw-batch", "--plan-iterations", "2",
        "--out", str(out),
    ]  # fmt: skip
    if os.environ.get("PGFLOW_TEST_DSN"):
        command += ["--dsn", os.environ["PGFLOW_TEST_DSN"]]
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert doc["problems"] == []
    assert doc["throughput"]["summary"]["W1 raw-batch"]["ratio_start_to_finish"] > 0
    assert doc["plans"]["complete_tasks"]["statements"]
    assert doc["prune"]["batched"]["removed"]["pgflow.runs"] == 200
    assert doc["prune"]["single_call"]["seconds"] > 0
