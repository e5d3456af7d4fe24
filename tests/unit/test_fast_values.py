"""The hot paths' cheap builders give exactly what the plain constructors give.

Tasks, TaskInfos and protobuf messages are built without their frozen
dataclass __init__ or keyword constructors where a bulk create or a drain
builds thousands (docs/benchmarks.md); these compare each with the plain way.
"""

from __future__ import annotations

import dataclasses

import pymysql.converters
import pytest

from asyncflow._sdk.convert import fill_request, task_from_pb
from asyncflow._sdk.types import TaskInfo, TaskSpec
from asyncflow._sdk.types import TaskStatus as SdkStatus
from asyncflow.core.model import (
    Claim,
    CreateRequest,
    RetryPolicy,
    RetryStrategy,
    Task,
    TaskChange,
    TaskInsert,
    TaskStatus,
    task_from_fields,
    task_with,
)
from asyncflow.core.service import TaskCore
from asyncflow.server.convert import create_request_from_pb, fill_task, task_to_pb
from asyncflow.server.session import pushed_tasks
from asyncflow.store.common import InsertTarget, changed, claimed, inserted
from asyncflow.store.mysql import _task_rows
from asyncflow.v1 import task_service_pb2 as pb

NOW = 1_700_000_000


class FixedClock:
    def now(self) -> int:
        return NOW


def a_task(**changes: object) -> Task:
    fields: dict[str, object] = dict(
        row_id=7, task_id="k-1_lark_2", task_type="lark", pos=2, user_id="u", task_stage="s",
        status=TaskStatus.PROCESSING, priority=5, crt_retry_num=1, max_retry_num=3,
        retry=RetryPolicy(RetryStrategy.PROGRESSIVE, 5, 30), context="{}", schedule_log="log",
        order_time=NOW - 5, lease_token="a" * 32, hold_count=2, lease_deadline=NOW + 30,
        version=4, create_time=NOW - 60, modify_time=NOW - 1,
    )  # fmt: skip
    return Task(**(fields | changes))  # type: ignore[arg-type]


def test_task_from_fields_is_the_dataclass() -> None:
    task = a_task()
    built = task_from_fields(dataclasses.asdict(task) | {"retry": task.retry})
    assert built == task
    assert hash(built) == hash(task)
    assert repr(built) == repr(task)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.version = 9  # type: ignore[misc]


def test_create_requests_and_inserts_are_the_dataclasses() -> None:
    request = pb.CreateTaskRequest(task_type="lark", user_id="u", task_stage="s",
                                   context="{}", priority=5, idempotency_key="k-1",
                                   run_at=NOW + 60)  # fmt: skip
    decoded = create_request_from_pb(request)
    assert decoded == CreateRequest("lark", "u", "s", "{}", 5, "k-1", NOW + 60)
    assert repr(decoded) == repr(CreateRequest("lark", "u", "s", "{}", 5, "k-1", NOW + 60))
    core = TaskCore(None, None, FixedClock())  # type: ignore[arg-type]
    assert core._insertable(decoded) == TaskInsert("lark", "u", "s", 5, "{}", NOW + 60, "k-1")
    bare = core._insertable(create_request_from_pb(pb.CreateTaskRequest(task_type="lark")))
    assert bare == TaskInsert("lark", "", "", 0, "", NOW, None)


def test_task_with_is_replace() -> None:
    task = a_task()
    assert task_with(task, version=9, context="x") == dataclasses.replace(
        task, version=9, context="x"
    )
    assert task.version == 4  # the original is untouched


def test_inserted_claimed_changed_are_the_rows_written() -> None:
    new = TaskInsert("lark", "u", "s", 5, "{}", NOW - 5, None, lease_token="b" * 32)
    for paused in (False, True):
        target = InsertTarget(2, 3, 5, 30, 60, paused)
        leased = not paused
        assert inserted(new, "k_lark_2", target, 11, NOW) == Task(
            row_id=11, task_id="k_lark_2", task_type="lark", pos=2, user_id="u",
            task_stage="s", status=TaskStatus.PROCESSING if leased else TaskStatus.PENDING,
            priority=5, crt_retry_num=0, max_retry_num=3,
            retry=RetryPolicy(RetryStrategy.PROGRESSIVE, 5, 30), context="{}",
            schedule_log="", order_time=NOW - 5, lease_token="b" * 32 if leased else "",
            hold_count=int(leased), lease_deadline=NOW + 60 if leased else 0, version=1,
            create_time=NOW, modify_time=NOW,
        )  # fmt: skip
    task = a_task(status=TaskStatus.PENDING, lease_token="", hold_count=1)
    claim = Claim(token="c" * 32, deadline=NOW + 30, now=NOW, max_bytes=1 << 20)
    assert claimed(task, claim) == dataclasses.replace(
        task, status=TaskStatus.PROCESSING, lease_token=claim.token, hold_count=2,
        lease_deadline=NOW + 30, version=5, modify_time=NOW,
    )  # fmt: skip
    change = TaskChange(TaskStatus.SUCCESS, "s2", "ctx", 1, NOW, "done")
    assert changed(a_task(), change, NOW) == dataclasses.replace(
        a_task(), status=TaskStatus.SUCCESS, task_stage="s2", context="ctx", crt_retry_num=1,
        order_time=NOW, schedule_log="done", lease_token="", lease_deadline=0, version=5,
        modify_time=NOW,
    )  # fmt: skip


