"""Every method of the generated sync client against live PostgreSQL, over a connection and a pool.

The recording client notes which SQL functions were called, and the last test checks that
together the scenarios called every public function of the spec.
"""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import pytest

from pgweave_client import JsonInput, errors, models, statuses
from pgweave_client.models import RunStatus, StepStateStatus, StepTaskStatus
from tests.client.conftest import (
    CALLED,
    RecordingClient,
    public_function_names,
    read_message_ids,
)

WORKER = uuid.UUID("22222222-2222-2222-2222-222222222222")


def test_definition_calls_return_row_models(client: RecordingClient) -> None:
    flow = client.create_flow("orders", max_attempts=2)
    assert isinstance(flow, models.FlowsRow)
    assert (flow.flow_slug, flow.opt_max_attempts, flow.opt_base_delay, flow.opt_timeout) == (
        "orders",
        2,
        5,
        60,
    )
    assert flow.created_at.tzinfo is not None
    assert client.create_flow("orders", max_attempts=9).opt_max_attempts == 2  # unchanged

    root = client.add_step("orders", "fetch")
    assert isinstance(root, models.StepsRow)
    assert (root.step_index, root.deps_count, root.step_type, root.when_unmet) == (
        0,
        0,
        "single",
        "skip",
    )
    mapped = client.add_step(
        "orders",
        "each",
        ("fetch",),  # any sequence is sent as an array
        step_type="map",
        timeout=30,
        required_input_pattern={"fetch": {"ok": True}},
        when_exhausted="skip-cascade",
    )
    assert mapped.deps_count == 1
    assert mapped.opt_timeout == 30
    assert mapped.required_input_pattern == {"fetch": {"ok": True}}
    assert mapped.forbidden_input_pattern is None  # SQL NULL, not JSON null
    assert mapped.when_exhausted == "skip-cascade"


def test_a_run_from_start_to_completion(client: RecordingClient) -> None:
    client.create_flow("greet")
    client.add_step("greet", "hello")
    client.add_step("greet", "shout", ["hello"])
    worker = client.register_worker(WORKER, "greet", "greeter")
    assert isinstance(worker, models.WorkersRow)
    assert (worker.worker_id, worker.queue_name, worker.stopped_at) == (WORKER, "greet", None)

    run_id = uuid.uuid4()
    [run] = client.start_flow("greet", {"name": "Ada"}, run_id=run_id)
    assert isinstance(run, models.RunsRow)
    assert (run.run_id, run.status, run.input, run.remaining_steps) == (
        run_id,
        RunStatus.STARTED,
        {"name": "Ada"},
        2,
    )
    assert run.status == "started"
    assert run.status not in statuses.RUN_TERMINAL

    with client.connection() as conn:
        ids = read_message_ids(conn, "greet")
    [task] = client.start_tasks("greet", ids, WORKER)
    assert isinstance(task, models.StepTaskRecord)
    assert (task.run_id, task.step_slug, task.task_index, task.input) == (run_id, "hello", 0, {})
    assert task.flow_input == {"name": "Ada"}

    [done] = client.complete_task(run_id, "hello", 0, {"greeting": "hi Ada"})
    assert isinstance(done, models.StepTasksRow)
    assert (done.status, done.output, done.attempts_count) == (
        StepTaskStatus.COMPLETED,
        {"greeting": "hi Ada"},
        1,
    )
    assert done.last_worker_id == WORKER

    ids = client.poll_messages("greet", 30, 10, max_poll_seconds=1, poll_interval_ms=20)
    [task] = client.start_tasks(flow_slug="greet", msg_ids=ids, worker_id=WORKER)
    assert task.input == {"hello": {"greeting": "hi Ada"}}
    assert task.flow_input is None
    client.complete_task(run_id, "shout", 0, False)  # falsy outputs are stored as given

    state = client.get_run_with_states(run_id)
    assert isinstance(state, models.GetRunWithStatesJson)
    assert state.run.status is RunStatus.COMPLETED
    assert state.run.output == {"shout": False}
    assert sorted((s.step_slug, s.status) for s in state.steps) == [
        ("hello", "completed"),
        ("shout", "completed"),
    ]
    assert client.get_run_with_states(uuid.uuid4()) is None


