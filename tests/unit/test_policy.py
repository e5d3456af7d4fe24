"""order_time and back-off rules (reference §4)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from asyncflow.core import policy
from asyncflow.core.model import RetryPolicy, RetryStrategy, Task, TaskStatus
from asyncflow.core.service import DEFAULT_TYPE

NOW = 1_800_000_000
TASK = Task(
    row_id=1, task_id="k_lark_1", task_type="lark", pos=1, user_id="", task_stage="s",
    status=TaskStatus.PROCESSING, priority=100, crt_retry_num=0, max_retry_num=2,
    retry=DEFAULT_TYPE.retry, context="c", schedule_log="", order_time=NOW - 100,
    lease_token="t", hold_count=1, lease_deadline=NOW + 30, version=2, create_time=NOW,
    modify_time=NOW,
)  # fmt: skip


@pytest.mark.parametrize(
    ("retries", "delay"), [(0, 5), (1, 10), (2, 20), (3, 30), (10, 30), (500, 30)]
)
def test_progressive_delay_doubles_up_to_the_cap(retries: int, delay: int) -> None:
    progressive = RetryPolicy(RetryStrategy.PROGRESSIVE, interval=5, max_interval=30)
    assert policy.retry_delay(progressive, retries) == delay


def test_uniform_delay_is_constant() -> None:
    uniform = RetryPolicy(RetryStrategy.UNIFORM, interval=9, max_interval=1)
    assert {policy.retry_delay(uniform, n) for n in range(20)} == {9}


def test_retry_ignores_priority_and_counts() -> None:
    change = policy.retry(TASK, NOW, "c", "boom", None)
    assert (change.status, change.crt_retry_num, change.order_time) == (
        TaskStatus.PENDING,
        1,
        NOW + 5,
    )


def test_retry_exhausted_fails() -> None:
    change = policy.retry(replace(TASK, crt_retry_num=2), NOW, "c", "boom", None)
    assert change.status is TaskStatus.FAILED
    assert json.loads(change.schedule_log)["last"]["error"] == "boom"


def test_next_stage_keeps_priority_advance_and_resets_retries() -> None:
    change = policy.next_stage(replace(TASK, crt_retry_num=2), NOW, "t", "ctx")
    assert (change.order_time, change.crt_retry_num, change.task_stage) == (NOW - 100, 0, "t")


def test_schedule_log_keeps_the_last_outcomes() -> None:
    task = TASK
    for n in range(6):
        change = policy.retry(replace(task, crt_retry_num=0), NOW + n, "c", f"e{n}", None)
        task = replace(task, schedule_log=change.schedule_log)
    log = json.loads(task.schedule_log)
    assert log["last"]["error"] == "e5"
    assert [h["error"] for h in log["history"]] == ["e2", "e3", "e4"]


def test_error_messages_are_truncated_in_the_log() -> None:
    change = policy.fail(TASK, NOW, "c", "x" * 10_000)
    assert len(json.loads(change.schedule_log)["last"]["error"]) == policy.LOG_ERROR_CHARS
