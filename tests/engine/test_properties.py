"""Property-based tests: random DAGs driven by random worker operations.

Hypothesis draws a flow (single and map steps, root and dependent maps, fan-in singles,
optional conditions, retry and failure modes) and then a sequence of operations a worker
pool could perform: read+start, complete with random outputs (arrays, non-arrays and falsy
values), fail, requeue a stalled task, and late replays. After every operation the database
is checked twice: against model-free invariants (counters, exactly-once completion, queue
contents, events) and against a small reference model of the contract in Python.

All examples share the test's database; each gets a fresh flow slug (and queue).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.engine.concurrency import (
    StepDef,
    build_flow,
    run_events,
    snapshot,
    worker_id,
)
from tests.engine.helpers import (
    Row,
    complete_at,
    fail_at,
    fetch,
    install_realtime_stub,
    read_and_start,
    start_flow,
)


class _SqlNull:
    """SQL NULL, as opposed to JSON null (None)."""

    def __repr__(self) -> str:
        return "NULL"


NULL: Any = _SqlNull()

ACTIVE_TASK = ("queued", "started")
TERMINAL_STEP = ("completed", "failed", "skipped")


def canon(value: Any) -> str:
    """A comparable text form that tells false from 0 and SQL NULL from JSON null."""
    if value is NULL:
        return "NULL"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def decode(text: str | None) -> Any:
    """A jsonb column read as text back to a Python value (NULL for SQL NULL)."""
    return NULL if text is None else json.loads(text)


def jsonb_type(value: Any) -> str:
    """jsonb_typeof, with 'null' for SQL NULL."""
    if value is NULL or value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def contains(container: Any, pattern: Any) -> bool:
    """jsonb's ``@>`` for the values these tests use (no top-level scalar-in-array case)."""
    if isinstance(pattern, dict):
        return isinstance(container, dict) and all(
            key in container and contains(container[key], sub) for key, sub in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(container, list) and all(
            any(contains(item, sub) for item in container) for sub in pattern
        )
    if isinstance(container, dict | list):
        return False
    return jsonb_type(container) == jsonb_type(pattern) and container == pattern


# -- the reference model ----------------------------------------------------------------------


@dataclass
class MStep:
    """The model's idea of a step_states row."""

    status: str = "created"
    remaining_deps: int = 0
    initial_tasks: int | None = None
    remaining_tasks: int | None = None
    output: Any = NULL
    skip_reason: str | None = None
    errors: set[str] = field(default_factory=set)


@dataclass
class MTask:
    """The model's idea of a step_tasks row."""

    status: str = "queued"
    attempts: int = 0
    output: Any = NULL
    error: str | None = None
    requeued: int = 0


class Model:
    """pgflow 0.14.1's run semantics (contract section 3.1) with our difference 4."""

    def __init__(self, steps: list[StepDef], flow_input: Any, max_attempts: int) -> None:
        self.defs = {step.slug: step for step in steps}
        self.order = [step.slug for step in steps]
        self.children = {slug: [s.slug for s in steps if slug in s.deps] for slug in self.order}
        self.input = flow_input
        self.max_attempts = max_attempts
        self.status = "started"
        self.remaining_steps = 0
        self.output: Any = NULL
        self.steps: dict[str, MStep] = {}
        self.tasks: dict[tuple[str, int], MTask] = {}
        self.events: Counter[str] = Counter()

    # helpers
    def is_map(self, slug: str) -> bool:
        return self.defs[slug].step_type == "map"

    def step_output(self, slug: str) -> Any:
        out = self.steps[slug].output
        return None if out is NULL else out

    def tasks_with(self, *statuses: str) -> list[tuple[str, int]]:
        return sorted(key for key, t in self.tasks.items() if t.status in statuses)

    def fail_run(self) -> None:
        self.status = "failed"
        for t in self.tasks.values():
            if t.status in ACTIVE_TASK:
                t.status = "cancelled"

    def unlock_children(self, slug: str, map_tasks: int | None) -> None:
        """Children lose one remaining dep; waiting map children learn their size."""
        for child in self.children[slug]:
            state = self.steps[child]
            state.remaining_deps -= 1
            if self.is_map(child) and state.initial_tasks is None:
                state.initial_tasks = map_tasks

    # the SQL functions
    def start_flow(self) -> None:
        self.remaining_steps = len(self.order)
        for slug in self.order:
            d = self.defs[slug]
            state = MStep(remaining_deps=len(d.deps))
            if d.step_type == "single":
                state.initial_tasks = 1
            elif not d.deps:
                state.initial_tasks = len(self.input)
            self.steps[slug] = state
        self.events["run:started"] += 1
        if not self.resolve_conditions():
            return
        self.complete_taskless()
        self.start_ready()
        self.maybe_complete()

    def condition_input(self, slug: str) -> Any:
        d = self.defs[slug]
        if not d.deps:
            return self.input
        return {
            dep: self.step_output(dep) for dep in d.deps if self.steps[dep].status == "completed"
        }

    def condition_met(self, slug: str) -> bool:
        d = self.defs[slug]
        value = self.condition_input(slug)
        return (d.required is None or contains(value, d.required)) and (
            d.forbidden is None or not contains(value, d.forbidden)
        )

    def resolve_conditions(self) -> bool:
        if self.status != "started":
            return self.status == "completed"
        for _ in range(50):
            ready = [
                s
                for s in self.order
                if self.steps[s].status == "created"
                and self.steps[s].remaining_deps == 0
                and (self.defs[s].required is not None or self.defs[s].forbidden is not None)
            ]
            unmet = [s for s in ready if not self.condition_met(s)]
            failing = [s for s in unmet if self.defs[s].when_unmet == "fail"]
            if failing:
                state = self.steps[failing[0]]
                state.status = "failed"
                state.errors = {"Condition not met"}
                self.fail_run()
                self.events[f"step:{failing[0]}:failed"] += 1
                self.events["run:failed"] += 1
                return False
            skips = [s for s in unmet if self.defs[s].when_unmet == "skip"]
            for slug in skips:
                self.skip(slug, "condition_unmet")
            for slug in skips:
                self.unlock_children(slug, 0)
            self.remaining_steps -= len(skips)
            for slug in unmet:
                if self.defs[slug].when_unmet == "skip-cascade":
                    self.force_skip(slug, "condition_unmet")
            if not skips:
                return True
        raise AssertionError("condition cascade did not settle")

    def skip(self, slug: str, reason: str) -> None:
        state = self.steps[slug]
        state.status = "skipped"
        state.skip_reason = reason
        state.remaining_tasks = None
        for (step, _), t in self.tasks.items():
            if step == slug and t.status in ACTIVE_TASK:
                t.status = "skipped"
        self.events[f"step:{slug}:skipped"] += 1

    def force_skip(self, slug: str, reason: str) -> None:
        below = {slug}
        frontier = [slug]
        while frontier:
            for child in self.children[frontier.pop()]:
                if child not in below:
                    below.add(child)
                    frontier.append(child)
        targets = [
            s for s in self.order if s in below and self.steps[s].status in ("created", "started")
        ]
        for target in targets:
            self.skip(target, reason if target == slug else "dependency_skipped")
        self.remaining_steps -= len(targets)

    def complete_taskless(self) -> None:
        for _ in range(50):
            ready = [
                s
                for s in self.order
                if self.steps[s].status == "created"
                and self.steps[s].remaining_deps == 0
                and self.steps[s].initial_tasks == 0
            ]
            if not ready:
                return
            for slug in ready:
                state = self.steps[slug]
                state.status = "completed"
                state.remaining_tasks = 0
                state.output = [] if self.is_map(slug) else NULL
                self.events[f"step:{slug}:completed"] += 1
            for slug in ready:
                self.unlock_children(slug, 0)
            self.remaining_steps -= len(ready)
        raise AssertionError("taskless cascade did not settle")

    def start_ready(self) -> None:
        if self.status != "started":
            return
        for slug in self.order:
            state = self.steps[slug]
            if (
                state.status == "created"
                and state.remaining_deps == 0
                and (state.initial_tasks or 0) > 0
            ):
                assert state.initial_tasks is not None
                state.status = "started"
                state.remaining_tasks = state.initial_tasks
                for index in range(state.initial_tasks):
                    self.tasks[(slug, index)] = MTask()
                self.events[f"step:{slug}:started"] += 1

    def maybe_complete(self) -> None:
        if self.remaining_steps != 0 or self.status == "completed":
            return
        leaves = [
            s for s in self.order if not self.children[s] and self.steps[s].status == "completed"
        ]
        self.output = {s: self.step_output(s) for s in leaves} if leaves else NULL
        self.status = "completed"
        self.events["run:completed"] += 1

    def expected_input(self, slug: str, index: int) -> Any:
        d = self.defs[slug]
        if d.step_type == "map":
            source = self.input if not d.deps else self.steps[d.deps[0]].output
            return source[index]
        return {
            dep: self.step_output(dep) for dep in d.deps if self.steps[dep].status == "completed"
        }

    def started(self, key: tuple[str, int]) -> None:
        t = self.tasks[key]
        assert t.status == "queued", f"start_tasks started {key}, which the model has {t.status}"
        t.status = "started"
        t.attempts += 1

    def complete(self, key: tuple[str, int], output: Any) -> None:
        slug = key[0]
        t, state = self.tasks[key], self.steps[slug]
        if self.status == "failed" or state.status != "started":
            return
        waiting_maps = [
            c for c in self.children[slug] if self.is_map(c) and self.steps[c].initial_tasks is None
        ]
        if not self.is_map(slug) and waiting_maps and not isinstance(output, list):
            kind = jsonb_type(output)
            t.status, t.output = "failed", output
            t.error = f"[TYPE_VIOLATION] Produced {kind} instead of array"
            state.status = "failed"
            state.errors = {
                f"[TYPE_VIOLATION] Map step {c} expects array input but dependency {slug}"
                f" produced {kind}"
                for c in waiting_maps
            }
            self.fail_run()
            self.events["run:failed"] += 1
            self.events[f"step:{slug}:failed"] += 1
            return
        if t.status != "started":
            return
        t.status, t.output = "completed", output
        size: int | None = None
        assert state.remaining_tasks is not None
        state.remaining_tasks -= 1
        if state.remaining_tasks == 0:
            state.status = "completed"
            if self.is_map(slug):
                assert state.initial_tasks is not None
                state.output = [self.tasks[(slug, i)].output for i in range(state.initial_tasks)]
                size = state.initial_tasks
            else:
                state.output = output
                if isinstance(output, list):
                    size = len(output)
            self.unlock_children(slug, size)
            self.remaining_steps -= 1
            self.events[f"step:{slug}:completed"] += 1
            if not self.resolve_conditions():
                return
            self.complete_taskless()
        self.start_ready()
        self.maybe_complete()

    def fail(self, key: tuple[str, int], message: str) -> None:
        slug = key[0]
        t, state, d = self.tasks[key], self.steps[key[0]], self.defs[key[0]]
        if self.status == "failed":
            if t.status == "started":
                t.status, t.error = "failed", message
            return
        if state.status != "started" or t.status != "started":
            return
        t.error = message
        limit = d.max_attempts if d.max_attempts is not None else self.max_attempts
        if t.attempts < limit:
            t.status = "queued"
            return
        t.status = "failed"
        if d.when_exhausted == "fail":
            state.status = "failed"
            state.errors = {message}
            self.fail_run()
            self.events[f"step:{slug}:failed"] += 1
            self.events["run:failed"] += 1
            return
        self.skip(slug, "handler_failed")
        self.remaining_steps -= 1
        if d.when_exhausted == "skip-cascade":
            self.force_skip(slug, "handler_failed")
        else:
            self.unlock_children(slug, 0)
            if not self.resolve_conditions():
                return
            self.complete_taskless()
            self.start_ready()
        self.maybe_complete()

    def requeue(self, key: tuple[str, int]) -> None:
        t = self.tasks[key]
        assert t.status == "started"
        assert t.requeued < 3
        t.status = "queued"
        t.requeued += 1


# -- comparing the database with the model and with the invariants ---------------------------


@dataclass
class Db:
    """One read of a run: rows (jsonb as text, decoded), queue, archive and events."""

    flow: str
    run_id: uuid.UUID
    run: Row
    steps: dict[str, Row]
    tasks: dict[tuple[str, int], Row]
    queue: list[Row]
    archive: list[Row]
    events: list[Row]


def read_db(conn: psycopg.Connection, flow: str, run_id: uuid.UUID) -> Db:
    run = fetch(
        conn,
        "select status, remaining_steps, output::text as output from pgflow.runs where run_id = %s",
        run_id,
    )[0]
    run["output"] = decode(run["output"])
    steps = {}
    for row in fetch(
        conn,
        "select step_slug, status, remaining_deps, remaining_tasks, initial_tasks,"
        " output::text as output, skip_reason, error_message"
        " from pgflow.step_states where run_id = %s",
        run_id,
    ):
        row["output"] = decode(row["output"])
        steps[row["step_slug"]] = row
    tasks = {}
    for row in fetch(
        conn,
        "select step_slug, task_index, status, attempts_count, output::text as output,"
        " error_message, message_id, completed_at, requeued_count"
        " from pgflow.step_tasks where run_id = %s",
        run_id,
    ):
        row["output"] = decode(row["output"])
        tasks[(row["step_slug"], row["task_index"])] = row
    queue = fetch(conn, f'select msg_id, message from pgmq."q_{flow}"')
    archive = fetch(conn, f'select msg_id, message from pgmq."a_{flow}"')
    return Db(flow, run_id, run, steps, tasks, queue, archive, run_events(conn, run_id))


def check_invariants(db: Db, defs: dict[str, StepDef], before: Db | None) -> None:
    """What must hold after any operation, whatever the model says."""
    run, steps, tasks = db.run, db.steps, db.tasks
    children = {slug: [s for s, d in defs.items() if slug in d.deps] for slug in defs}

    if run["status"] == "started":
        live = sum(1 for row in steps.values() if row["status"] not in TERMINAL_STEP)
        assert run["remaining_steps"] == live, "remaining_steps != steps not terminal"
    for slug, row in steps.items():
        mine = {i: t for (s, i), t in tasks.items() if s == slug}
        if row["status"] == "started":
            assert row["remaining_tasks"] == sum(
                1 for t in mine.values() if t["status"] != "completed"
            )
            assert sorted(mine) == list(range(row["initial_tasks"]))
        if row["status"] == "completed":
            assert row["remaining_tasks"] == 0
            assert all(t["status"] == "completed" for t in mine.values())
            if defs[slug].step_type == "map":
                ordered = [mine[i]["output"] for i in sorted(mine)]
                assert canon(row["output"]) == canon(ordered), "map output not by task_index"

    if before is not None:
        for key, old in before.tasks.items():
            if old["status"] == "completed":
                new = tasks[key]
                assert (new["status"], new["completed_at"], canon(new["output"])) == (
                    "completed",
                    old["completed_at"],
                    canon(old["output"]),
                ), f"completed task {key} changed"

    if run["status"] != "started":
        assert not [k for k, t in tasks.items() if t["status"] in ACTIVE_TASK]
    if run["status"] == "completed":
        leaves = {
            s: row["output"]
            for s, row in steps.items()
            if not children[s] and row["status"] == "completed"
        }
        expected = {s: (None if v is NULL else v) for s, v in leaves.items()} if leaves else NULL
        assert canon(run["output"]) == canon(expected), "run output != leaf outputs"

    queued = {t["message_id"] for t in tasks.values() if t["status"] in ACTIVE_TASK}
    done = {t["message_id"] for t in tasks.values() if t["status"] not in ACTIVE_TASK}
    assert len(queued) + len(done) == len(tasks), "two tasks share a message"
    assert {m["msg_id"] for m in db.queue} == queued, "queue != messages of queued/started tasks"
    assert {m["msg_id"] for m in db.archive} == done, "archive != messages of finished tasks"
    by_id = {t["message_id"]: key for key, t in tasks.items()}
    for message in db.queue + db.archive:
        step, index = by_id[message["msg_id"]]
        assert message["message"] == {
            "flow_slug": db.flow,
            "run_id": str(db.run_id),
            "step_slug": step,
            "task_index": index,
        }

    counts = Counter(row["event"] for row in db.events)
    assert counts["run:started"] == 1
    assert counts["run:completed"] == (run["status"] == "completed")
    assert counts["run:failed"] == (run["status"] == "failed")
    for slug, row in steps.items():
        has_tasks = any(s == slug for s, _ in tasks)
        assert counts[f"step:{slug}:started"] == has_tasks, slug
        for outcome in TERMINAL_STEP:
            assert counts[f"step:{slug}:{outcome}"] == (row["status"] == outcome), (slug, outcome)
    first_seen: dict[str, int] = {}
    terminal_seen: dict[str, int] = {}
    for position, row in enumerate(db.events):
        parts = row["event"].split(":")
        if parts[0] != "step":
            continue
        slug = parts[1]
        first_seen.setdefault(slug, position)
        if parts[2] in TERMINAL_STEP:
            terminal_seen[slug] = position
    for slug, position in first_seen.items():
        parents = [terminal_seen.get(dep) for dep in defs[slug].deps]
        if steps[slug]["skip_reason"] == "dependency_skipped":
            assert any(p is not None and p < position for p in parents), slug
        else:
            assert all(p is not None and p < position for p in parents), (
                f"{slug}'s event came before a parent's"
            )


def check_model(db: Db, model: Model) -> None:
    """The database says exactly what the model predicts."""
    assert (db.run["status"], db.run["remaining_steps"], canon(db.run["output"])) == (
        model.status,
        model.remaining_steps,
        canon(model.output),
    ), "run"
    got_steps = {
        slug: (
            row["status"],
            row["remaining_deps"],
            row["initial_tasks"],
            row["remaining_tasks"],
            canon(row["output"]),
            row["skip_reason"],
        )
        for slug, row in db.steps.items()
    }
    want_steps = {
        slug: (
            s.status,
            s.remaining_deps,
            s.initial_tasks,
            s.remaining_tasks,
            canon(s.output),
            s.skip_reason,
        )
        for slug, s in model.steps.items()
    }
    assert got_steps == want_steps, "step states"
    for slug, s in model.steps.items():
        if s.status == "failed":
            assert db.steps[slug]["error_message"] in s.errors
    got_tasks = {
        key: (row["status"], row["attempts_count"], canon(row["output"]))
        for key, row in db.tasks.items()
    }
    want_tasks = {key: (t.status, t.attempts, canon(t.output)) for key, t in model.tasks.items()}
    assert got_tasks == want_tasks, "tasks"
    for key, t in model.tasks.items():
        if t.status == "failed":
            assert db.tasks[key]["error_message"] == t.error
    assert Counter(row["event"] for row in db.events) == model.events, "events"


# -- strategies ----------------------------------------------------------------------------------

ELEMENTS = [0, 1, 2, None, False, True, "", "x", {"ok": True}, [1]]
OUTPUTS = [
    {"ok": True},
    {"ok": False},
    {"ok": True, "n": 2},
    [],
    [1],
    [1, 2, 3],
    [None, 0, False, ""],
    0,
    7,
    False,
    True,
    "",
    "text",
    None,
]
ARRAYS = [[], [0], [1, 2], [None, False, "", 0], [{"ok": True}, {"ok": False}, 3]]


@dataclass(frozen=True)
class Case:
    """A drawn flow and its input."""

    steps: list[StepDef]
    flow_input: Any
    max_attempts: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    steps: list[StepDef] = []
    for i in range(draw(st.integers(2, 7))):
        earlier = [s.slug for s in steps]
        kind = draw(st.sampled_from(["single", "single", "map"]))
        if not earlier:
            deps: list[str] = []
        elif kind == "map":
            deps = draw(st.lists(st.sampled_from(earlier), max_size=1))
        else:
            deps = sorted(set(draw(st.lists(st.sampled_from(earlier), max_size=3))))
        condition = draw(st.sampled_from([None, None, None, None, "required", "forbidden"]))
        pattern = {deps[0]: {"ok": True}} if deps else {"flag": True}
        steps.append(
            StepDef(
                slug=f"s{i}",
                deps=tuple(deps),
                step_type=kind,
                max_attempts=draw(st.sampled_from([None, None, 0, 1, 2])),
                when_exhausted=draw(st.sampled_from(["fail", "skip", "skip-cascade"])),
                when_unmet=draw(st.sampled_from(["skip", "skip", "skip-cascade", "fail"])),
                required=pattern if condition == "required" else None,
                forbidden=pattern if condition == "forbidden" else None,
            )
        )
    if any(s.step_type == "map" and not s.deps for s in steps):
        flow_input: Any = draw(st.lists(st.sampled_from(ELEMENTS), max_size=4))
    else:
        flow_input = draw(
            st.sampled_from([{"flag": True}, {"flag": True, "n": 1}, {"flag": False}, {}])
        )
    return Case(steps, flow_input, draw(st.integers(1, 3)))


FLOW_NUMBERS = itertools.count()
MAX_OPS = 40


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(case=cases(), data=st.data())
def test_random_dags_under_random_operations(
    conn: psycopg.Connection, case: Case, data: st.DataObject
) -> None:
    """Every operation leaves the database consistent and exactly as the model predicts."""
    install_realtime_stub(conn)
    flow = f"prop_{next(FLOW_NUMBERS)}"
    build_flow(conn, flow, case.steps, max_attempts=case.max_attempts, base_delay=0, timeout=3600)
    defs = {s.slug: s for s in case.steps}
    model = Model(case.steps, case.flow_input, case.max_attempts)
    run_id = start_flow(conn, flow, case.flow_input)["run_id"]
    model.start_flow()
    state = read_db(conn, flow, run_id)
    check_invariants(state, defs, None)
    check_model(state, model)
    worker = worker_id(flow)

    idle_replays = 2
    for step_number in range(MAX_OPS):
        queued = model.tasks_with("queued")
        started = model.tasks_with("started")
        finished = model.tasks_with("completed", "failed", "cancelled", "skipped")
        if not queued and not started:
            assert model.status != "started", "the run is stuck with nothing to do"
            idle_replays -= 1
            if idle_replays < 0 or not finished:
                break
        ops = (["read"] if queued else []) + (["complete", "complete", "fail"] if started else [])
        if any(model.tasks[k].requeued < 3 for k in started):
            ops.append("requeue")
        if finished:
            ops.append("replay")
        op = data.draw(st.sampled_from(ops), label="op")

        if op == "read":
            qty = data.draw(st.integers(1, 3), label="qty")
            records = read_and_start(conn, flow, vt=30, qty=qty, worker=worker)
            assert len(records) == min(qty, len(queued)), (
                "start_tasks did not start every read task"
            )
            for record in records:
                key = (record["step_slug"], record["task_index"])
                assert canon(record["input"]) == canon(model.expected_input(*key)), key
                d = defs[key[0]]
                root_single = d.step_type == "single" and not d.deps
                assert canon(record["flow_input"]) == canon(
                    case.flow_input if root_single else None
                )
                model.started(key)
        elif op == "complete":
            key = data.draw(st.sampled_from(started), label="task")
            feeds_map = any(defs[c].step_type == "map" and key[0] in defs[c].deps for c in defs)
            pool = ARRAYS if feeds_map and data.draw(st.integers(0, 3), label="arr") else OUTPUTS
            output = data.draw(st.sampled_from(pool), label="output")
            rows = complete_at(conn, run_id, key[0], key[1], output)
            assert len(rows) == 1
            model.complete(key, output)
        elif op == "fail":
            key = data.draw(st.sampled_from(started), label="task")
            message = f"{key[0]}[{key[1]}] failed at op {step_number}"
            assert len(fail_at(conn, run_id, key[0], key[1], message)) == 1
            model.fail(key, message)
        elif op == "requeue":
            key = data.draw(
                st.sampled_from([k for k in started if model.tasks[k].requeued < 3]), label="task"
            )
            conn.execute(
                "update pgflow.step_tasks set queued_at = queued_at - interval '2 hours',"
                " started_at = started_at - interval '2 hours'"
                " where run_id = %s and step_slug = %s and task_index = %s",
                (run_id, key[0], key[1]),
            )
            requeued = conn.execute("select pgflow.requeue_stalled_tasks()").fetchone()
            assert requeued == (1,)
            model.requeue(key)
        else:
            key = data.draw(st.sampled_from(finished), label="task")
            frozen = snapshot(conn, flow, run_id)
            if data.draw(st.booleans(), label="complete?"):
                complete_at(conn, run_id, key[0], key[1], data.draw(st.sampled_from(OUTPUTS)))
            else:
                fail_at(conn, run_id, key[0], key[1], "late failure")
            assert snapshot(conn, flow, run_id) == frozen, f"late call on {key} changed the run"

        previous, state = state, read_db(conn, flow, run_id)
        check_invariants(state, defs, previous)
        check_model(state, model)
        event(f"op: {op}")

    event(f"run ended {model.status}")
    for s in model.steps.values():
        event(f"step {s.status} {s.skip_reason or ''}".strip())
        if s.status == "failed":
            event("step failed by " + min(s.errors).split(" ")[0])
