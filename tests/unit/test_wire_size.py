"""The size a hold's budget counts per task is never below what the task takes on the wire."""

from __future__ import annotations

from asyncflow.core.model import RetryPolicy, RetryStrategy, Task, TaskStatus
from asyncflow.core.service import REPLY_ENVELOPE_BYTES
from asyncflow.server.session import to_pb
from asyncflow.store.common import wire_size
from asyncflow.v1 import task_service_pb2 as pb

BIG = (1 << 63) - 1


def widest(context: str, token: str = "t" * 64) -> Task:
    """A task with every integer at its widest varint and long texts."""
    return Task(
        row_id=BIG, task_id="k" * 64 + "_" + "é" * 40 + "_9999999999", task_type="é" * 64,
        pos=BIG, user_id="ü" * 256, task_stage="s" * 128, status=TaskStatus.PROCESSING,
        priority=(1 << 32) - 1, crt_retry_num=(1 << 32) - 1, max_retry_num=(1 << 32) - 1,
        retry=RetryPolicy(RetryStrategy.UNIFORM, 1, 1), context=context,
        schedule_log="{" + "x" * 3000 + "}", order_time=-BIG, lease_token=token,
        hold_count=(1 << 32) - 1, lease_deadline=-BIG, version=BIG, create_time=-BIG,
        modify_time=-BIG,
    )  # fmt: skip


def test_the_estimate_covers_a_reply_of_the_widest_tasks() -> None:
    for context in ("", "x" * 127, "€" * 5000, "y" * (16 << 20)):
        tasks = [widest(context) for _ in range(3)]
        estimate = sum(wire_size(t) for t in tasks) + REPLY_ENVELOPE_BYTES
        for reply in (
            pb.HoldTasksResponse(tasks=[to_pb(t) for t in tasks]),
            pb.WorkTasksResponse(tasks=pb.WorkTasksResponse.Tasks(tasks=[to_pb(t) for t in tasks])),
        ):
            assert reply.ByteSize() <= estimate, (len(context), reply.ByteSize(), estimate)
