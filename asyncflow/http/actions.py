"""Dashboard actions: the extension point for retry, cancel, pause and resume.

Each needs an RPC that asyncflow does not have yet (they come with a later
issue). When one lands, add it here: the task page shows every TASK_ACTIONS
entry whose `applies` holds for the task, the types page every TYPE_ACTIONS
entry for the type, each as
a form button that POSTs to the action's own route (to be added with it,
same-origin checked, behind the same auth as the RPC). Until then the pages
show which actions are PLANNED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from asyncflow.core.model import Task, TaskTypeConfig
from asyncflow.core.service import TaskCore

Subject = TypeVar("Subject", Task, TaskTypeConfig)


@dataclass(frozen=True)
class Action(Generic[Subject]):
    """A button on a task's page (Subject = Task: POST /ui/tasks/{task_id}/{name})
    or on a type's row (Subject = TaskTypeConfig: POST /ui/types/{task_type}/{name})."""

    name: str
    label: str
    applies: Callable[[Subject], bool]
    run: Callable[[TaskCore, Subject], Awaitable[object]]


TASK_ACTIONS: tuple[Action[Task], ...] = ()
TYPE_ACTIONS: tuple[Action[TaskTypeConfig], ...] = ()
PLANNED = {"task": ("retry", "cancel"), "type": ("pause", "resume")}
"""Shown on the pages until their RPCs exist."""
