"""Operator control of tasks and types: cancel, retry, pause and resume.

Built on TaskCore (its store, cache, clock and due listener), with plain
parameters and domain values in and out, so that the gRPC servicer, the HTTP
side and tools call the same rules. Every write is conditional on the version
of the row it read: a concurrent report, hold, renewal or recovery either lands
first (and the operator's change is decided again on the new row) or finds the
row changed and keeps nothing of its own (the store's fencing).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from asyncflow.core import policy
from asyncflow.core.ids import check_task_type, parse_task_id
from asyncflow.core.model import Task, TaskChange, TaskFilter, TaskStatus, TaskTypeConfig
from asyncflow.core.ports import CancelListener
from asyncflow.core.service import TaskCore
from asyncflow.core.validate import MAX_ERROR_CHARS, MAX_STAGE_CHARS, check_text
from asyncflow.errors import (
    Aborted,
    AsyncflowError,
    InvalidArgument,
    TaskFinished,
    TaskNotFound,
    TaskNotRetryable,
    TaskTypeNotFound,
)

log = logging.getLogger(__name__)

RACE_RETRIES = 3
"""Times a change is decided again on a row that a concurrent writer changed first."""
WAKE_EVERY_STREAM = 1 << 30
"""A wake-up count that reaches every stream waiting on a type (a resume)."""
CANCELLABLE = frozenset({TaskStatus.PENDING, TaskStatus.PROCESSING})
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})

Decision = TaskChange | Task | AsyncflowError
"""What to write on a task; or the task itself when there is nothing to write; or why not."""


@dataclass
class Applied:
    """What _apply did."""

    results: list[Task | AsyncflowError]
    """Per task, in order: the task as the call leaves it, or why it was refused."""
    written: list[Task] = field(default_factory=list)
    """The tasks this call changed, in order."""
    held: list[tuple[str, str]] = field(default_factory=list)
    """(task_id, lease_token) of the PROCESSING tasks this call cancelled."""


class NoCancelListener:
    """No stream to tell (tools that run the core alone)."""

    def tasks_cancelled(self, held: list[tuple[str, str]], reason: str) -> None:
        return None


class TaskControl:
    def __init__(self, core: TaskCore, on_cancel: CancelListener | None = None) -> None:
        self.core = core
        self.on_cancel: CancelListener = on_cancel or NoCancelListener()

    # -- cancel -----------------------------------------------------------------

    async def cancel_task(self, task_id: str, reason: str = "") -> Task:
        """PENDING or PROCESSING -> CANCELLED; a CANCELLED task is returned as it is."""
        check_text(reason, "reason", MAX_ERROR_CHARS)
        applied = await self._cancel([await self._read(task_id)], reason)
        return _only(applied)

    async def cancel_tasks(
        self,
        task_type: str,
        status: TaskStatus | None,
        task_stage: str | None,
        page_size: int,
        page_token: str,
        reason: str = "",
    ) -> tuple[list[Task], str]:
        """Cancel one page of the type's matching PENDING/PROCESSING tasks: the
        tasks this call cancelled, and the token of the next page ("" at the end)."""
        check_text(reason, "reason", MAX_ERROR_CHARS)
        tasks, next_token = await self._page(
            task_type, _statuses(status, CANCELLABLE), task_stage, page_size, page_token
        )
        return (await self._cancel(tasks, reason)).written, next_token

    async def _cancel(self, tasks: list[Task], reason: str) -> Applied:
        def decide(task: Task, now: int) -> Decision:
            if task.status is TaskStatus.CANCELLED:
                return task
            if task.status.terminal:
                return TaskFinished(
                    f"task {task.task_id} is {task.status.name}: a finished task cannot be"
                    " cancelled",
                    field="task_id",
                )
            return policy.cancel(task, now, reason)

        applied = await self._apply(tasks, decide)
        if applied.held:
            self.on_cancel.tasks_cancelled(applied.held, reason)
        for task in applied.written:
            log.info("cancelled task %s", task.task_id,
                     extra={"action": "cancel", "task_id": task.task_id})  # fmt: skip
        return applied

    # -- retry --------------------------------------------------------------------

    async def retry_task(self, task_id: str, task_stage: str | None = None) -> Task:
        """FAILED or CANCELLED -> PENDING (at `task_stage`, if given)."""
        if task_stage is not None:
            check_text(task_stage, "task_stage", MAX_STAGE_CHARS)
        return _only(await self._apply([await self._read(task_id)], _retrier(task_stage)))

    async def retry_tasks(
        self,
        task_type: str,
        status: TaskStatus | None,
        task_stage: str | None,
        page_size: int,
        page_token: str,
        new_task_stage: str | None = None,
    ) -> tuple[list[Task], str]:
        """Retry one page of the type's matching FAILED/CANCELLED tasks: the tasks
        this call retried, and the token of the next page ("" at the end)."""
        if new_task_stage is not None:
            check_text(new_task_stage, "new_task_stage", MAX_STAGE_CHARS)
        tasks, next_token = await self._page(
            task_type, _statuses(status, RETRYABLE), task_stage, page_size, page_token
        )
        return (await self._apply(tasks, _retrier(new_task_stage))).written, next_token

    # -- pause / resume -------------------------------------------------------------

    async def pause_type(self, task_type: str) -> TaskTypeConfig:
        """Nothing of the type is held or pushed until resume_type; creates go on."""
        config = await self._set_paused(task_type, True)
        log.info("paused task type %s", task_type,
                 extra={"action": "pause_type", "task_type": task_type})  # fmt: skip
        return config

    async def resume_type(self, task_type: str) -> TaskTypeConfig:
        """Holds and pushes go on; every stream waiting on the type is woken now."""
        config = await self._set_paused(task_type, False)
        self.core.on_due.tasks_due(task_type, self.core.clock.now(), WAKE_EVERY_STREAM)
        log.info("resumed task type %s", task_type,
                 extra={"action": "resume_type", "task_type": task_type})  # fmt: skip
        return config

    async def _set_paused(self, task_type: str, paused: bool) -> TaskTypeConfig:
        check_task_type(task_type)
        config = await self.core.store.type_set_paused(task_type, paused, self.core.clock.now())
        if config is None:
            raise TaskTypeNotFound(f"task type {task_type!r} is not registered", field="task_type")
        return config

    # -- shared -----------------------------------------------------------------------

    async def _read(self, task_id: str) -> Task:
        """From the store, not the cache: the fenced write needs the row's version."""
        task_type, pos = parse_task_id(task_id)
        task = await self.core.store.task_get(task_type, pos, task_id)
        if task is None:
            raise TaskNotFound(f"task {task_id!r} does not exist", field="task_id")
        return task

    async def _page(
        self,
        task_type: str,
        statuses: frozenset[TaskStatus],
        task_stage: str | None,
        page_size: int,
        page_token: str,
    ) -> tuple[list[Task], str]:
        where = TaskFilter(task_stage=task_stage or None, status_in=statuses)
        return await self.core.list_tasks(task_type, where, page_size, page_token)

    async def _apply(self, tasks: list[Task], decide: Callable[[Task, int], Decision]) -> Applied:
        """Decide and write each task's change in one transaction; a task a
        concurrent writer changed first is read and decided again. Publishes what
        it wrote and wakes the streams for tasks due again."""
        store, core = self.core.store, self.core
        generation = core.cache.generation()  # before the writes it publishes
        current = list(tasks)
        results: list[Task | AsyncflowError | None] = [None] * len(tasks)
        applied = Applied([])
        for _ in range(RACE_RETRIES):
            now = core.clock.now()
            changes: list[tuple[int, TaskChange]] = []
            for index, result in enumerate(results):
                if result is None:
                    decided = decide(current[index], now)
                    if isinstance(decided, TaskChange):
                        changes.append((index, decided))
                    else:
                        results[index] = decided
            if not changes:
                break
            wrote = await store.task_update_fenced_many(
                [(current[i], change) for i, change in changes], now
            )
            moved = []
            for (index, _), task in zip(changes, wrote, strict=True):
                if task is None:
                    moved.append(index)
                    continue
                results[index] = task
                applied.written.append(task)
                if current[index].status is TaskStatus.PROCESSING:
                    applied.held.append((task.task_id, current[index].lease_token))
            if not moved:
                break
            rows = await store.task_get_many([(current[i].task_type, current[i].pos,
                                               current[i].task_id) for i in moved])  # fmt: skip
            for index in moved:
                row = rows.get(current[index].task_id)
                if row is None:
                    results[index] = TaskNotFound(f"task {current[index].task_id!r} does not"
                                                  " exist", field="task_id")  # fmt: skip
                else:
                    current[index] = row
        await core.cache.put(applied.written, generation)
        pending = Counter(t.task_type for t in applied.written if t.status is TaskStatus.PENDING)
        for task_type, count in pending.items():
            core.on_due.tasks_due(task_type, core.clock.now(), count)
        applied.results = [
            Aborted(f"task {current[i].task_id} kept changing under the call; call again",
                    field="task_id") if result is None else result
            for i, result in enumerate(results)
        ]  # fmt: skip
        return applied


def _retrier(stage: str | None) -> Callable[[Task, int], Decision]:
    def decide(task: Task, now: int) -> Decision:
        if task.status not in RETRYABLE:
            return TaskNotRetryable(
                f"task {task.task_id} is {task.status.name}: only FAILED or CANCELLED tasks can"
                " be retried",
                field="task_id",
            )
        return policy.requeue(task, now, stage)

    return decide


def _statuses(status: TaskStatus | None, allowed: frozenset[TaskStatus]) -> frozenset[TaskStatus]:
    if status is None:
        return allowed
    if status not in allowed:
        names = " or ".join(sorted(s.name for s in allowed))
        raise InvalidArgument(f"status must be {names} (or unspecified for both), got"
                              f" {status.name}", field="status")  # fmt: skip
    return frozenset({status})


def _only(applied: Applied) -> Task:
    (result,) = applied.results
    if isinstance(result, AsyncflowError):
        raise result
    return result
