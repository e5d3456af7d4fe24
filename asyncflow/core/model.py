"""Domain values: what the core reasons about and the store returns (never driver rows)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, TypeVar

V = TypeVar("V")


class TaskStatus(enum.IntEnum):
    """Stored as-is; values are those of the original and are never renumbered."""

    PENDING = 1
    PROCESSING = 2
    SUCCESS = 3
    FAILED = 4
    CANCELLED = 5
    """Cancelled by an operator; only an operator's retry brings it back."""

    @property
    def terminal(self) -> bool:
        return self in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED)


class RetryStrategy(enum.Enum):
    PROGRESSIVE = "progressive"
    """delay = min(retry_interval * 2**retries_so_far, max_retry_interval)"""
    UNIFORM = "uniform"
    """delay = retry_interval"""


@dataclass(frozen=True)
class RetryPolicy:
    strategy: RetryStrategy
    interval: int
    """Base delay in seconds."""
    max_interval: int
    """Cap of the progressive delay in seconds."""


@dataclass(frozen=True)
class TaskTypeConfig:
    """One row of t_schedule_cfg joined with its t_schedule_pos row."""

    task_type: str
    schedule_limit: int
    schedule_interval: int
    """Seconds between polls of a polling worker."""
    max_processing_time: int
    """Lease length in seconds."""
    max_retry_num: int
    retry: RetryPolicy
    begin_pos: int = 1
    """Oldest table holds and recovery scan."""
    end_pos: int = 1
    """Table new tasks go to."""
    data_begin_pos: int = 1
    """Oldest table not dropped by retention (listing and counting start here)."""
    create_time: int = 0
    modify_time: int = 0
    paused: bool = False
    """Nothing of the type is held or pushed while set (creates are still taken)."""


@dataclass(frozen=True)
class Task:
    """One row of a task table."""

    row_id: int
    """Internal auto-increment id; used for paging, never exposed."""
    task_id: str
    task_type: str
    pos: int
    """Table position the row lives in (also embedded in task_id)."""
    user_id: str
    task_stage: str
    status: TaskStatus
    priority: int
    crt_retry_num: int
    max_retry_num: int
    retry: RetryPolicy
    context: str
    schedule_log: str
    order_time: int
    lease_token: str
    """Empty unless PROCESSING."""
    hold_count: int
    """Times held so far: the lease's attempt number."""
    lease_deadline: int
    version: int
    """Bumped by every write; orders cache entries (see asyncflow.cache)."""
    create_time: int
    modify_time: int


def from_fields(cls: type[V], fields: dict[str, Any]) -> V:
    """cls(**fields) for a frozen dataclass of this module, without running its
    __init__, which sets each field through object.__setattr__ (Task: 21 calls,
    about 2.5 us; the largest single cost of a 1,000-task create_many's results,
    and paid again by every claim and report). `fields` must name every field
    (tests/unit/test_fast_values.py compares with cls(**fields)); the dict
    becomes the instance's own."""
    value: V = object.__new__(cls)
    object.__setattr__(value, "__dict__", fields)
    return value


def task_from_fields(fields: dict[str, Any]) -> Task:
    return from_fields(Task, fields)


def task_with(task: Task, **changes: Any) -> Task:
    """dataclasses.replace(task, **changes) for Task, at a fraction of its cost
    (see task_from_fields): the fields not changed are copied as they are."""
    fields = task.__dict__.copy()
    fields.update(changes)
    return task_from_fields(fields)


@dataclass(frozen=True)
class CreateRequest:
    """What a producer asks for (a CreateTask call, or an item of CreateTasks),
    before the core checks it and turns it into a TaskInsert."""

    task_type: str
    user_id: str = ""
    task_stage: str = ""
    context: str = ""
    priority: int = 0
    idempotency_key: str = ""
    """Empty: none."""
    run_at: int = 0
    """Unix seconds before which the task is not held; 0 (or past): at once."""


@dataclass(frozen=True)
class TaskInsert:
    """A checked task for the store to insert, with its order_time computed.

    The store places it in the type's end table, read under a lock that keeps
    that table live until the insert commits (so begin_pos can never move past
    a table a create is writing to), builds its id from the key and the table
    position, and copies max_retry_num and the retry policy from the type.
    """

    task_type: str
    user_id: str
    task_stage: str
    priority: int
    context: str
    order_time: int
    idempotency_key: str | None
    """When set, the store refuses a second task with the same (type, key)."""
    lease_token: str = ""
    """Handed off to a waiting stream (asyncflow.core.ports.HandOff): the store
    inserts the task already PROCESSING under this lease (attempt 1, deadline
    now + the type's max_processing_time), unless, in the same transaction, the
    type is paused or the task is not due yet: then it is PENDING as usual."""


