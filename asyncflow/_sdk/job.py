"""What a handler receives and how what it does becomes a report."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asyncflow.v1 import task_service_pb2 as pb

log = logging.getLogger("asyncflow.worker")

MAX_ERROR_CHARS = 4096


@dataclass(frozen=True)
class Job:
    """One stage of one task, handed to a handler."""

    task_id: str
    task_type: str
    stage: str
    """The stage to run ("" for a task created without one)."""
    context: str
    """What the previous stage left (or what the producer gave)."""
    attempt: int
    """1 for the first time this task is held, then 2, 3, ..."""
    retries: int
    """Retries already used by this stage."""
    max_retries: int
    priority: int
    user_id: str


@dataclass(frozen=True)
class RunNext:
    """Return this from a handler: this stage is done; the task goes back to the
    queue (due at once) to run `stage` next."""

    stage: str
    context: str | None = None
    """New context for the next stage (None keeps the current one)."""


@dataclass(frozen=True)
class Done:
    """Return this (or None) from a handler: every stage is done."""

    context: str | None = None


class RetryLater(Exception):
    """Raise from a handler to run this stage again after `delay` seconds
    (None: the type's back-off). Counts as a retry."""

    def __init__(self, message: str = "", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class NonRetryable(Exception):
    """Raise from a handler when the task can never succeed: it fails at once."""


Result = RunNext | Done | None
Handler = Callable[[Job], Awaitable[Result]]


def job_from_pb(task: pb.Task) -> Job:
    return Job(
        task_id=task.task_id,
        task_type=task.task_type,
        stage=task.task_stage,
        context=task.context,
        attempt=task.lease.attempt,
        retries=task.crt_retry_num,
        max_retries=task.max_retry_num,
        priority=task.priority,
        user_id=task.user_id,
    )


def _report(task: pb.Task) -> pb.SetTaskRequest:
    return pb.SetTaskRequest(task_id=task.task_id, lease_token=task.lease.token)


def release_report(task: pb.Task) -> pb.SetTaskRequest:
    report = _report(task)
    report.release.SetInParent()
    return report


async def run_handler(handler: Handler, task: pb.Task) -> pb.SetTaskRequest:
    """Run one stage and turn its result, or what it raised, into a report."""
    report = _report(task)
    try:
        result = await handler(job_from_pb(task))
    except RetryLater as later:
        report.retry.error_message = str(later)[:MAX_ERROR_CHARS]
        if later.delay is not None:
            report.retry.delay_seconds = max(0, round(later.delay))
        return report
    except NonRetryable as fatal:
        report.fail.error_message = str(fatal)[:MAX_ERROR_CHARS] or type(fatal).__name__
        return report
    except Exception as error:  # any other failure follows the type's retry policy
        log.warning("task %s stage %r failed: %r", task.task_id, task.task_stage, error)
        report.retry.error_message = repr(error)[:MAX_ERROR_CHARS]
        return report
    if isinstance(result, RunNext):
        report.next_stage.task_stage = result.stage
        if result.context is not None:
            report.context = result.context
    else:
        report.success.SetInParent()
        if result is not None and result.context is not None:
            report.context = result.context
    return report
