"""The WorkTasks stream on the wire, driven by a raw client (no SDK)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import Running, StartServer
from rpc import counts, create, error_reason, get, register
from streams import RawWorker, Request, subscribe
from waiting import eventually

from asyncflow.clock import ManualClock
from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb


@pytest.fixture
async def raw(server: Running) -> AsyncIterator[RawWorker]:
    worker = RawWorker(server.stub)
    yield worker
    worker.cancel()


def sessions(server: Running) -> list[object]:
    return list(server.server.dispatcher.sessions.values())


async def test_window_is_never_exceeded_and_can_change(server: Running, raw: RawWorker) -> None:
    stub = server.stub
    await register(stub)
    for _ in range(12):
        await create(stub)
    subscribed = await raw.subscribe("lark", window=5)
    assert subscribed.subscribed.window == 5
    await raw.until(tasks=5)
    for _ in range(3):  # more creates wake the stream, which has no room
        await create(stub)
    assert (await counts(stub))[pb.TASK_STATUS_PROCESSING] == 5

    await raw.send(Request(set_window=Request.SetWindow(window=7)))
    await raw.until(tasks=7)
    await raw.report_success(*raw.tasks[:3])
    await raw.until(tasks=10, answers=1)
    results = raw.answers[0].report_results.results
    assert [r.task.status for r in results] == [pb.TASK_STATUS_SUCCESS] * 3
    assert (await counts(stub))[pb.TASK_STATUS_PROCESSING] == 7
    (session,) = server.server.dispatcher.sessions.values()
    assert session.max_outstanding == 7  # the server's own witness: never above the window
    assert len({t.task_id for t in raw.tasks}) == 10


async def test_unstarted_tasks_return_when_the_stream_breaks(
    server: Running, raw: RawWorker
) -> None:
    stub = server.stub
    await register(stub)
    for _ in range(4):
        await create(stub)
    await raw.subscribe("lark", window=4)
    await raw.until(tasks=4)
    started = raw.tasks[0]
    await raw.send(Request(started=Request.Started(task_ids=[started.task_id])))

    async def marked_started() -> bool:
        (session,) = server.server.dispatcher.sessions.values()
        return session.outstanding[started.task_id].started

    await eventually(marked_started, within=5, what="the start acknowledgement")
    raw.cancel()  # the worker vanishes

    async def released() -> bool:
        now = await counts(stub)
        return now[pb.TASK_STATUS_PENDING] == 3 and now[pb.TASK_STATUS_PROCESSING] == 1

    await eventually(released, within=5, what="un-started tasks back to pending")
    assert (await get(stub, started.task_id)).status == pb.TASK_STATUS_PROCESSING

    async def session_gone() -> bool:
        return sessions(server) == []

    await eventually(session_gone, within=5, what="the session to close")


async def test_stale_report_on_the_stream_is_refused(
    server: Running, raw: RawWorker, clock: ManualClock
) -> None:
    stub = server.stub
    await register(stub, max_processing_time_seconds=10)
    task = await create(stub)
    await raw.subscribe("lark", window=1)
    await raw.until(tasks=1)
    held = raw.tasks[0]
    clock.advance(11)
    core = server.server.core
    config = await core.task_type("lark")
    assert [t.task_id for t in await core.recover_stuck(config, 10)] == [task.task_id]
    await raw.report_success(held)
    await raw.until(answers=1)
    (result,) = raw.answers[0].report_results.results
    assert (result.error.code, result.error.reason) == (
        "FAILED_PRECONDITION",
        "TASK_NOT_PROCESSING",
    )
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_PENDING


async def test_extend_lease_on_the_stream(
    server: Running, raw: RawWorker, clock: ManualClock
) -> None:
    await register(server.stub, max_processing_time_seconds=30)
    await create(server.stub)
    await raw.subscribe("lark", window=1)
    await raw.until(tasks=1)
    held = raw.tasks[0]
    clock.advance(20)
    lease = pb.ExtendLeaseRequest(task_id=held.task_id, lease_token=held.lease.token)
    await raw.send(Request(extend=Request.Extend(leases=[lease])))
    await raw.until(answers=1)
    (result,) = raw.answers[0].extend_results.results
    assert result.lease.deadline == clock.now() + 30
    assert result.lease.token == held.lease.token
    assert (await get(server.stub, held.task_id)).lease.deadline == clock.now() + 30


async def test_created_tasks_are_pushed_without_waiting_for_the_poll(
    server: Running, raw: RawWorker
) -> None:
    await register(server.stub, schedule_interval_seconds=3600)  # the fallback poll is far off
    await raw.subscribe("lark", window=10)
    created = await create(server.stub)
    await raw.until(tasks=1, within=5)
    assert raw.tasks[0].task_id == created.task_id


async def test_retried_task_is_pushed_again_when_due(
    server: Running, raw: RawWorker, clock: ManualClock
) -> None:
    await register(server.stub, schedule_interval_seconds=3600)
    await create(server.stub)
    await raw.subscribe("lark", window=1)
    await raw.until(tasks=1)
    first = raw.tasks[0]
    retry = pb.SetTaskRequest(
        task_id=first.task_id,
        lease_token=first.lease.token,
        retry=pb.SetTaskRequest.Retry(error_message="later", delay_seconds=1),
    )
    await raw.send(Request(reports=Request.Reports(reports=[retry])))
    await raw.until(answers=1)
    clock.advance(1)  # due by the task's clock; the timer fires a second later
    await raw.until(tasks=2, within=5)
    assert raw.tasks[1].task_id == first.task_id
    assert raw.tasks[1].lease.attempt == 2


@pytest.mark.xfail(
    strict=True,
    reason="core/service.py _announce wakes once per type at the batch's earliest "
    "order_time: a retry reported with a due-now report gets no timer (found by docscheck)",
)
async def test_retry_reported_with_a_next_stage_is_pushed_again_when_due(
    server: Running, raw: RawWorker, clock: ManualClock
) -> None:
    await register(server.stub, schedule_interval_seconds=3600)  # the fallback poll is far off
    await create(server.stub)
    await create(server.stub)
    await raw.subscribe("lark", window=2)
    await raw.until(tasks=2)
    onward, later = raw.tasks
    reports = [  # one batch, as the SDK's Worker sends reports that finish together
        pb.SetTaskRequest(
            task_id=onward.task_id,
            lease_token=onward.lease.token,
            next_stage=pb.SetTaskRequest.NextStage(task_stage="record"),
        ),
        pb.SetTaskRequest(
            task_id=later.task_id,
            lease_token=later.lease.token,
            retry=pb.SetTaskRequest.Retry(error_message="later", delay_seconds=1),
        ),
    ]
    await raw.send(Request(reports=Request.Reports(reports=reports)))
    await raw.until(answers=1, tasks=3)  # the next stage is due at once
    assert raw.tasks[2].task_id == onward.task_id
    clock.advance(1)
    await raw.until(tasks=4, within=5)  # the retry, once its back-off is over
    assert raw.tasks[3].task_id == later.task_id


@pytest.mark.parametrize("backend", ["mysql"])
async def test_wake_up_crosses_replicas(start_server: StartServer, config: Config) -> None:
    producer_side = await start_server(config)
    worker_side = await start_server(config)
    await register(producer_side.stub, schedule_interval_seconds=3600)
    raw = RawWorker(worker_side.stub)
    try:
        await raw.subscribe("lark", window=10)
        created = await create(producer_side.stub)
        await raw.until(tasks=1, within=5)  # far sooner than the 3600 s poll
        assert raw.tasks[0].task_id == created.task_id
    finally:
        raw.cancel()


BAD = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("first", "code", "field"),
    [
        (Request(set_window=Request.SetWindow(window=3)), BAD, "subscribe"),
        (subscribe("ghost"), grpc.StatusCode.NOT_FOUND, "subscribe.task_types"),
        (subscribe("lark", window=0), BAD, "subscribe.window"),
        (subscribe("Bad;"), BAD, "subscribe.task_types"),
        (subscribe(), BAD, "subscribe.task_types"),
    ],
)
async def test_bad_subscriptions_are_refused(
    server: Running, first: Request, code: grpc.StatusCode, field: str
) -> None:
    await register(server.stub)

    async def once() -> AsyncIterator[Request]:
        yield first

    call = server.stub.WorkTasks(once())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in call:
            pass
    assert error_reason(refused.value)[0::2] == (code, field)


async def test_server_stop_ends_idle_streams_cleanly(server: Running, raw: RawWorker) -> None:
    await register(server.stub)
    await raw.subscribe("lark", window=1)  # idle: sends nothing more
    await asyncio.wait_for(server.server.stop(grace=5), 10)
    assert await raw.call.code() == grpc.StatusCode.OK  # ended by the server, not cancelled


async def test_report_is_answered_after_the_worker_half_closes(
    server: Running, raw: RawWorker
) -> None:
    await register(server.stub)
    task = await create(server.stub)
    await raw.subscribe("lark", window=1)
    await raw.until(tasks=1)
    await raw.report_success(raw.tasks[0])
    await raw.close()  # half-close right behind the report
    assert await raw.call.code() == grpc.StatusCode.OK
    (answer,) = raw.answers
    assert answer.report_results.results[0].task.status == pb.TASK_STATUS_SUCCESS
    assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_SUCCESS


async def test_wrong_token_report_keeps_the_slot_and_the_lease(
    server: Running, raw: RawWorker
) -> None:
    await register(server.stub)
    await create(server.stub)
    await raw.subscribe("lark", window=1)
    await raw.until(tasks=1)
    forged = pb.SetTaskRequest(task_id=raw.tasks[0].task_id, lease_token="forged")
    forged.success.SetInParent()
    await raw.send(Request(reports=Request.Reports(reports=[forged])))
    await raw.until(answers=1)
    assert raw.answers[0].report_results.results[0].error.reason == "LEASE_LOST"
    (session,) = server.server.dispatcher.sessions.values()
    assert raw.tasks[0].task_id in session.outstanding  # still this stream's task
    raw.cancel()

    async def released() -> bool:
        return (await counts(server.stub))[pb.TASK_STATUS_PENDING] == 1

    await eventually(released, within=5, what="the un-started task released at stream end")
