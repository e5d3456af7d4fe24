"""CancelTask and CancelTasks: CANCELLED is terminal, the holder is told, late reports
are refused, and a cancel racing a report never lets both win."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import Running, StartServer
from rpc import SUCCESS, counts, create, error_reason, get, hold, register, report
from streams import RawWorker, Request
from waiting import eventually

from asyncflow.clock import ManualClock
from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def cancel(stub: pb_grpc.TaskServiceStub, task_id: str, reason: str = "") -> pb.Task:
    return (await stub.CancelTask(pb.CancelTaskRequest(task_id=task_id, reason=reason))).task


async def refusal(call: object) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    return error_reason(refused.value)


@pytest.fixture
async def raw(server: Running) -> AsyncIterator[RawWorker]:
    worker = RawWorker(server.stub)
    yield worker
    worker.cancel()


async def test_a_pending_task_is_cancelled_for_good(server: Running, clock: ManualClock) -> None:
    stub = server.stub
    await register(stub)
    task = await create(stub)
    cancelled = await cancel(stub, task.task_id, "no longer wanted")
    assert cancelled.status == pb.TASK_STATUS_CANCELLED
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_CANCELLED
    last = json.loads(cancelled.schedule_log)["last"]
    assert (last["outcome"], last["error"]) == ("cancel", "no longer wanted")
    clock.advance(3600)
    assert await hold(stub) == []  # never held again
    again = await cancel(stub, task.task_id)  # idempotent: unchanged
    assert again == cancelled
    assert (await counts(stub))[pb.TASK_STATUS_CANCELLED] == 1


async def test_a_finished_or_missing_task_is_refused(server: Running) -> None:
    stub = server.stub
    await register(stub)
    await create(stub)
    (held,) = await hold(stub)
    done = await report(stub, held, SUCCESS)
    assert await refusal(cancel(stub, done.task_id)) == (PRECONDITION, "TASK_FINISHED", "task_id")
    assert (await get(stub, done.task_id)) == done
    assert await refusal(cancel(stub, "nope_lark_1")) == (
        grpc.StatusCode.NOT_FOUND, "TASK_NOT_FOUND", "task_id")  # fmt: skip
    assert await refusal(cancel(stub, "bad id")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "task_id")  # fmt: skip
    task = await create(stub)
    assert await refusal(cancel(stub, task.task_id, "x" * 4097)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "reason")  # fmt: skip
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_PENDING


async def test_a_running_task_is_cancelled_and_its_worker_told(
    server: Running, raw: RawWorker
) -> None:
    stub = server.stub
    await register(stub)
    first, second = await create(stub), await create(stub)
    await raw.subscribe("lark", window=1)
    await raw.until(tasks=1)
    (pushed,) = raw.tasks
    assert pushed.task_id == first.task_id
    await raw.send(Request(started=Request.Started(task_ids=[pushed.task_id])))

    cancelled = await cancel(stub, pushed.task_id, "operator says stop")
    assert cancelled.status == pb.TASK_STATUS_CANCELLED
    assert not cancelled.HasField("lease")
    await raw.until(tasks=2, answers=1)  # the notice, and the freed slot filled at once
    notice = raw.answers[0]
    assert notice.WhichOneof("response") == "cancelled"
    assert list(notice.cancelled.task_ids) == [pushed.task_id]
    assert notice.cancelled.reason == "operator says stop"
    assert raw.tasks[1].task_id == second.task_id

    # The worker's late report and renewal are refused, by SetTask and on the stream.
    assert await refusal(report(stub, pushed, SUCCESS)) == (PRECONDITION, "TASK_CANCELLED",
                                                             "task_id")  # fmt: skip
    assert await refusal(stub.ExtendLease(pb.ExtendLeaseRequest(
        task_id=pushed.task_id, lease_token=pushed.lease.token))) == (
        PRECONDITION, "TASK_CANCELLED", "task_id")  # fmt: skip
    await raw.report_success(pushed)
    await raw.until(answers=2)
    (result,) = raw.answers[1].report_results.results
    assert (result.error.code, result.error.reason) == ("FAILED_PRECONDITION", "TASK_CANCELLED")
    assert (await get(stub, pushed.task_id)).status == pb.TASK_STATUS_CANCELLED


async def test_bulk_cancel_touches_only_matching_tasks_page_by_page(server: Running) -> None:
    stub = server.stub
    await register(stub)
    await register(stub, "other")
    matching = [await create(stub, task_stage="send") for _ in range(5)]
    other_stage = await create(stub, task_stage="record")
    other_type = await create(stub, "other", task_stage="send")
    held = await hold(stub, limit=2)  # two matching tasks are PROCESSING now
    assert {t.task_id for t in held} <= {t.task_id for t in matching}

    # Only the PENDING ones first, two per page.
    cancelled: list[str] = []
    token = ""
    while True:
        reply = await stub.CancelTasks(pb.CancelTasksRequest(
            task_type="lark", status=pb.TASK_STATUS_PENDING, task_stage="send", page_size=2,
            page_token=token, reason="bulk"))  # fmt: skip
        cancelled += [t.task_id for t in reply.tasks]
        assert all(t.status == pb.TASK_STATUS_CANCELLED for t in reply.tasks)
        token = reply.next_page_token
        if not token:
            break
    pending = {t.task_id for t in matching} - {t.task_id for t in held}
    assert set(cancelled) == pending
    for task in held:
        assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_PROCESSING
    # Then the rest (PENDING and PROCESSING).
    reply = await stub.CancelTasks(pb.CancelTasksRequest(task_type="lark", task_stage="send"))
    assert {t.task_id for t in reply.tasks} == {t.task_id for t in held}
    assert reply.next_page_token == ""
    assert (await get(stub, other_stage.task_id)).status == pb.TASK_STATUS_PENDING
    assert (await get(stub, other_type.task_id)).status == pb.TASK_STATUS_PENDING
    assert (await counts(stub))[pb.TASK_STATUS_CANCELLED] == 5


@pytest.mark.parametrize("status", [pb.TASK_STATUS_SUCCESS, pb.TASK_STATUS_CANCELLED, 9])
async def test_bulk_cancel_refuses_a_finished_status(server: Running, status: int) -> None:
    await register(server.stub)
    await create(server.stub)
    request = pb.CancelTasksRequest(task_type="lark", status=status)  # type: ignore[arg-type]
    assert await refusal(server.stub.CancelTasks(request)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "status")  # fmt: skip
    assert (await counts(server.stub))[pb.TASK_STATUS_PENDING] == 1


async def test_cancel_racing_reports_never_lets_both_win(server: Running) -> None:
    """Each task ends either CANCELLED (its report refused) or reported (its cancel
    refused or finding it re-queued): never a report applied to a cancelled task."""
    stub = server.stub
    await register(stub, schedule_limit=100)
    for _ in range(60):
        await create(stub)
    held = await hold(stub, limit=60)

    async def outcome_of_report(task: pb.Task) -> str:
        try:
            await report(stub, task, SUCCESS)
        except grpc.aio.AioRpcError as refused:
            return error_reason(refused)[1]
        return "reported"

    async def outcome_of_cancel(task: pb.Task) -> str:
        try:
            await cancel(stub, task.task_id)
        except grpc.aio.AioRpcError as refused:
            return error_reason(refused)[1]
        return "cancelled"

    outcomes = await asyncio.gather(
        *(outcome_of_report(t) for t in held), *(outcome_of_cancel(t) for t in held)
    )
    reports, cancels = outcomes[: len(held)], outcomes[len(held) :]
    for task, by_report, by_cancel in zip(held, reports, cancels, strict=True):
        final = (await get(stub, task.task_id)).status
        if by_report == "reported":
            assert (by_cancel, final) == ("TASK_FINISHED", pb.TASK_STATUS_SUCCESS)
        else:
            assert (by_report, by_cancel, final) == (
                "TASK_CANCELLED", "cancelled", pb.TASK_STATUS_CANCELLED)  # fmt: skip


async def test_cancel_racing_holds_leaves_nothing_runnable(server: Running) -> None:
    """Holds and cancels of the same tasks at once: every task ends CANCELLED, whether
    a hold got it first or not, and no holder can report it."""
    stub = server.stub
    await register(stub, schedule_limit=100)
    created = [await create(stub) for _ in range(60)]
    results = await asyncio.gather(
        *(hold(stub, limit=10) for _ in range(6)),
        *(cancel(stub, task.task_id) for task in created),
    )
    held = [task for batch in results[:6] for task in batch]  # type: ignore[union-attr]
    for task in created:
        assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_CANCELLED
    for task in held:
        assert await refusal(report(stub, task, SUCCESS)) == (PRECONDITION, "TASK_CANCELLED",
                                                              "task_id")  # fmt: skip
    assert await hold(stub, limit=100) == []


@pytest.mark.parametrize("backend", ["mysql"])
async def test_the_holder_is_told_on_another_replica(
    start_server: StartServer, config: Config
) -> None:
    streaming, operating = await start_server(config), await start_server(config)
    await register(operating.stub)
    task = await create(operating.stub)
    raw = RawWorker(streaming.stub)
    try:
        await raw.subscribe("lark", window=1)
        await raw.until(tasks=1)
        await cancel(operating.stub, task.task_id, "elsewhere")
        await raw.until(answers=1)
        assert list(raw.answers[0].cancelled.task_ids) == [task.task_id]

        async def slot_freed() -> bool:
            (session,) = streaming.server.dispatcher.sessions.values()
            return not session.outstanding

        await eventually(slot_freed, within=5, what="the stream's slot freed")
    finally:
        raw.cancel()
