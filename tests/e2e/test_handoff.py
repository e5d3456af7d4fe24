"""Hand-off (sync match): a create on the replica where a stream waits with room
commits the task already leased to that stream and pushes it after the commit.
The lease is an ordinary one: if the worker dies, the task comes back, and a
late report under that lease is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import Running
from rpc import SUCCESS, counts, create, error_reason, get, hold, register, report
from streams import RawWorker, Request
from test_fencing import recover
from waiting import eventually

from asyncflow.clock import ManualClock
from asyncflow.v1 import task_service_pb2 as pb


@pytest.fixture
async def raw(server: Running) -> AsyncIterator[RawWorker]:
    worker = RawWorker(server.stub)
    yield worker
    worker.cancel()


async def waiting_stream(server: Running, raw: RawWorker, window: int = 2) -> None:
    """Subscribe and wait until the stream found nothing due and waits."""
    await register(server.stub, max_processing_time_seconds=30)
    await raw.subscribe("lark", window=window)
    dispatcher = server.server.dispatcher

    async def waits() -> bool:  # registered as waiting, and no hold of its own in flight
        sessions = list(dispatcher.sessions.values())
        return dispatcher.hub.waiting("lark") == 1 and sessions[0].claiming == 0

    await eventually(waits, what="the stream waiting")


async def test_a_create_hands_the_task_to_the_waiting_stream(server: Running, raw: RawWorker
                                                             ) -> None:  # fmt: skip
    await waiting_stream(server, raw)
    created = await create(server.stub, context="ctx")
    # Committed already leased: the create's reply shows it held (attempt 1).
    assert created.status == pb.TASK_STATUS_PROCESSING
    assert (created.lease.attempt, created.lease.token) == (1, "")  # the token is the holder's
    await raw.until(tasks=1)
    (pushed,) = raw.tasks
    assert pushed.task_id == created.task_id
    assert pushed.lease.token
    await raw.report_success(pushed)
    await raw.until(answers=1)
    assert (await get(server.stub, created.task_id)).status == pb.TASK_STATUS_SUCCESS


async def test_a_handed_off_task_comes_back_when_its_worker_dies(
    server: Running, raw: RawWorker, clock: ManualClock
) -> None:
    stub = server.stub
    await waiting_stream(server, raw)
    created = await create(stub)
    assert created.status == pb.TASK_STATUS_PROCESSING
    await raw.until(tasks=1)
    (pushed,) = raw.tasks
    # The worker starts it (so the stream's end does not give it back) and dies.
    await raw.send(Request(started=Request.Started(task_ids=[pushed.task_id])))
    (session,) = server.server.dispatcher.sessions.values()

    async def marked_started() -> bool:
        return session.outstanding[pushed.task_id].started

    await eventually(marked_started, what="the start acknowledgement")
    raw.cancel()

    async def stream_gone() -> bool:
        return session.finished.is_set()

    await eventually(stream_gone, what="the stream's end")
    assert (await get(stub, created.task_id)).status == pb.TASK_STATUS_PROCESSING

    clock.advance(31)  # past the lease: stuck recovery returns the task
    assert await recover(server) == [created.task_id]
    assert (await get(stub, created.task_id)).status == pb.TASK_STATUS_PENDING
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await report(stub, pushed, SUCCESS)
    assert error_reason(late.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION,
                                            "TASK_NOT_PROCESSING")  # fmt: skip
    clock.advance(60)  # past the retry back-off
    (again,) = await hold(stub)
    assert again.task_id == created.task_id
    assert again.lease.attempt == 2
    assert again.lease.token != pushed.lease.token
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await report(stub, pushed, SUCCESS)  # the dead worker's lease is fenced off
    assert error_reason(stale.value) == (grpc.StatusCode.FAILED_PRECONDITION, "LEASE_LOST",
                                         "lease_token")  # fmt: skip
    assert (await report(stub, again, SUCCESS)).status == pb.TASK_STATUS_SUCCESS


async def test_an_unstarted_handed_off_task_returns_when_the_stream_ends(
    server: Running, raw: RawWorker
) -> None:
    await waiting_stream(server, raw)
    created = await create(server.stub)
    await raw.until(tasks=1)
    raw.cancel()  # dies right after the push, before starting it

    async def released() -> bool:
        return (await get(server.stub, created.task_id)).status == pb.TASK_STATUS_PENDING

    await eventually(released, what="the un-started task back to pending")
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await report(server.stub, raw.tasks[0], SUCCESS)
    assert error_reason(late.value)[0] == grpc.StatusCode.FAILED_PRECONDITION


async def test_no_hand_off_for_a_paused_type_or_a_task_not_due(
    server: Running, raw: RawWorker, clock: ManualClock
) -> None:
    stub = server.stub
    await waiting_stream(server, raw)
    later = await create(stub, run_at=clock.now() + 10)
    assert later.status == pb.TASK_STATUS_PENDING
    await stub.PauseTaskType(pb.PauseTaskTypeRequest(task_type="lark"))
    paused = await create(stub)
    assert paused.status == pb.TASK_STATUS_PENDING
    assert raw.tasks == []
    assert (await counts(stub))[pb.TASK_STATUS_PENDING] == 2
    await stub.ResumeTaskType(pb.ResumeTaskTypeRequest(task_type="lark"))
    await raw.until(tasks=1)  # pushed by the usual claim once resumed
    assert raw.tasks[0].task_id == paused.task_id


async def test_the_window_counts_handed_off_tasks(server: Running, raw: RawWorker) -> None:
    await waiting_stream(server, raw, window=2)
    made = [await create(server.stub) for _ in range(3)]
    assert [t.status for t in made] == [pb.TASK_STATUS_PROCESSING] * 2 + [pb.TASK_STATUS_PENDING]
    await raw.until(tasks=2)
    (session,) = server.server.dispatcher.sessions.values()
    assert session.max_outstanding == 2
    assert (await counts(server.stub))[pb.TASK_STATUS_PENDING] == 1
