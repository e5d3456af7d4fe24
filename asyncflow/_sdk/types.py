"""The SDK's public values: what a producer sends and what it reads back.

They mirror the protobuf messages (asyncflow/v1/task_service.proto) and carry
no field the wire does not carry. The enums take their values from the
protobuf enums, so the contract stays the one source of truth (a test checks
that every protobuf value has its member). Nothing here comes from the
server's core: the SDK installs and imports without it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from asyncflow.v1 import task_service_pb2 as pb


class TaskStatus(enum.IntEnum):
    """A task's state (values as on the wire and in the store; never renumbered)."""

    PENDING = pb.TASK_STATUS_PENDING
    PROCESSING = pb.TASK_STATUS_PROCESSING
    SUCCESS = pb.TASK_STATUS_SUCCESS
    FAILED = pb.TASK_STATUS_FAILED

    @property
    def terminal(self) -> bool:
        return self in (TaskStatus.SUCCESS, TaskStatus.FAILED)


class RetryStrategy(enum.IntEnum):
    """How the delay before a retry grows."""

    PROGRESSIVE = pb.RETRY_STRATEGY_PROGRESSIVE
    """delay = min(retry_interval * 2**retries_so_far, max_retry_interval)"""
    UNIFORM = pb.RETRY_STRATEGY_UNIFORM
    """delay = retry_interval"""


@dataclass(frozen=True)
class TaskTypeConfig:
    """A registered task type; the fields are named as Client.register_type's arguments."""

    task_type: str
    schedule_limit: int
    """Batch size of a hold that asks for no particular number."""
    schedule_interval: int
    """Seconds between polls of a polling worker."""
    max_processing_time: int
    """Lease length in seconds."""
    max_retry_num: int
    """Retries allowed per stage."""
    retry_strategy: RetryStrategy
    retry_interval: int
    """Base delay before a retry, in seconds."""
    max_retry_interval: int
    """Cap on the progressive delay, in seconds."""
    begin_pos: int
    """Oldest live task table (holds and recovery scan from here)."""
    end_pos: int
    """Table new tasks go to."""
    create_time: int
    modify_time: int
    data_begin_pos: int
    """Oldest table retention has not dropped (listing and counting start here)."""


@dataclass(frozen=True)
class TaskInfo:
    """A task as a producer or operator sees it."""

    task_id: str
    task_type: str
    user_id: str
    stage: str
    status: TaskStatus
    priority: int
    retries: int
    """Retries used in the current stage."""
    max_retries: int
    context: str
    schedule_log: str
    order_time: int
    create_time: int
    modify_time: int
    attempt: int
    """While PROCESSING: the current holder's attempt (1 = first hold); else 0."""
    lease_deadline: int
    """While PROCESSING: when stuck recovery may take it back; else 0."""


@dataclass(frozen=True)
class TaskSpec:
    """A task to create: one item of Client.create_many."""

    task_type: str
    context: str = ""
    stage: str = ""
    """The first stage to run ("" if the task has one stage)."""
    user_id: str = ""
    priority: int = 0
    """Seconds of advance over tasks created at the same time."""
    idempotency_key: str = ""
    """When set, creating the same key again returns the first task."""
