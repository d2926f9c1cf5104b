"""The benchmark's quick mode runs end to end and verifies its work (no speed thresholds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import PROJECT_ROOT

WORKLOADS = {"W1", "W2", "W3-1k", "W3-10k", "W4", "W5"}
DRIVERS = {"worker", "raw-task", "raw-batch"}


@pytest.mark.slow
def test_quick_mode_runs_and_verifies_every_workload(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)]
    if os.environ.get("PGFLOW_TEST_DSN"):
        command += ["--dsn", os.environ["PGFLOW_TEST_DSN"]]
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["verification"] == {"passed": True, "failures": []}
    assert doc["meta"]["mode"] == "quick"
    cases = doc["cases"]
    assert {(c["workload"], c["driver"]) for c in cases} == {
        (w, d) for w in WORKLOADS for d in DRIVERS
    }
    for case in cases:
        assert case["verified"], case
        assert case["tasks_per_s"] > 0
        assert case["ratio_pgbench"] > 0
        assert case["wal_bytes_per_task"] > 0
    assert all(doc["pgbench"][str(k)]["tps"] > 0 for k in doc["meta"]["ks"])
    assert doc["start_flow"]["median_ms"] > 0
    assert doc["type_violation"]["median_ms"] > 0
    assert doc["latency"]["run_completed"]["p50_ms"] > 0
    assert doc["latency"]["first_task_started"]["p99_ms"] > 0
    assert doc["memory"]["rss_mb_inflight"] > 0
    if doc["meta"]["server"]["embedded"]:  # pg_stat_statements preloaded
        assert doc["profiles"], "the profile pass recorded nothing"
    assert (tmp_path / "results.png").stat().st_size > 0


@pytest.mark.slow
def test_w5_designs_times_every_storage_variant(tmp_path: Path) -> None:
    from bench import w5_designs

    args = ["--repeat", "1", "--calls", "1", "--elements", "200", "--out", str(tmp_path)]
    if os.environ.get("PGFLOW_TEST_DSN"):
        args += ["--dsn", os.environ["PGFLOW_TEST_DSN"]]
    w5_designs.main(args)  # raises SystemExit when a W5 run did not fail its run as expected

    doc = json.loads((tmp_path / "w5_designs.json").read_text())
    assert set(doc["medians_ms"]) == set(w5_designs.VARIANTS)
    assert doc["storage"] == {
        "contract": {"status_indexes": 6, "reloptions": []},
        "ff50": {"status_indexes": 6, "reloptions": ["fillfactor=50"]},
        "no-status-idx": {"status_indexes": 0, "reloptions": []},
        "no-status-idx+ff50": {"status_indexes": 0, "reloptions": ["fillfactor=50"]},
    }
    assert doc["problems"] == []
    assert all(len(samples) == 1 and samples[0] > 0 for samples in doc["samples_ms"].values())


@pytest.mark.slow
def test_ab_compares_an_older_engine_with_the_generated_one(tmp_path: Path) -> None:
    from bench import ab

    args = ["--quick", "--repeat", "1", "--workloads", "W1", "--drivers", "raw-task,raw-batch"]
    args += ["--baseline", "HEAD", "--out", str(tmp_path)]  # HEAD: present in any clone
    change = tmp_path / "change.sql"
    change.write_text("drop index pgflow.idx_step_tasks_last_worker_id")
    args += ["--old-sql", str(change)]  # old = today's engine with one change
    if os.environ.get("PGFLOW_TEST_DSN"):
        args += ["--dsn", os.environ["PGFLOW_TEST_DSN"]]
    ab.main(args)  # raises SystemExit when a case's verification failed

    doc = json.loads((tmp_path / "ab.json").read_text())
    assert doc["problems"] == []
    assert set(doc["summary"]) == {"W1 raw-task K=1", "W1 raw-batch K=1"}
    for entry in doc["summary"].values():
        assert entry["old"]["tasks_per_s"] > 0
        assert entry["new"]["tasks_per_s"] > 0
        assert entry["ratio"]["tasks_per_s"] > 0
    assert (tmp_path / "baseline-HEAD" / "0001_initial.sql").exists()
    assert doc["old_sql"] == "drop index pgflow.idx_step_tasks_last_worker_id"