def test_failures_retries_and_states(client: RecordingClient) -> None:
    client.create_flow("fragile", max_attempts=2, base_delay=1)
    client.add_step("fragile", "work")
    client.register_worker(WORKER, "fragile", "fragile_worker")
    started = client.start_flow_with_states("fragile", [1, 2])
    assert isinstance(started, dict)
    run = started["run"]
    assert isinstance(run, dict)
    run_id = uuid.UUID(str(run["run_id"]))
    steps = started["steps"]
    assert isinstance(steps, list)
    assert [s["status"] for s in steps if isinstance(s, dict)] == ["started"]

    with client.connection() as conn:
        ids = read_message_ids(conn, "fragile")
    client.start_tasks("fragile", ids, WORKER)
    [retry] = client.fail_task(run_id, "work", 0, "boom 1")
    assert (retry.status, retry.error_message, retry.attempts_count) == (
        StepTaskStatus.QUEUED,
        "boom 1",
        1,
    )
    with client.connection() as conn:
        conn.execute(
            "update pgflow.step_tasks set status = 'started', started_at = now(),"
            " attempts_count = 2 where run_id = %s",
            (run_id,),
        )
    [failed] = client.fail_task(run_id, "work", 0, "boom 2")
    assert failed.status == StepTaskStatus.FAILED
    assert failed.failed_at is not None

    state = client.get_run_with_states(run_id)
    assert state is not None
    assert state.run.status is RunStatus.FAILED
    [step] = state.steps
    assert step.status is StepStateStatus.FAILED
    assert step.error_message == "boom 2"


def test_workers_and_maintenance(client: RecordingClient) -> None:
    client.create_flow("chores")
    worker = client.register_worker(WORKER, "chores", "chore_worker")
    assert worker.deprecated_at is None
    assert client.worker_heartbeat(WORKER) is True
    assert client.worker_heartbeat(uuid.uuid4()) is False
    client.mark_worker_stopped(WORKER)
    with client.connection() as conn:
        stopped = conn.execute(
            "select stopped_at from pgflow.workers where worker_id = %s", (WORKER,)
        ).fetchone()
    assert stopped is not None
    assert stopped[0] is not None
    assert client.requeue_stalled_tasks() == 0
    client.prune_data_older_than(datetime.timedelta(days=7))
    pruned = client.prune_data_older_than_batched(datetime.timedelta(days=7), batch_size=10)
    assert {"pgflow.runs", "pgflow.step_states", "pgflow.step_tasks"} <= {
        r.table_name for r in pruned
    }
    assert all(row.rows_deleted == 0 for row in pruned)


def test_scalar_functions(client: RecordingClient) -> None:
    assert client.is_local() is False
    assert client.is_valid_slug("hello_world") is True
    assert client.is_valid_slug("run") is False
    assert client.is_valid_slug("1abc") is False
    assert client.calculate_retry_delay(5, 1) == 10
    assert client.calculate_retry_delay(Decimal("1.5"), 2) == 6
    assert client.calculate_retry_delay(base_delay=5, attempts_count=100) == 3600


def test_compile_verify_and_delete(client: RecordingClient) -> None:
    shape: JsonInput = {
        "steps": [
            {
                "slug": "first",
                "stepType": "single",
                "dependencies": [],
                "whenUnmet": "skip",
                "whenExhausted": "fail",
                "requiredInputPattern": {"defined": False},
                "forbiddenInputPattern": {"defined": False},
            }
        ]
    }
    assert client.ensure_flow_compiled("shaped", shape) == {
        "status": "compiled",
        "differences": [],
    }
    assert client.ensure_flow_compiled("shaped", shape) == {
        "status": "verified",
        "differences": [],
    }
    client.delete_flow_and_data("shaped")
    with client.connection() as conn:
        left = conn.execute("select count(*) from pgflow.flows").fetchone()
    assert left == (0,)


def test_setup_cron_without_pg_cron_raises_the_documented_error(client: RecordingClient) -> None:
    from pgweave_client import errors

    with pytest.raises(errors.PgCronMissingError) as caught:
        client.setup_requeue_stalled_tasks_cron()
    assert caught.value.sqlstate == "P0001"
    assert "install pg_cron" in caught.value.params["hint"]


def test_batch_calls_return_task_records_and_rows(client: RecordingClient) -> None:
    client.create_flow("bulk")
    client.add_step("bulk", "each", step_type="map")
    client.register_worker(WORKER, "bulk", "bulk_worker")
    [run] = client.start_flow("bulk", [1, 2, 3])
    tasks = client.read_and_start_tasks("bulk", WORKER, qty=2, vt=30)
    assert all(isinstance(t, models.StepTaskRecord) for t in tasks)
    assert [(t.task_index, t.input) for t in tasks] == [(0, 1), (1, 2)]
    assert [t.task_index for t in client.read_and_start_tasks("bulk", WORKER, 10)] == [2]
    assert client.read_and_start_tasks("bulk", WORKER, 10) == []
    rows = client.complete_tasks([run.run_id] * 3, ["each"] * 3, [2, 0, 1], [30, 10, None])
    assert all(isinstance(r, models.StepTasksRow) for r in rows)
    assert [(r.task_index, r.status, r.output) for r in rows] == [
        (2, StepTaskStatus.COMPLETED, 30),
        (0, StepTaskStatus.COMPLETED, 10),
        (1, StepTaskStatus.COMPLETED, None),
    ]
    state = client.get_run_with_states(run.run_id)
    assert state is not None
    assert state.run.output == {"each": [10, None, 30]}
    more = client.start_flows("bulk", [[4], [5, 6]])
    assert all(isinstance(r, models.RunsRow) for r in more)
    assert [(r.input, r.status) for r in more] == [
        ([4], RunStatus.STARTED),
        ([5, 6], RunStatus.STARTED),
    ]


