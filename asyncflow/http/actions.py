"""Dashboard actions: the extension point for retry, cancel, pause and resume.

Each needs an RPC that asyncflow does not have yet (they come with a later
issue). When one lands, add it here: the task page shows every TaskAction
whose `applies` holds for the task, the types page every TypeAction, each as
a form button that POSTs to the action's own route (to be added with it,
same-origin checked, behind the same auth as the RPC). Until then the pages
show which actions are PLANNED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asyncflow.core.model import Task, TaskTypeConfig
from asyncflow.core.service import TaskCore


@dataclass(frozen=True)
class TaskAction:
    name: str
    """In the route: POST /ui/tasks/{task_id}/{name}."""
    label: str
    applies: Callable[[Task], bool]
    run: Callable[[TaskCore, Task], Awaitable[object]]


@dataclass(frozen=True)
class TypeAction:
    name: str
    """In the route: POST /ui/types/{task_type}/{name}."""
    label: str
    applies: Callable[[TaskTypeConfig], bool]
    run: Callable[[TaskCore, TaskTypeConfig], Awaitable[object]]


TASK_ACTIONS: tuple[TaskAction, ...] = ()
TYPE_ACTIONS: tuple[TypeAction, ...] = ()
PLANNED = {"task": ("retry", "cancel"), "type": ("pause", "resume")}
"""Shown on the pages until their RPCs exist."""
