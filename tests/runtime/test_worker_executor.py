"""The executor: sync and async handlers, bounded concurrency, contexts, storable outputs."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import uuid
from typing import Any

import pytest

from pgweave.dsl import Flow, StepContext
from pgweave.handlers import UnstorableOutputError, storable_text, stored_json
from pgweave.worker.executor import Executor, TaskContext
from pgweave.worker.records import TaskRecord

RUN = uuid.UUID("44444444-4444-4444-4444-444444444444")
WORKER = uuid.UUID("55555555-5555-5555-5555-555555555555")


def record(step: str, value: Any, index: int = 0, flow_input: Any = None) -> TaskRecord:
    return TaskRecord("f", RUN, step, value, 100 + index, index, flow_input)


def executor(flow: Flow[Any], max_concurrent: int = 4) -> Executor:
    return Executor(flow, WORKER, max_concurrent, threading.Event())


async def double(n: int) -> int:
    await asyncio.sleep(0)
    return n * 2


def shout(word: str, ctx: StepContext) -> dict[str, Any]:
    return {"word": word.upper(), "attempt": ctx.attempt, "input": ctx.flow_input}


def test_async_and_sync_handlers_and_their_contexts() -> None:
    flow = Flow[Any]("f").map("double", double).map("shout", shout, array="double")
    run = executor(flow)

    async def main() -> tuple[Any, Any]:
        doubled = await run.execute(record("double", 21), None)
        shouted = await run.execute(record("shout", "hi"), TaskContext(attempt=3, flow_input=[21]))
        return doubled, shouted

    doubled, shouted = asyncio.run(main())
    assert doubled.ok
    assert doubled.output == "42"
    assert json.loads(shouted.output) == {"word": "HI", "attempt": 3, "input": [21]}
    assert run.needs_context(record("shout", "x"))
    assert not run.needs_context(record("double", 1))


def test_a_root_single_step_gets_the_flow_input() -> None:
    def echo(value: Any) -> Any:
        return value

    run = executor(Flow[Any]("f").step("echo", echo))
    outcome = asyncio.run(run.execute(record("echo", {}, flow_input={"x": 1}), None))
    assert json.loads(outcome.output or "") == {"x": 1}


def test_errors_and_unstorable_outputs_become_failures() -> None:
    def explode(value: Any) -> None:
        raise KeyError("gone\u0000here")

    def nan(value: Any) -> float:
        return float("nan")

    run = executor(Flow[Any]("f").step("explode", explode).step("nan", nan))
    failed = asyncio.run(run.execute(record("explode", None), None))
    assert not failed.ok
    assert failed.error == "'gone\\x00here'"
    assert isinstance(failed.exception, KeyError)
    unstorable = asyncio.run(run.execute(record("nan", None), None))
    assert unstorable.error == (
        "the handler's output cannot be stored by PostgreSQL: $ is nan, which JSON cannot represent"
    )
    unknown = asyncio.run(run.execute(record("missing", None), None))
    assert unknown.error == "step 'missing' is not defined in this worker's flow 'f'"


def test_at_most_max_concurrent_handlers_run_at_once() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def busy(value: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return value

    run = executor(Flow[list[int]]("f").map("busy", busy), max_concurrent=2)
    done: list[int] = []

    async def main() -> None:
        stop = asyncio.Event()
        for index in range(6):
            while run.free_slots <= 0:
                await run.wait_for_slot(stop)
            task = record("busy", index, index)

            async def work(task: TaskRecord = task) -> None:
                outcome = await run.execute(task, None)
                done.append(int(outcome.output or "-1"))

            run.submit(task, work)
        while run.running:
            await run.wait_for_slot(stop)

    asyncio.run(main())
    assert sorted(done) == list(range(6))
    assert peak == 2


def test_cancel_all_returns_the_records_of_running_tasks() -> None:
    async def forever(value: Any) -> None:
        await asyncio.sleep(3600)

    run = executor(Flow[Any]("f").map("forever", forever))

    async def main() -> list[TaskRecord]:
        for index in range(3):
            task = record("forever", None, index)
            run.submit(task, functools.partial(_discard, run, task))
        await asyncio.sleep(0.01)
        return await run.cancel_all()

    cancelled = asyncio.run(main())
    assert sorted(r.task_index for r in cancelled) == [0, 1, 2]
    assert not run.running


async def _discard(run: Executor, task: TaskRecord) -> None:
    await run.execute(task, None)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a": [1, float("inf")]}, "$.a[1] is inf"),
        ({"k\u0000": 1}, "$ key 'k\\x00' is a string containing NUL"),
        (["ok", "\ud800"], "$[1] is a string containing a lone surrogate"),
    ],
)
def test_stored_json_names_what_postgres_would_reject(value: Any, problem: str) -> None:
    with pytest.raises(UnstorableOutputError) as caught:
        stored_json(value)
    assert str(caught.value).startswith("the handler's output cannot be stored by PostgreSQL: ")
    assert problem in str(caught.value)


def test_stored_json_keeps_what_only_looks_unstorable() -> None:
    assert stored_json("\\u0000") == '"\\\\u0000"'  # a backslash and text, no NUL
    assert json.loads(stored_json({"emoji": "😀"})) == {"emoji": "😀"}
    assert storable_text("a\u0000b\ud800") == "a\\x00b\\ud800"
