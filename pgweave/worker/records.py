"""What the worker's parts hand each other: task records, outcomes, counters and errors."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any


class WorkerError(RuntimeError):
    """A worker cannot start (for example its flow does not match the database)."""


class FlowShapeMismatchError(WorkerError):
    """The flow stored in the database differs from the worker's definition."""

    def __init__(self, flow_slug: str, differences: Sequence[str]) -> None:
        self.flow_slug = flow_slug
        self.differences = list(differences)
        listed = "\n".join(f"  - {d}" for d in self.differences)
        super().__init__(
            f"flow {flow_slug!r} in the database does not match this worker's definition "
            f"(this definition first, the database second):\n{listed}\n"
            "Deploy the flow under a new slug, or restart the worker with data loss allowed "
            "(--allow-data-loss / WorkerConfig(allow_data_loss=True)) to drop the stored flow "
            "with its runs and recreate it."
        )


@dataclass(frozen=True)
class TaskRecord:
    """One started task, as ``pgflow.start_tasks`` returns it."""

    flow_slug: str
    run_id: uuid.UUID
    step_slug: str
    input: Any
    msg_id: int
    task_index: int
    flow_input: Any

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskRecord:
        """From a ``step_task_record`` row as a dict (key columns must not be NULL)."""
        for key in ("run_id", "step_slug", "msg_id", "task_index"):
            if row[key] is None:
                raise WorkerError(f"start_tasks returned a task record with a NULL {key}")
        return cls(
            flow_slug=str(row["flow_slug"]),
            run_id=row["run_id"],
            step_slug=str(row["step_slug"]),
            input=row["input"],
            msg_id=int(row["msg_id"]),
            task_index=int(row["task_index"]),
            flow_input=row["flow_input"],
        )

    @property
    def key(self) -> tuple[uuid.UUID, str, int]:
        """The task's primary key in ``pgflow.step_tasks``."""
        return (self.run_id, self.step_slug, self.task_index)


class Reported(Enum):
    """What became of a task's outcome."""

    COMPLETED = "completed"
    FAILED = "failed"
    UNREPORTED = "unreported"
    """The engine could not be told (connection lost): the task is requeued later."""


@dataclass
class WorkerStats:
    """Counters of what a worker did (for tests, logs and the final summary)."""

    polls: int = 0
    poll_failures: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    unreported: int = 0
    abandoned: int = 0
    requeued: int = 0
    discarded: int = 0
    """Tasks stopped because their run was cancelled (never reported)."""

    def count(self, reported: Reported) -> None:
        """Count one reported outcome."""
        if reported is Reported.COMPLETED:
            self.completed += 1
        elif reported is Reported.FAILED:
            self.failed += 1
        else:
            self.unreported += 1