def old_task_to_pb(task: Task, with_token: bool) -> pb.Task:
    """task_to_pb as it was: keyword construction."""
    message = pb.Task(
        task_id=task.task_id, task_type=task.task_type, user_id=task.user_id,
        task_stage=task.task_stage, status=pb.TaskStatus.ValueType(int(task.status)),
        priority=task.priority, crt_retry_num=task.crt_retry_num,
        max_retry_num=task.max_retry_num, context=task.context,
        schedule_log=task.schedule_log, order_time=task.order_time,
        create_time=task.create_time, modify_time=task.modify_time,
    )  # fmt: skip
    if task.status is TaskStatus.PROCESSING:
        message.lease.CopyFrom(
            pb.Lease(
                token=task.lease_token if with_token else "",
                attempt=task.hold_count,
                deadline=task.lease_deadline,
            )
        )
    return message


@pytest.mark.parametrize("with_token", [False, True])
@pytest.mark.parametrize(
    "task",
    [
        a_task(),
        a_task(status=TaskStatus.PENDING, lease_token="", lease_deadline=0),
        a_task(
            user_id="",
            task_stage="",
            priority=0,
            crt_retry_num=0,
            context="",
            schedule_log="",
            status=TaskStatus.SUCCESS,
        ),
    ],
)
def test_fill_task_is_the_keyword_message(task: Task, with_token: bool) -> None:
    expected = old_task_to_pb(task, with_token)
    assert task_to_pb(task, with_token=with_token) == expected
    reply = pb.CreateTasksResponse()
    fill_task(reply.results.add().task, task, with_token=with_token)
    assert reply.results[0].task == expected
    assert reply.results[0].task.HasField("lease") == expected.HasField("lease")
    assert task_from_pb(expected) == TaskInfo(
        task_id=task.task_id, task_type=task.task_type, user_id=task.user_id,
        stage=task.task_stage, status=SdkStatus(int(task.status)), priority=task.priority,
        retries=task.crt_retry_num, max_retries=task.max_retry_num, context=task.context,
        schedule_log=task.schedule_log, order_time=task.order_time,
        create_time=task.create_time, modify_time=task.modify_time,
        attempt=expected.lease.attempt, lease_deadline=expected.lease.deadline,
    )  # fmt: skip


def test_a_push_is_the_keyword_message() -> None:
    tasks = [a_task(), a_task(task_id="k-2_lark_2", row_id=8)]
    Response = pb.WorkTasksResponse
    expected = Response(tasks=Response.Tasks(tasks=[old_task_to_pb(t, True) for t in tasks]))
    assert pushed_tasks(tasks) == expected
    assert pushed_tasks([]).WhichOneof("response") == "tasks"


def test_an_unknown_status_still_raises_in_the_sdk() -> None:
    with pytest.raises(ValueError, match="99"):
        task_from_pb(pb.Task(task_id="x", status=pb.TaskStatus.ValueType(99)))


@pytest.mark.parametrize(
    "spec", [TaskSpec("lark"), TaskSpec("lark", "{}", "s", "u", 5, "k-1", NOW + 60)]
)
def test_fill_request_is_the_keyword_message(spec: TaskSpec) -> None:
    expected = pb.CreateTaskRequest(
        task_type=spec.task_type, context=spec.context, task_stage=spec.stage,
        user_id=spec.user_id, priority=spec.priority, idempotency_key=spec.idempotency_key,
        run_at=spec.run_at,
    )  # fmt: skip
    if not spec.priority:
        expected.ClearField("priority")  # optional; unset means 0 (the proto says so)
    assert fill_request(pb.CreateTaskRequest(), spec) == expected


def test_mysql_task_rows_are_what_execute_would_send() -> None:
    """The rows as aiomysql's execute() would have %-formatted them from bound
    values, each quoted by the driver's escaping (the row template as it was)."""
    row = "(%s, %s, %s, %s, %s, %s, 0, %s, %s, %s, '', %s, %s, %s, %s, %s, 1, %s, %s)"

    def escape(value: str) -> str:
        return "'" + pymysql.converters.escape_string(value) + "'"

    tasks = [
        TaskInsert("lark", "", "", 0, "", NOW, None),
        TaskInsert("lark", "o'brien", "st\\age", 9, '{"a": "%s\x00\n"}', NOW - 9, "k-1"),
        TaskInsert("lark", "u", "s", 1, "{}", NOW - 1, None, lease_token="d" * 32),
    ]
    ids = ["id-0_lark_2", "k-1_lark_2", "id-2_lark_2"]
    for target in (InsertTarget(2, 3, 5, 30, 60, False), InsertTarget(2, 0, -4, 9, 1, True)):
        expected = ", ".join(
            row
            % tuple(
                escape(v) if isinstance(v, str) else pymysql.converters.escape_item(v, "utf8mb4")
                for v in target.params(task, task_id, NOW)
            )
            for task, task_id in zip(tasks, ids, strict=True)
        )
        assert _task_rows(escape, target, tasks, ids, [0, 1, 2], NOW) == expected
