"""The benchmark flows (W1-W6 and the memory probe) with their no-op handlers.

Each handler is a pure function of its input, so the raw SQL driver computes exactly the
outputs the Python worker produces (:func:`bench.handlers.output_for`) and the verification knows what
every run's output must be (:func:`expected_run_output`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from bench.handlers import Pure, double, inc, not_an_array, w1_only, w2_a, w2_b, w2_c, w6_second
from pgweave.dsl import Flow


def _async(pure: Pure) -> Callable[[Any], Any]:
    async def handler(value: Any) -> Any:
        return pure(value)

    handler.__name__ = pure.__name__
    return handler


async def _sleepy(element: Any) -> Any:
    await asyncio.sleep(float(os.environ.get("BENCH_HOLD_SECONDS", "3")))
    return element


W1: Flow[Any] = Flow[Any]("bench_w1").step("only", _async(w1_only))
W2: Flow[Any] = (
    Flow[Any]("bench_w2")
    .step("a", _async(w2_a))
    .step("b", _async(w2_b), depends_on=["a"])
    .step("c", _async(w2_c), depends_on=["b"])
)
W3: Flow[Any] = Flow[list[Any]]("bench_w3").map("m", _async(inc))
W3X: Flow[Any] = Flow[list[Any]]("bench_w3x").map("m", _async(inc))
"""W3 again under another slug, so the 1,000 and 10,000 element cases can share a database."""
W4: Flow[Any] = (
    Flow[list[Any]]("bench_w4").map("m1", _async(inc)).map("m2", _async(double), array="m1")
)
W5: Flow[Any] = (
    Flow[list[Any]]("bench_w5")
    .map("big", _async(inc))
    .step("bad", _async(not_an_array))
    .map("child", _async(inc), array="bad")
)
W6: Flow[Any] = (
    Flow[Any]("bench_w6")
    .step("first", _async(w1_only))
    .step("second", _async(w6_second), depends_on=["first"])
)
MEMORY: Flow[Any] = Flow[list[Any]]("bench_mem", timeout=120).map("hold", _sleepy)
"""Tasks held in flight: each handler sleeps $BENCH_HOLD_SECONDS (3 s; async, no threads)."""

FLOWS: dict[str, Flow[Any]] = {f.slug: f for f in (W1, W2, W3, W3X, W4, W5, W6, MEMORY)}


def expected_run_output(flow: str, flow_input: Any) -> Any:
    """A completed run's output (its leaf steps' outputs) for a flow input."""
    if flow == "bench_w1":
        return {"only": {"n": flow_input["n"]}}
    if flow == "bench_w2":
        return {"c": flow_input["n"] + 2}
    if flow in ("bench_w3", "bench_w3x"):
        return {"m": [x + 1 for x in flow_input]}
    if flow == "bench_w4":
        return {"m2": [(x + 1) * 2 for x in flow_input]}
    if flow == "bench_w6":
        return {"second": flow_input["n"] + 1}
    raise KeyError(flow)
