"""Cache payloads: the codec version follows Task's fields; bad payloads are one error."""

from __future__ import annotations

import pytest

from asyncflow.cache import codec
from asyncflow.core.model import Task, TaskStatus
from asyncflow.core.service import DEFAULT_TYPE

TASK = Task(
    row_id=7, task_id="k_lark_1", task_type="lark", pos=1, user_id="u", task_stage="s",
    status=TaskStatus.PROCESSING, priority=3, crt_retry_num=1, max_retry_num=2,
    retry=DEFAULT_TYPE.retry, context="é", schedule_log="[]", order_time=10,
    lease_token="t", hold_count=1, lease_deadline=40, version=4, create_time=1,
    modify_time=2,
)  # fmt: skip


def test_the_codec_version_is_bumped_with_the_task_fields() -> None:
    # Changing Task changes what replicas write to Redis: bump codec.CODEC_VERSION
    # (so that the other release never decodes these payloads), then this pin.
    assert (codec.CODEC_VERSION, codec.FIELDS) == (
        1,
        ("row_id", "task_id", "task_type", "pos", "user_id", "task_stage", "status",
         "priority", "crt_retry_num", "max_retry_num", "retry", "context", "schedule_log",
         "order_time", "lease_token", "hold_count", "lease_deadline", "version",
         "create_time", "modify_time"),
    )  # fmt: skip


def test_a_task_round_trips() -> None:
    assert codec.decode(codec.encode(TASK)) == TASK
    assert codec.decode(codec.encode(TASK).encode()) == TASK


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        codec.encode(TASK).replace('"version":4,', ""),  # a field this release lacks
        codec.encode(TASK)[:-1] + ',"added":1}',  # a field of another release
        codec.encode(TASK).replace('"status":2', '"status":9'),
        codec.encode(TASK).replace('"retry":[', '"retry":[0,'),
    ],
)
def test_anything_else_is_undecodable(payload: str | bytes) -> None:
    with pytest.raises(codec.UndecodablePayload):
        codec.decode(payload)
