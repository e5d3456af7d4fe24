"""What the core tells the Metrics port: events tallied by (task type, outcome).

A batch is told once per (type, outcome), not once per task, so that a report
batch of a thousand tasks costs a handful of counter updates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from asyncflow.core.ids import parse_task_id
from asyncflow.core.model import Fail, NextStage, Release, Report, Retry, Success, Task, TaskStatus
from asyncflow.core.ports import Metrics, TaskEvent
from asyncflow.errors import AsyncflowError, FailedPrecondition

OUTCOMES: dict[type, str] = {
    Success: "success",
    NextStage: "next_stage",
    Retry: "retry",
    Fail: "fail",
    Release: "release",
}


def tally(metrics: Metrics, event: TaskEvent, pairs: Iterable[tuple[str, str]]) -> None:
    """Tell `metrics` how many (task_type, outcome) pairs went through `event`."""
    for (task_type, outcome), count in Counter(pairs).items():
        metrics.tasks(event, task_type, outcome, count)


def created(results: list[tuple[Task, bool]]) -> Iterator[tuple[str, str]]:
    """ "existing": an idempotency key named a task created before."""
    return ((task.task_type, "created" if new else "existing") for task, new in results)


def reported(
    reports: list[Report], results: list[Task | AsyncflowError]
) -> Iterator[tuple[str, str]]:
    """Applied reports by what the holder reported; "refused" for a holder whose
    lease was gone (fencing at work). A malformed report is no task's event."""
    for report, result in zip(reports, results, strict=True):
        if isinstance(result, Task):
            yield result.task_type, OUTCOMES[type(report.outcome)]
        elif isinstance(result, FailedPrecondition):  # the task exists: its type is real
            yield parse_task_id(report.task_id)[0], "refused"


def recovered(tasks: list[Task]) -> Iterator[tuple[str, str]]:
    """ "retry": back to the queue; "failed": its retries were used up."""
    return ((t.task_type, "failed" if t.status is TaskStatus.FAILED else "retry") for t in tasks)
