"""The operator methods of Client and SyncClient against a real server, and their
typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import Running
from producers import KINDS, Producer, close, open_client
from rpc import SUCCESS, hold, report

from asyncflow.client import (
    CatchUp,
    InvalidArgument,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    TaskFinished,
    TaskNotRetryable,
    TaskSpec,
    TaskStatus,
    TaskTemplate,
    TaskTypeNotFound,
)
from asyncflow.clock import ManualClock
from asyncflow.v1 import task_service_pb2 as pb


@pytest.fixture(params=KINDS)
async def client(request: pytest.FixtureRequest, server: Running) -> AsyncIterator[Producer]:
    opened = open_client(request.param, server.address)
    yield Producer(opened)
    await close(opened)


async def test_delayed_cancel_and_retry(
    client: Producer, server: Running, clock: ManualClock
) -> None:
    await client.register_type("lark")
    later = await client.create("lark", run_at=clock.now() + 30)
    assert later.order_time == clock.now() + 30
    cancelled = await client.cancel(later.task_id, reason="changed my mind")
    assert cancelled.status is TaskStatus.CANCELLED
    assert (await client.cancel(later.task_id)).status is TaskStatus.CANCELLED
    retried = await client.retry(later.task_id, stage="again")
    assert (retried.status, retried.stage) == (TaskStatus.PENDING, "again")
    with pytest.raises(TaskNotRetryable) as refused:
        await client.retry(later.task_id)
    assert (refused.value.code, refused.value.field) == ("FAILED_PRECONDITION", "task_id")
    assert [t.task_id for t in await hold(server.stub)] == [later.task_id]


async def test_bulk_cancel_and_retry_iterate_page_by_page(
    client: Producer, server: Running
) -> None:
    await client.register_type("lark")
    made = await client.create_many([TaskSpec("lark", stage="s") for _ in range(5)])
    keep = await client.create("lark", stage="other")
    cancelled = [t.task_id for t in await client.cancel_many("lark", stage="s", page_size=2)]
    assert sorted(cancelled) == sorted(t.task_id for t in made)
    assert (await client.get(keep.task_id)).status is TaskStatus.PENDING
    retried = await client.retry_many("lark", status=TaskStatus.CANCELLED, new_stage="s2")
    assert {t.stage for t in retried} == {"s2"}
    assert len(retried) == 5
    with pytest.raises(InvalidArgument) as bad:
        await client.cancel_many("lark", status=TaskStatus.SUCCESS)
    assert bad.value.field == "status"
    (done,) = await hold(server.stub, limit=1)
    assert (await report(server.stub, done, SUCCESS)).status == pb.TASK_STATUS_SUCCESS
    with pytest.raises(TaskFinished) as finished:
        await client.cancel(done.task_id)
    assert (finished.value.reason, finished.value.field) == ("TASK_FINISHED", "task_id")


async def test_pause_and_resume_a_type(client: Producer) -> None:
    await client.register_type("lark")
    assert (await client.pause_type("lark")).paused
    assert [c.paused for c in await client.list_types()] == [True]
    assert not (await client.resume_type("lark")).paused
    with pytest.raises(TaskTypeNotFound):
        await client.pause_type("ghost")


async def test_schedules(client: Producer) -> None:
    await client.register_type("lark")
    template = TaskTemplate("lark", stage="go", context="{}", priority=2)
    made = await client.create_schedule("nightly", "0 3 * * *", template,
                                        time_zone="Europe/Paris")  # fmt: skip
    assert (made.task, made.catch_up, made.time_zone) == (template, CatchUp.LATEST,
                                                          "Europe/Paris")  # fmt: skip
    with pytest.raises(ScheduleAlreadyExists):
        await client.create_schedule("nightly", "0 3 * * *", template)
    updated = await client.update_schedule("nightly", catch_up=CatchUp.ALL, catch_up_limit=3)
    assert (updated.catch_up, updated.catch_up_limit) == (CatchUp.ALL, 3)
    assert updated.cron == "0 3 * * *"
    assert (await client.pause_schedule("nightly")).paused
    assert not (await client.resume_schedule("nightly")).paused
    assert [s.name for s in await client.list_schedules()] == ["nightly"]
    await client.delete_schedule("nightly")
    with pytest.raises(ScheduleNotFound) as missing:
        await client.delete_schedule("nightly")
    assert missing.value.field == "name"
    with pytest.raises(InvalidArgument) as bad:
        await client.create_schedule("x", "not cron", template)
    assert bad.value.field == "cron"
