"""Protobuf messages <-> the SDK's public values."""

from __future__ import annotations

from dataclasses import dataclass

from asyncflow.core.model import RetryPolicy, RetryStrategy, TaskStatus, TaskTypeConfig
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.wire import STRATEGY_FROM_PB


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


def task_from_pb(task: pb.Task) -> TaskInfo:
    return TaskInfo(
        task_id=task.task_id,
        task_type=task.task_type,
        user_id=task.user_id,
        stage=task.task_stage,
        status=TaskStatus(task.status),
        priority=task.priority,
        retries=task.crt_retry_num,
        max_retries=task.max_retry_num,
        context=task.context,
        schedule_log=task.schedule_log,
        order_time=task.order_time,
        create_time=task.create_time,
        modify_time=task.modify_time,
        attempt=task.lease.attempt,
        lease_deadline=task.lease.deadline,
    )


def config_from_pb(config: pb.TaskTypeConfig) -> TaskTypeConfig:
    return TaskTypeConfig(
        task_type=config.task_type,
        schedule_limit=config.schedule_limit,
        schedule_interval=config.schedule_interval_seconds,
        max_processing_time=config.max_processing_time_seconds,
        max_retry_num=config.max_retry_num,
        retry=RetryPolicy(
            STRATEGY_FROM_PB.get(config.retry_strategy, RetryStrategy.PROGRESSIVE),
            config.retry_interval_seconds,
            config.max_retry_interval_seconds,
        ),
        begin_pos=config.begin_pos,
        end_pos=config.end_pos,
        create_time=config.create_time,
        modify_time=config.modify_time,
    )


CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
]
"""SDK channels accept replies as large as the server may send (a full batch)."""
