"""The scheduling rules: order_time, retry back-off, and the outcome of a report.

order_time folds FIFO, priority and back-off into one sortable integer
(reference §4): a task is due once order_time <= now, oldest first.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from asyncflow.core.model import RetryPolicy, RetryStrategy, Task, TaskChange, TaskStatus

MAX_PRIORITY = 3600 * 24 * 30 * 12
"""Priority is seconds of advance, at most one (360-day) year, as in the original."""

MAX_SHIFT = 30
"""Progressive back-off stops doubling after this many retries (avoids overflow)."""

LOG_HISTORY = 3
LOG_ERROR_CHARS = 256
"""Error text kept per entry of the schedule log."""

LEASE_EXPIRED = "lease expired before a report (stuck task recovered)"

MAX_DELAY = 10 * 365 * 86_400
"""How far ahead a task's run_at may be: ten years."""


def order_time_for_run(now: int, priority: int) -> int:
    """A task (re)queued to run now: it keeps its priority advance."""
    return now - priority


def order_time_for_create(now: int, priority: int, run_at: int) -> int:
    """A new task: due now with its advance, or at a later run_at.

    A later run_at is the order_time itself, priority not subtracted (as for a
    retry back-off): a task must never be held before the time it was given.
    Among due tasks it sorts like a task created at run_at; its later stages
    get their advance back (next_stage).
    """
    return run_at if run_at > now else order_time_for_run(now, priority)


def retry_delay(policy: RetryPolicy, retries_so_far: int) -> int:
    if policy.strategy is RetryStrategy.UNIFORM:
        return policy.interval
    return min(policy.interval << min(retries_so_far, MAX_SHIFT), policy.max_interval)


def _log(task: Task, now: int, outcome: str, error: str) -> str:
    """Append this outcome to the task's schedule log, keeping the last few."""
    return _appended(task.schedule_log, task.hold_count, task.task_stage, outcome, error, now)


@lru_cache(maxsize=256)
def _appended(
    schedule_log: str, attempt: int, stage: str, outcome: str, error: str, now: int
) -> str:
    """_log's work, remembered: a batch of reports (a drain's successes, first
    attempts of one stage in the same second) mostly writes the same log, so
    most reports are spared a json.loads and a json.dumps."""
    try:
        log = json.loads(schedule_log) if schedule_log else {}
    except ValueError:
        log = {}
    history = log.get("history", []) if isinstance(log, dict) else []
    if isinstance(log, dict) and "last" in log:
        history = [*history, log["last"]][-LOG_HISTORY:]
    last = {
        "attempt": attempt,
        "stage": stage,
        "outcome": outcome,
        "error": error[:LOG_ERROR_CHARS],
        "time": now,
    }
    return json.dumps({"last": last, "history": history}, separators=(",", ":"))


def _change(
    task: Task,
    now: int,
    context: str,
    outcome: str,
    status: TaskStatus,
    error: str = "",
    **moved: Any,
) -> TaskChange:
    """The task's columns after `outcome`: unchanged unless `moved` says otherwise."""
    kept: dict[str, Any] = {
        "task_stage": task.task_stage,
        "crt_retry_num": task.crt_retry_num,
        "order_time": task.order_time,
    }
    return TaskChange(
        status=status,
        context=context,
        schedule_log=_log(task, now, outcome, error),
        **(kept | moved),
    )


def succeed(task: Task, now: int, context: str) -> TaskChange:
    return _change(task, now, context, "success", TaskStatus.SUCCESS)


def next_stage(task: Task, now: int, stage: str, context: str) -> TaskChange:
    """Stage done: back to the queue at the tail minus its advance, with fresh retries."""
    return _change(
        task, now, context, "next_stage", TaskStatus.PENDING,
        task_stage=stage, crt_retry_num=0, order_time=order_time_for_run(now, task.priority),
    )  # fmt: skip


def retry(task: Task, now: int, context: str, error: str, delay: int | None) -> TaskChange:
    """Run the stage again after a back-off, or fail once max_retry_num retries are used.

    The back-off deliberately ignores priority, so a failing high-priority task
    cannot starve the others (reference §4.1).
    """
    return _again(task, now, context, "retry", error, delay)


def recover(task: Task, now: int) -> TaskChange:
    """A lease that expired unreported counts as a failed attempt (reference §7.1):
    the task runs again after its back-off, or fails once its retries are used."""
    return _again(task, now, task.context, "lease_expired", LEASE_EXPIRED, None)


def _again(
    task: Task, now: int, context: str, outcome: str, error: str, delay: int | None
) -> TaskChange:
    if task.crt_retry_num >= task.max_retry_num:
        return fail(task, now, context, error or "retries exhausted")
    wait = retry_delay(task.retry, task.crt_retry_num) if delay is None else delay
    return _change(
        task, now, context, outcome, TaskStatus.PENDING, error,
        crt_retry_num=task.crt_retry_num + 1, order_time=now + wait,
    )  # fmt: skip


def fail(task: Task, now: int, context: str, error: str) -> TaskChange:
    return _change(task, now, context, "fail", TaskStatus.FAILED, error)


def cancel(task: Task, now: int, reason: str) -> TaskChange:
    """An operator stops the task for good (until an operator retries it)."""
    return _change(task, now, task.context, "cancel", TaskStatus.CANCELLED, reason)


def requeue(task: Task, now: int, stage: str | None) -> TaskChange:
    """An operator's retry of a FAILED or CANCELLED task: due at once with its
    advance, at `stage` (None: where it stopped), with a fresh retry budget."""
    return _change(
        task, now, task.context, "operator_retry", TaskStatus.PENDING,
        task_stage=task.task_stage if stage is None else stage, crt_retry_num=0,
        order_time=order_time_for_run(now, task.priority),
    )  # fmt: skip


def release(task: Task, now: int, context: str) -> TaskChange:
    """Back to the queue where it was, as if never held (a worker shutting down)."""
    return _change(task, now, context, "release", TaskStatus.PENDING)