@dataclass(frozen=True)
class TaskChange:
    """The new values of the columns a holder's report may change."""

    status: TaskStatus
    task_stage: str
    context: str
    crt_retry_num: int
    order_time: int
    schedule_log: str


@dataclass(frozen=True)
class Claim:
    """What a hold writes on every task it leases."""

    token: str
    deadline: int
    now: int
    max_bytes: int = 0
    """Lease only the oldest due tasks whose encoded size (estimated from their
    stored text, see asyncflow.store.common.WIRE_TASK_OVERHEAD) fits in this many
    bytes; the first always goes, alone if it is larger. 0: no bound."""


@dataclass(frozen=True)
class TaskFilter:
    status: TaskStatus | None = None
    task_stage: str | None = None
    user_id: str | None = None
    status_in: frozenset[TaskStatus] = frozenset()
    """When not empty, only tasks in one of these statuses (operators' bulk actions)."""


@dataclass(frozen=True)
class PoolUsage:
    """A store's database connections, as the metrics show them."""

    in_use: int
    """Running an operation now."""
    open: int
    """Open, in use or idle."""
    limit: int
    """Most the store will open."""


@dataclass(frozen=True)
class PageCursor:
    """Position after the last task of a page: table pos and row id."""

    pos: int
    row_id: int


@dataclass(frozen=True)
class Success:
    """Every stage is done."""


@dataclass(frozen=True)
class NextStage:
    """This stage is done: queue the task again to run `task_stage`."""

    task_stage: str


@dataclass(frozen=True)
class Retry:
    error: str
    delay: int | None = None
    """Seconds; None means the task's back-off policy decides."""


@dataclass(frozen=True)
class Fail:
    error: str


@dataclass(frozen=True)
class Release:
    """Give the task back un-run: PENDING at its place, no retry counted."""


Outcome = Success | NextStage | Retry | Fail | Release


@dataclass(frozen=True)
class Report:
    """One outcome reported by a holder (a SetTask call, or an item of a batch)."""

    task_id: str
    lease_token: str
    outcome: Outcome
    context: str | None = None
    """Replaces the task's context when set."""


@dataclass(frozen=True)
class TypeSettings:
    """A RegisterTaskType request: None keeps the current (or default) value."""

    task_type: str
    schedule_limit: int | None = None
    schedule_interval: int | None = None
    max_processing_time: int | None = None
    max_retry_num: int | None = None
    retry_strategy: RetryStrategy | None = None
    retry_interval: int | None = None
    max_retry_interval: int | None = None


class CatchUp(enum.IntEnum):
    """What a schedule does with ticks older than the misfire grace (stored as-is)."""

    SKIP = 1
    """Drop them."""
    LATEST = 2
    """Fire the latest of them once, unless a tick within the grace fires anyway."""
    ALL = 3
    """Fire each of them, the latest `catch_up_limit`."""


@dataclass(frozen=True)
class TaskTemplate:
    """The task a schedule creates at each tick."""

    task_type: str
    task_stage: str = ""
    context: str = ""
    priority: int = 0


@dataclass(frozen=True)
class Schedule:
    """One row of t_cron_schedule."""

    name: str
    cron: str
    time_zone: str
    """IANA name the cron expression is read in."""
    template: TaskTemplate
    catch_up: CatchUp
    catch_up_limit: int
    next_fire_time: int
    """The next tick to fire (Unix seconds)."""
    paused: bool = False
    last_fire_time: int = 0
    """The latest tick that created a task; 0 before the first."""
    last_task_id: str = ""
    version: int = 1
    """Bumped by every write; updates are conditional on it."""
    create_time: int = 0
    modify_time: int = 0


@dataclass(frozen=True)
class ScheduleSettings:
    """A CreateSchedule or UpdateSchedule request: None keeps the current (or default) value."""

    name: str
    cron: str | None = None
    time_zone: str | None = None
    template: TaskTemplate | None = None
    catch_up: CatchUp | None = None
    catch_up_limit: int | None = None
