"""The benchmark handlers as pure functions, shared by the Python worker's flows (bench.flows)
and the raw SQL driver, which imports only this module (a fast start)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Pure = Callable[[Any], Any]


def w1_only(flow_input: Any) -> Any:
    return {"n": flow_input["n"]}


def w2_a(flow_input: Any) -> Any:
    return flow_input["n"]


def w2_b(deps: Any) -> Any:
    return deps["a"] + 1


def w2_c(deps: Any) -> Any:
    return deps["b"] + 1


def inc(element: Any) -> Any:
    return element + 1


def double(element: Any) -> Any:
    return element * 2


def not_an_array(flow_input: Any) -> Any:
    return {"not": "an array"}


def w6_second(deps: Any) -> Any:
    return deps["first"]["n"] + 1


PURE: dict[tuple[str, str], Pure] = {
    ("bench_w1", "only"): w1_only,
    ("bench_w2", "a"): w2_a,
    ("bench_w2", "b"): w2_b,
    ("bench_w2", "c"): w2_c,
    ("bench_w3", "m"): inc,
    ("bench_w3x", "m"): inc,
    ("bench_w4", "m1"): inc,
    ("bench_w4", "m2"): double,
    ("bench_w5", "big"): inc,
    ("bench_w5", "bad"): not_an_array,
    ("bench_w5", "child"): inc,
    ("bench_w6", "first"): w1_only,
    ("bench_w6", "second"): w6_second,
}
"""(flow, step) -> the handler's computation, shared by the worker and the raw driver."""

ROOT_SINGLE = {("bench_w1", "only"), ("bench_w2", "a"), ("bench_w5", "bad"), ("bench_w6", "first")}
"""Root single steps: their handler gets the flow input (start_tasks' flow_input)."""


def output_for(flow: str, step: str, task_input: Any, flow_input: Any) -> Any:
    """The output a no-op handler produces for a task (what the raw driver reports)."""
    value = flow_input if (flow, step) in ROOT_SINGLE else task_input
    return PURE[(flow, step)](value)
