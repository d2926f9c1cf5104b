"""The smoke run (`pgweave smoke`, first half of the README's main job) passes end to end."""

from __future__ import annotations

import psycopg

from pgweave.smoke import run_smoke


def test_smoke_run_completes_the_two_step_flow(conn: psycopg.Connection) -> None:
    lines: list[str] = []
    run_smoke(conn, lines.append)
    assert any("completed report[0]" in line for line in lines)
    row = conn.execute(
        "select status, output from pgflow.runs where flow_slug = 'smoke'"
    ).fetchone()
    assert row == ("completed", {"report": {"text": "got 42"}})
    assert conn.execute('select count(*) from pgmq."q_smoke"').fetchone() == (0,)