def test_run_control_calls(client: RecordingClient) -> None:
    client.create_flow("ctl", max_attempts=2, base_delay=50)
    client.add_step("ctl", "each", step_type="map")
    client.register_worker(WORKER, "ctl", "ctl_worker")
    run = client.start_flow_idempotent("ctl", [1, 2], idempotency_key="k1")
    assert isinstance(run, models.RunsRow)
    assert (run.idempotency_key, run.status) == ("k1", RunStatus.STARTED)
    assert client.start_flow_idempotent("ctl", [1, 2], idempotency_key="k1") == run
    with pytest.raises(errors.IdempotencyConflictError) as conflict:
        client.start_flow_idempotent("ctl", [3], idempotency_key="k1")
    assert conflict.value.params["run_id"] == str(run.run_id)

    paused = client.pause_run(run.run_id)
    assert paused.paused_at is not None
    assert client.read_and_start_tasks("ctl", WORKER, 10) == []
    assert client.unpause_run(run.run_id).paused_at is None
    flow = client.pause_flow("ctl")
    assert isinstance(flow, models.FlowsRow)
    assert flow.paused_at is not None
    assert client.unpause_flow("ctl").paused_at is None
    with pytest.raises(errors.UnknownFlowError):
        client.pause_flow("nowhere")

    started = client.read_and_start_tasks("ctl", WORKER, 10)
    assert sorted((t.run_id, t.task_index) for t in started) == [(run.run_id, 0), (run.run_id, 1)]
    with pytest.raises(errors.InvalidRetryDelayError):
        client.fail_task_with_details(run.run_id, "each", 0, "x", retry_delay=-1)
    [retried] = client.fail_task_with_details(
        run.run_id, "each", 0, "slow", retry_delay=Decimal("1.5"), error_type="TimeoutError"
    )
    assert (retried.status, retried.error_type) == (StepTaskStatus.QUEUED, "TimeoutError")
    client.complete_task(run.run_id, "each", 1, 20)

    with pytest.raises(errors.RunNotRestartableError):
        client.retry_run(run.run_id)
    with pytest.raises(errors.RunNotFoundError):
        client.resume_run(uuid.uuid4())
    cancelled = client.cancel_run(run.run_id, "enough")
    assert (cancelled.status, cancelled.cancel_reason) == (RunStatus.CANCELLED, "enough")
    retried_run = client.retry_run(run.run_id)
    assert retried_run.restart_of_run_id == run.run_id
    resumed = client.resume_run(run.run_id)
    assert resumed.restart_of_run_id == run.run_id
    assert resumed.remaining_steps == 1
    with pytest.raises(errors.RunNotCancellableError):
        client.cancel_run(client.start_flow("ctl", [])[0].run_id)
    with pytest.raises(errors.RunNotPausableError):
        client.pause_run(run.run_id)


def test_hot_path_variants_skip_validation_with_the_same_effects(client: RecordingClient) -> None:
    client.create_flow("hot")
    client.add_step("hot", "each", step_type="map")
    client.register_worker(WORKER, "hot", "hot_worker")
    [run] = client.start_flow("hot", [1, 2, 3])
    raw = client.read_and_start_tasks_raw("hot", WORKER, qty=2, vt=30)
    assert all(type(row) is dict for row in raw)
    assert [(r["run_id"], r["step_slug"], r["task_index"], r["input"]) for r in raw] == [
        (run.run_id, "each", 0, 1),
        (run.run_id, "each", 1, 2),
    ]
    with client.connection() as conn:
        ids = read_message_ids(conn, "hot")
    [third] = client.start_tasks_raw("hot", ids, WORKER)
    assert (third["task_index"], third["input"]) == (2, 3)
    assert client.complete_task_execrows(run.run_id, "each", 2, 30) == 1
    assert client.complete_tasks_execrows([run.run_id] * 2, ["each"] * 2, [0, 1], [10, 20]) == 2
    assert client.complete_tasks_execrows([], [], [], []) == 0
    with pytest.raises(errors.BatchLengthMismatchError):
        client.complete_tasks_execrows([run.run_id], ["each", "each"], [0], [1])
    state = client.get_run_with_states(run.run_id)
    assert state is not None
    assert (state.run.status, state.run.output) == ("completed", {"each": [10, 20, 30]})


def test_every_public_function_was_called() -> None:
    """Runs last in this module (pytest keeps definition order; xdist keeps files whole)."""
    public = public_function_names()
    assert len(public) >= 15
    assert public <= CALLED, sorted(public - CALLED)
