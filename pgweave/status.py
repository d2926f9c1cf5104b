"""Readable views of a run for the terminal (rich tables of its steps and tasks)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from rich.console import Group
from rich.table import Table
from rich.text import Text

from pgweave.runs import RunState

STATUS_STYLES = {
    "created": "dim",
    "queued": "dim",
    "started": "yellow",
    "completed": "green",
    "failed": "bold red",
    "skipped": "magenta",
    "cancelled": "red",
}


def styled(status: str) -> Text:
    """A status word in its colour."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _clock(value: datetime | None) -> str:
    return value.astimezone().strftime("%H:%M:%S.%f")[:-3] if value else ""


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    return f"{seconds:.2f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def fetch_tasks(conn: psycopg.Connection, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """The run's tasks, in step order then task order."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select t.step_slug, t.task_index, t.status, t.attempts_count, t.last_worker_id,"
            " t.error_message, t.queued_at, t.started_at, t.completed_at, t.failed_at,"
            " t.requeued_count"
            " from pgflow.step_tasks as t"
            " join pgflow.steps as s on s.flow_slug = t.flow_slug and s.step_slug = t.step_slug"
            " where t.run_id = %s order by s.step_index, t.task_index",
            (run_id,),
        ).fetchall()


def run_view(state: RunState, tasks: list[dict[str, Any]] | None = None) -> Group:
    """The run's header, a table of its steps and (when given) a table of its tasks."""
    end = state.completed_at or state.failed_at
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("run", str(state.run_id))
    header.add_row("flow", state.flow_slug)
    header.add_row("status", styled(state.status))
    header.add_row("started", _clock(state.started_at))
    if end is not None:
        header.add_row("took", _duration(state.started_at, end))
    header.add_row("input", _short(state.input, 100))
    if state.status == "completed":
        header.add_row("output", _short(state.output, 100))
    if state.error_message:
        header.add_row("error", Text(state.error_message, style="red"))

    steps = Table(title="steps", title_justify="left", expand=False)
    for column in ("step", "status", "tasks", "started", "took", "output / error"):
        steps.add_column(column, no_wrap=column != "output / error")
    by_step: dict[str, list[dict[str, Any]]] = {}
    for task in tasks or []:
        by_step.setdefault(task["step_slug"], []).append(task)
    for step in state.steps.values():
        step_tasks = by_step.get(step.step_slug, [])
        done = sum(1 for t in step_tasks if t["status"] == "completed")
        total = step.initial_tasks if step.initial_tasks is not None else "?"
        if step.status == "failed":
            detail = Text(step.error_message or "", style="red")
        elif step.status == "skipped":
            reason = step.skip_reason or ""
            detail = Text(reason + (f": {step.error_message}" if step.error_message else ""))
        else:
            detail = Text(_short(step.output))
        end_at = step.completed_at or step.failed_at or step.skipped_at
        steps.add_row(
            step.step_slug,
            styled(step.status),
            f"{done}/{total}",
            _clock(step.started_at),
            _duration(step.started_at, end_at),
            detail,
        )
    parts: list[Any] = [header, steps]
    if tasks:
        table = Table(title="tasks", title_justify="left")
        for column in ("step", "#", "status", "attempts", "requeued", "worker", "took", "error"):
            table.add_column(column, no_wrap=column != "error")
        for task in tasks:
            worker = str(task["last_worker_id"])[:8] if task["last_worker_id"] else ""
            table.add_row(
                task["step_slug"],
                str(task["task_index"]),
                styled(task["status"]),
                str(task["attempts_count"]),
                str(task["requeued_count"]),
                worker,
                _duration(task["started_at"], task["completed_at"] or task["failed_at"]),
                Text(task["error_message"] or "", style="red"),
            )
        parts.append(table)
    return Group(*parts)


def progress_line(state: RunState) -> str:
    """``3/5 steps done · summary started`` for a live progress display."""
    done = sum(1 for s in state.steps.values() if s.is_terminal)
    running = [s.step_slug for s in state.steps.values() if s.status == "started"]
    text = f"run {state.status}: {done}/{len(state.steps)} steps done"
    if running:
        text += " · running " + ", ".join(running)
    return text
