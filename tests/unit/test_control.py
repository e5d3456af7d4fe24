"""Operator control over fakes of the core's ports: who is told what, and races with
concurrent writers decided again on the new row."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes import FakeStore, RecordingCache, RecordingListener

from asyncflow.clock import ManualClock
from asyncflow.core.control import TaskControl
from asyncflow.core.model import (
    CreateRequest,
    Success,
    Task,
    TaskChange,
    TaskFilter,
    TaskStatus,
    TypeSettings,
)
from asyncflow.core.service import TaskCore
from asyncflow.errors import Aborted, TaskFinished

NOW = 1_800_000_000


class Told:
    """The CancelListener port: remembers every notice."""

    def __init__(self) -> None:
        self.notices: list[tuple[list[tuple[str, str]], str]] = []

    def tasks_cancelled(self, held: list[tuple[str, str]], reason: str) -> None:
        self.notices.append((held, reason))


@pytest.fixture
async def control() -> TaskControl:
    core = TaskCore(FakeStore(), RecordingCache(), ManualClock(NOW), on_due=RecordingListener())
    await core.register_type(TypeSettings("lark"))
    await core.create_tasks([CreateRequest("lark") for _ in range(3)])
    return TaskControl(core, on_cancel=Told())


def told(control: TaskControl) -> Told:
    assert isinstance(control.on_cancel, Told)
    return control.on_cancel


def due(control: TaskControl) -> RecordingListener:
    assert isinstance(control.core.on_due, RecordingListener)
    return control.core.on_due


async def test_only_the_holders_of_cancelled_tasks_are_told(control: TaskControl) -> None:
    (held,) = await control.core.hold_tasks("lark", 1)
    cancelled, _ = await control.cancel_tasks("lark", None, None, 10, "", "shutting down")
    assert len(cancelled) == 3
    assert told(control).notices == [([(held.task_id, held.lease_token)], "shutting down")]
    cache = control.core.cache
    assert isinstance(cache, RecordingCache)
    assert all(cache.entries[t.task_id] == t for t in cancelled)


async def test_a_retry_wakes_the_streams_at_once(control: TaskControl) -> None:
    (first, *_), _ = await control.cancel_tasks("lark", None, None, 10, "")
    due(control).due.clear()
    retried = await control.retry_task(first.task_id, "again")
    assert (retried.status, retried.task_stage) == (TaskStatus.PENDING, "again")
    assert due(control).due == [("lark", NOW, 1)]


async def test_a_change_that_lands_first_is_decided_again(control: TaskControl) -> None:
    """A report lands between the cancel's read and its write: the cancel reads the
    task again and, as it is now SUCCESS, refuses instead of overwriting it."""
    (held,) = await control.core.hold_tasks("lark", 1)
    store = control.core.store
    assert isinstance(store, FakeStore)
    write = store.task_update_fenced_many

    async def report_first(updates: list[tuple[Task, TaskChange]], now: int) -> list[Task | None]:
        await control.core.set_task(held.task_id, held.lease_token, Success())
        store.task_update_fenced_many = write  # type: ignore[method-assign]
        return await write(updates, now)

    store.task_update_fenced_many = report_first  # type: ignore[method-assign]
    with pytest.raises(TaskFinished):
        await control.cancel_task(held.task_id)
    assert (await control.core.get_task(held.task_id)).status is TaskStatus.SUCCESS
    assert told(control).notices == []


async def test_a_row_that_keeps_changing_is_aborted(control: TaskControl) -> None:
    store = control.core.store
    assert isinstance(store, FakeStore)
    (task, *_), _ = await control.core.list_tasks("lark", TaskFilter(), 10, "")
    write = store.task_update_fenced_many

    async def always_moved(updates: list[tuple[Task, TaskChange]], now: int) -> list[Task | None]:
        for before, _ in updates:  # a concurrent writer bumps the version every time
            current = store._current(before)
            assert current is not None
            store._write(replace(current, version=current.version + 1))
        return await write(updates, now)

    store.task_update_fenced_many = always_moved  # type: ignore[method-assign]
    with pytest.raises(Aborted) as aborted:
        await control.cancel_task(task.task_id)
    assert aborted.value.field == "task_id"
    after = await store.task_get("lark", 1, task.task_id)
    assert after is not None
    assert (after.status, after.version) == (TaskStatus.PENDING, task.version + 3)
