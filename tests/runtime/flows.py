"""Flows served by the worker processes of the runtime tests (``pgweave worker tests.runtime.flows:…``).

Handlers that tests need to observe write marker files into ``$PGWEAVE_TEST_MARKERS``:
``<step>-<task_index>-<attempt>.start`` / ``.end`` with the worker's pid and a timestamp.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, TypedDict

from pydantic import BaseModel

import pgweave
from pgweave.dsl import Flow, StepContext


def _mark(ctx: StepContext, suffix: str) -> None:
    directory = os.environ.get("PGWEAVE_TEST_MARKERS")
    if not directory:
        return
    base = Path(directory) / f"{ctx.step_slug}-{ctx.task_index}"
    attempt = 1
    while base.with_name(f"{base.name}-{attempt}.{suffix}").exists():
        attempt += 1
    base.with_name(f"{base.name}-{attempt}.{suffix}").write_text(
        f"{os.getpid()} {time.time()}", encoding="utf-8"
    )


# -- single steps ---------------------------------------------------------------------------


class Numbers(BaseModel):
    a: int
    b: int


class SumDeps(TypedDict):
    add: int
    multiply: int


def add(n: Numbers) -> int:
    return n.a + n.b


async def multiply(n: Numbers) -> int:
    await asyncio.sleep(0)
    return n.a * n.b


def report(deps: SumDeps, ctx: StepContext) -> dict[str, Any]:
    return {"sum": deps["add"], "product": deps["multiply"], "input": ctx.flow_input}


arithmetic = (
    Flow[Numbers]("arithmetic", timeout=5)
    .step("add", add)
    .step("multiply", multiply)
    .step("report", report, depends_on=["add", "multiply"])
)

# -- maps -----------------------------------------------------------------------------------


class TotalDeps(TypedDict):
    squares: list[int]


def square(n: int) -> int:
    return n * n


def total(deps: TotalDeps) -> int:
    return sum(deps["squares"])


def letters(word: str) -> list[str]:
    return list(word)


def upper(letter: str) -> str:
    return letter.upper()


squares = (
    Flow[list[int]]("squares", timeout=5)
    .map("squares", square)
    .step("total", total, depends_on=["squares"])
)

spelling = (
    Flow[str]("spelling", timeout=5).step("letters", letters).map("upper", upper, array="letters")
)

# -- failures -------------------------------------------------------------------------------


def explode(value: Any, ctx: StepContext) -> None:
    _mark(ctx, "start")
    raise RuntimeError(f"boom in {ctx.step_slug} (task {ctx.task_index})")


def after(deps: Any) -> Any:
    return {"saw": sorted(deps)}


failing = (
    Flow[Any]("failing", base_delay=1, timeout=5)
    .step("explode", explode, max_attempts=2)
    .step("after", after, depends_on=["explode"])
)

skipping = (
    Flow[Any]("skipping", base_delay=1, timeout=5)
    .step("explode", explode, max_attempts=2, when_exhausted="skip")
    .step("after", after, depends_on=["explode"])
)

# -- slow tasks (shutdown and crash tests) --------------------------------------------------


def slow(seconds: float, ctx: StepContext) -> dict[str, Any]:
    _mark(ctx, "start")
    time.sleep(seconds)
    _mark(ctx, "end")
    return {"slept": seconds, "pid": os.getpid()}


slow_map = Flow[list[float]]("slow_map", timeout=3).map("sleep", slow)
patient_map = Flow[list[float]]("patient_map", timeout=60).map("sleep", slow)
"""For handlers that must outlive a shutdown (slow_map's would time out first)."""

# -- shape mismatch -------------------------------------------------------------------------

shape_v2 = Flow[Any]("shaped", timeout=5).step("first", after).step("second", after)

# -- values PostgreSQL rejects, real attempt numbers ---------------------------------------


def unstorable_value(kind: str) -> Any:
    if kind == "nan":
        return {"score": float("nan")}
    if kind == "infinity":
        return [1.0, float("inf")]
    if kind == "nul":
        return {"text": "a\u0000b"}
    if kind == "raise":
        raise ValueError("bad\u0000text")
    return {"ok": kind}


unstorable = Flow[str]("unstorable", base_delay=1, timeout=5).step(
    "value", unstorable_value, max_attempts=2
)


def third_time_lucky(value: Any, ctx: StepContext) -> dict[str, int]:
    _mark(ctx, "start")
    if ctx.attempt < 3:
        raise RuntimeError(f"failed at attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


attempts = Flow[Any]("attempts", base_delay=1, timeout=5).step(
    "lucky", third_time_lucky, max_attempts=3
)

# -- run control: cancellation, timeouts, handler-chosen retry delays -----------------------


def _stamp(ctx: StepContext, what: str) -> None:
    """A marker ``<run_id>-<step>-<attempt>.<what>`` holding the time (runs apart)."""
    directory = os.environ.get("PGWEAVE_TEST_MARKERS")
    if directory:
        name = f"{ctx.run_id}-{ctx.step_slug}-{ctx.attempt}.{what}"
        (Path(directory) / name).write_text(str(time.time()), encoding="utf-8")


class Wait(TypedDict):
    seconds: float


async def wait_async(value: Wait, ctx: StepContext) -> dict[str, float]:
    _stamp(ctx, "start")
    try:
        await asyncio.sleep(value["seconds"])
    except asyncio.CancelledError:
        _stamp(ctx, "stopped")
        raise
    _stamp(ctx, "end")
    return {"slept": value["seconds"]}


def wait_sync(value: Wait, ctx: StepContext) -> dict[str, float]:
    _stamp(ctx, "start")
    deadline = time.monotonic() + value["seconds"]
    while time.monotonic() < deadline:
        if ctx.cancelled:
            _stamp(ctx, "stopped")
            return {"stopped": True}  # discarded by the worker
        time.sleep(0.01)
    _stamp(ctx, "end")
    return {"slept": value["seconds"]}


cancellable = (
    Flow[Wait]("cancellable", timeout=60)
    .step("async_wait", wait_async)
    .step("sync_wait", wait_sync)
)


async def late_async(value: Any, ctx: StepContext) -> dict[str, int]:
    _stamp(ctx, "start")
    if ctx.attempt == 1:
        await asyncio.sleep(30)
    _stamp(ctx, "end")
    return {"attempt": ctx.attempt}


def late_sync(value: Any, ctx: StepContext) -> dict[str, int]:
    _stamp(ctx, "start")
    if ctx.attempt == 1:
        time.sleep(5)  # ignores ctx.cancelled: its result must be discarded
    _stamp(ctx, "end")
    return {"attempt": ctx.attempt}


overtime = (
    Flow[Any]("overtime", base_delay=1, timeout=3, max_attempts=2)
    .step("late_async", late_async)
    .step("late_sync", late_sync)
)


def retry_later(value: Any, ctx: StepContext) -> dict[str, int]:
    _stamp(ctx, "start")
    if ctx.attempt == 1:
        raise pgweave.RetryAfter(2.5, "not ready yet")
    return {"attempt": ctx.attempt}


class BrokenError(ValueError):
    pass


def broken(value: Any) -> None:
    raise BrokenError("nothing works")


retrying = Flow[Any]("retrying", base_delay=30, timeout=5, max_attempts=3).step(
    "later", retry_later
)
breaking = Flow[Any]("breaking", timeout=5, max_attempts=1).step("broken", broken)
