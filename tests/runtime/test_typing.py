"""What a type checker catches in flow definitions (mypy --strict on small programs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api as mypy_api

from tests import PROJECT_ROOT

PRELUDE = """
from typing import Any, TypedDict
from pgweave.dsl import Flow, StepContext

class Site(TypedDict):
    url: str

def fetch(site: Site) -> str:
    return site["url"]

def fetch_ctx(site: Site, ctx: StepContext) -> str:
    return site["url"] + ctx.step_slug

def double(n: int) -> int:
    return n * 2

def shout(text: str) -> str:
    return text.upper()

async def afetch(site: Site) -> str:
    return site["url"]
"""

GOOD = """
flow = (
    Flow[Site]("ok")
    .step("fetch", fetch)
    .step("ctx", fetch_ctx)
    .step("async_fetch", afetch)
    .step("upper", lambda deps: str(deps["fetch"]).upper(), depends_on=["fetch"])
    .map("chars", shout, array="fetch")
)
numbers = Flow[list[int]]("nums").map("double", double).step("sum", lambda d: sum(d["double"]), depends_on=["double"])
reveal_type(numbers)
"""


def mypy_errors(tmp_path: Path, body: str) -> list[str]:
    """Run mypy --strict on the prelude + body; return its error lines."""
    source = tmp_path / "flow_under_test.py"
    source.write_text(PRELUDE + body, encoding="utf-8")
    stdout, _stderr, _status = mypy_api.run(
        [
            "--strict",
            "--cache-dir",
            str(PROJECT_ROOT / ".mypy_cache"),
            "--no-error-summary",
            str(source),
        ]
    )
    return [
        line for line in stdout.splitlines() if ": error:" in line or ": note: Revealed" in line
    ]


@pytest.mark.slow
def test_well_typed_flows_pass(tmp_path: Path) -> None:
    assert mypy_errors(tmp_path, GOOD) == [
        f"{tmp_path / 'flow_under_test.py'}:{PRELUDE.count(chr(10)) + 11}: note: Revealed type is "
        '"pgweave.dsl.Flow[list[int]]"'
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('Flow[Site]("f").step("a", double)', 'Argument 2 to "step" of "Flow"'),
        ('Flow[int]("f").step("a", fetch_ctx)', 'Argument 2 to "step" of "Flow"'),
        ('Flow[str]("f").map("m", shout)', 'Missing named argument "array"'),
        ('Flow[list[int]]("f").map("m", shout)', 'Argument 2 to "map" of "Flow"'),
        ('Flow[Site]("f").step("a", fetch, when_unmet="ignore")', "No overload variant"),
        ('Flow[Site]("f").step("a", fetch).slug = "x"', "read-only"),
    ],
)
def test_type_errors_are_caught(tmp_path: Path, body: str, expected: str) -> None:
    errors = mypy_errors(tmp_path, body + "\n")
    assert errors, f"mypy accepted: {body}"
    assert any(expected in line for line in errors), errors
