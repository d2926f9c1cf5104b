"""Readable views for the terminal: a run (rich tables of its steps and tasks, with the
failure details of its failed tasks) and listings of runs, flows and workers."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import psycopg
from rich.console import Group
from rich.table import Table
from rich.text import Text

from pgweave.listing import FlowSummary, WorkerSummary, tasks_query
from pgweave.runs import RunState
from pgweave_client.models import RunsRow, StepTasksRow

TRACEBACK_LINES = 12
"""How many last lines of a failed task's traceback ``pgweave status`` shows."""

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


def fetch_tasks(conn: psycopg.Connection, run_id: uuid.UUID) -> list[StepTasksRow]:
    """The run's tasks, in step order then task order."""
    return tasks_query(run_id).run(conn)


def run_view(state: RunState, tasks: list[StepTasksRow] | None = None) -> Group:
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
    if state.cancelled_at is not None:
        header.add_row("cancelled", f"{_clock(state.cancelled_at)} {state.cancel_reason or ''}")
    if state.paused_at is not None:
        header.add_row("paused", f"since {_clock(state.paused_at)} (`pgweave unpause` resumes it)")
    if state.restart_of_run_id is not None:
        header.add_row("restart of", str(state.restart_of_run_id))
    if state.idempotency_key is not None:
        header.add_row("key", state.idempotency_key)

    steps = Table(title="steps", title_justify="left", expand=False)
    for column in ("step", "status", "tasks", "started", "took", "output / error"):
        steps.add_column(column, no_wrap=column != "output / error")
    by_step: dict[str, list[StepTasksRow]] = {}
    for task in tasks or []:
        by_step.setdefault(task.step_slug, []).append(task)
    for step in state.steps.values():
        step_tasks = by_step.get(step.step_slug, [])
        done = sum(1 for t in step_tasks if t.status == "completed")
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
        parts.append(_tasks_table(tasks))
        parts.extend(_failure(task) for task in tasks if task.error_traceback)
    return Group(*parts)


def _tasks_table(tasks: list[StepTasksRow]) -> Table:
    table = Table(title="tasks", title_justify="left")
    for column in ("step", "#", "status", "attempts", "requeued", "worker", "took", "error"):
        table.add_column(column, no_wrap=column != "error")
    for task in tasks:
        worker = str(task.last_worker_id)[:8] if task.last_worker_id else ""
        error = task.error_message or ""
        if task.error_type:
            error = f"{task.error_type}: {error}"
        table.add_row(
            task.step_slug,
            str(task.task_index),
            styled(task.status),
            str(task.attempts_count),
            str(task.requeued_count),
            worker,
            _duration(task.started_at, task.completed_at or task.failed_at),
            Text(error, style="red"),
        )
    return table


def _failure(task: StepTasksRow) -> Group:
    """The last lines of a task's last failure traceback, under a title naming the task."""
    lines = (task.error_traceback or "").rstrip().splitlines()
    shown = lines[-TRACEBACK_LINES:]
    if len(lines) > len(shown):
        shown.insert(0, f"… ({len(lines) - len(shown)} earlier lines)")
    title = f"traceback of {task.step_slug}[{task.task_index}] ({task.error_type or 'error'}):"
    return Group(Text(title, style="bold red"), Text("\n".join(shown), style="red"))


def progress_line(state: RunState) -> str:
    """``3/5 steps done · summary started`` for a live progress display."""
    done = sum(1 for s in state.steps.values() if s.is_terminal)
    running = [s.step_slug for s in state.steps.values() if s.status == "started"]
    text = f"run {state.status}: {done}/{len(state.steps)} steps done"
    if running:
        text += " · running " + ", ".join(running)
    return text


def _stamp(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def runs_table(runs: list[RunsRow]) -> Table:
    """Runs as a table: id, flow, status (and paused), start, duration, what it restarts."""
    table = Table(title=f"{len(runs)} run(s), newest first", title_justify="left")
    for column in ("run", "flow", "status", "started", "took", "restart of"):
        table.add_column(column, no_wrap=True, min_width=36 if column == "run" else None)
    for run in runs:
        status = styled(run.status)
        if run.paused_at is not None:
            status.append(" (paused)", style="yellow")
        end = run.completed_at or run.failed_at or run.cancelled_at
        restart = str(run.restart_of_run_id)[:8] if run.restart_of_run_id else ""
        row = (str(run.run_id), run.flow_slug, status, _stamp(run.started_at))
        table.add_row(*row, _duration(run.started_at, end), restart)
    return table


def flows_table(flows: list[FlowSummary]) -> Table:
    """Flows as a table: slug, steps, started runs, paused, retry and timeout options."""
    table = Table(title=f"{len(flows)} flow(s)", title_justify="left")
    for column in ("flow", "steps", "active runs", "paused", "attempts", "delay", "timeout"):
        table.add_column(column, no_wrap=True)
    for item in flows:
        flow = item.flow
        paused = Text("paused", style="yellow") if flow.paused_at else Text("")
        table.add_row(
            flow.flow_slug,
            str(item.step_count),
            str(item.active_runs),
            paused,
            str(flow.opt_max_attempts),
            f"{flow.opt_base_delay}s",
            f"{flow.opt_timeout}s",
        )
    return table


def workers_table(workers: list[WorkerSummary], stale_after: float = 30.0) -> Table:
    """Workers as a table; a worker is ``stale`` when its last heartbeat is older than
    ``stale_after`` seconds (it may have died without stopping)."""
    table = Table(title=f"{len(workers)} worker(s)", title_justify="left")
    for column in ("worker", "flow", "function", "started", "heartbeat", "state"):
        table.add_column(column, no_wrap=True)
    for item in workers:
        worker = item.worker
        age = item.heartbeat_age.total_seconds()
        if worker.stopped_at is not None:
            state = Text("stopped", style="dim")
        elif worker.deprecated_at is not None:
            state = Text("deprecated", style="magenta")
        else:
            state = Text("stale", style="red") if age > stale_after else Text("alive", "green")
        table.add_row(
            str(worker.worker_id)[:8],
            worker.queue_name,
            worker.function_name,
            _stamp(worker.started_at),
            f"{age:.0f}s ago",
            state,
        )
    return table
