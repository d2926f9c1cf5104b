"""The demo command's flows, end to end on their own throwaway PostgreSQL."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from pgweave_examples.demo import run_demo


@pytest.mark.slow
def test_demo_runs_both_examples_to_completion() -> None:
    out = io.StringIO()
    assert run_demo("all", Console(file=out, width=200)) == 0
    text = out.getvalue()
    assert '"website_id": "' in text
    assert '"longest": "postgresql"' in text
    assert "demo complete" in text
