"""One bad item of a WorkTasks reports/extend message is refused alone.

Whatever is wrong with an item (its token, its id, its outcome, its task), that
item gets an ItemError, the other items of the same message are applied and
answered, and the stream goes on.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import Running, StartServer
from hostile import assert_quiet_log
from rpc import create, get, register
from streams import RawWorker, Request

from asyncflow.config import Config
from asyncflow.core.validate import Limits
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

OK = ("", "", "")
INVALID = "INVALID_ARGUMENT"
NOT_FOUND = ("NOT_FOUND", "TASK_NOT_FOUND", "task_id")
LEASE_LOST = ("FAILED_PRECONDITION", "LEASE_LOST", "lease_token")
NOT_PROCESSING = ("FAILED_PRECONDITION", "TASK_NOT_PROCESSING", "task_id")
HUGE_POSITION = "a_lark_" + "1" * 5000


@pytest.fixture
async def raw(server: Running) -> AsyncIterator[RawWorker]:
    worker = RawWorker(server.stub)
    yield worker
    worker.cancel()


def set_request(task_id: str, token: str, **fields: object) -> pb.SetTaskRequest:
    if not fields:
        fields = {"success": pb.SetTaskRequest.Success()}
    return pb.SetTaskRequest(task_id=task_id, lease_token=token, **fields)  # type: ignore[arg-type]


def invalid(field: str) -> tuple[str, str, str]:
    return (INVALID, INVALID, field)


def outcome(result: pb.ReportResult | pb.ExtendResult) -> tuple[str, str, str]:
    return (result.error.code, result.error.reason, result.error.field)


async def test_bad_items_are_refused_alone(
    server: Running, raw: RawWorker, caplog: pytest.LogCaptureFixture
) -> None:
    stub = server.stub
    await register(stub, max_processing_time_seconds=60)
    for index in range(5):
        await create(stub, context=f"task {index}")
    await raw.subscribe("lark", window=5)
    await raw.until(tasks=5)
    p0, p1, p2, p3, p4 = raw.tasks
    waiting = await create(stub)  # the window is full: it stays PENDING
    before = {t.task_id: await get(stub, t.task_id) for t in (p1, p2, p3)}

    reports = [
        (set_request(p0.task_id, p0.lease.token), OK),
        (set_request(p1.task_id, "é"), invalid("lease_token")),
        (set_request(p2.task_id, "x" * 10_000), invalid("lease_token")),
        (set_request(HUGE_POSITION, p3.lease.token), invalid("task_id")),
        (set_request("nope_lark_1", p3.lease.token), NOT_FOUND),
        (set_request("nope_lark_99", p3.lease.token), NOT_FOUND),
        (pb.SetTaskRequest(task_id=p3.task_id, lease_token=p3.lease.token), invalid("outcome")),
        (set_request(p3.task_id, "0" * 32), LEASE_LOST),
        (
            set_request(
                p3.task_id, p3.lease.token, retry=pb.SetTaskRequest.Retry(delay_seconds=2**32 - 1)
            ),
            invalid("retry.delay_seconds"),
        ),
        (
            set_request(
                p3.task_id, p3.lease.token, next_stage=pb.SetTaskRequest.NextStage(task_stage="\0")
            ),
            invalid("next_stage.task_stage"),
        ),
        (
            set_request(
                p3.task_id, p3.lease.token, success=pb.SetTaskRequest.Success(), context="x" * 8193
            ),
            invalid("context"),
        ),
        (set_request(waiting.task_id, p0.lease.token), NOT_PROCESSING),
        (
            set_request(
                p4.task_id, p4.lease.token, next_stage=pb.SetTaskRequest.NextStage(task_stage="two")
            ),
            OK,
        ),
    ]
    await raw.send(Request(reports=Request.Reports(reports=[r for r, _ in reports])))
    await raw.until(answers=1)
    results = raw.answers[0].report_results.results
    assert [r.task_id for r in results] == [r.task_id for r, _ in reports]
    assert [outcome(r) for r in results] == [expected for _, expected in reports]
    assert results[0].task.status == pb.TASK_STATUS_SUCCESS
    assert results[-1].task.task_stage == "two"

    extends = [
        (p1.lease.token, p1.task_id, OK),
        ("é", p2.task_id, invalid("lease_token")),
        ("", p2.task_id, invalid("lease_token")),
        (p3.lease.token, HUGE_POSITION, invalid("task_id")),
        (p3.lease.token, "nope_lark_1", NOT_FOUND),
        (p0.lease.token, p0.task_id, NOT_PROCESSING),
        ("0" * 32, p3.task_id, LEASE_LOST),
    ]
    leases = [pb.ExtendLeaseRequest(task_id=i, lease_token=t) for t, i, _ in extends]
    await raw.send(Request(extend=Request.Extend(leases=leases)))
    await raw.until(answers=2)
    extended = raw.answers[1].extend_results.results
    assert [outcome(r) for r in extended] == [expected for _, _, expected in extends]
    assert extended[0].lease.token == p1.lease.token

    # The stream lives on: a good report after all that is applied and answered.
    await raw.report_success(p1)
    await raw.until(answers=3)
    assert raw.answers[2].report_results.results[0].task.status == pb.TASK_STATUS_SUCCESS
    assert not raw.call.done()

    # Read every row back: only the accepted items changed anything.
    assert (await get(stub, p0.task_id)).status == pb.TASK_STATUS_SUCCESS
    assert (await get(stub, p1.task_id)).status == pb.TASK_STATUS_SUCCESS
    assert (await get(stub, p4.task_id)).task_stage == "two"
    for task in (p2, p3):
        assert await get(stub, task.task_id) == before[task.task_id]
    assert (await get(stub, waiting.task_id)).status in (
        pb.TASK_STATUS_PENDING,
        pb.TASK_STATUS_PROCESSING,  # pushed once the accepted reports freed slots
    )
    assert_quiet_log(caplog)


async def test_non_ascii_token_beside_a_good_report(
    server: Running, raw: RawWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case: the good report is applied and answered, the stream lives."""
    await register(server.stub)
    for _ in range(2):
        await create(server.stub)
    await raw.subscribe("lark", window=2)
    await raw.until(tasks=2)
    good, bad = raw.tasks
    lease = [
        pb.ExtendLeaseRequest(task_id=bad.task_id, lease_token="é"),
        pb.ExtendLeaseRequest(task_id=bad.task_id, lease_token=bad.lease.token),
    ]
    await raw.send(Request(extend=Request.Extend(leases=lease)))
    await raw.until(answers=1)
    assert [outcome(r) for r in raw.answers[0].extend_results.results] == [
        invalid("lease_token"),
        OK,
    ]
    reports = [set_request(bad.task_id, "é"), set_request(good.task_id, good.lease.token)]
    await raw.send(Request(reports=Request.Reports(reports=reports)))
    await raw.until(answers=2)
    results = raw.answers[1].report_results.results
    assert [outcome(r) for r in results] == [invalid("lease_token"), OK]
    assert (await get(server.stub, good.task_id)).status == pb.TASK_STATUS_SUCCESS
    assert (await get(server.stub, bad.task_id)).status == pb.TASK_STATUS_PROCESSING
    assert not raw.call.done()
    assert_quiet_log(caplog)


async def test_worker_id_cannot_forge_log_lines(
    server: Running, raw: RawWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncflow.server.dispatch")
    await register(server.stub)
    forged = "w1\n2030-01-01 00:00:00 ERROR asyncflow: forged\r\x1b[31m"
    subscribe = Request.Subscribe(task_types=["lark"], window=1, worker_id=forged)
    await raw.send(Request(subscribe=subscribe))
    assert (await raw.call.read()).HasField("subscribed")  # type: ignore[union-attr]
    (opened,) = [r.getMessage() for r in caplog.records if "opened by" in r.getMessage()]
    assert "w1\ufffd2030-01-01 00:00:00 ERROR asyncflow: forged\ufffd\ufffd[31m" in opened
    assert opened.isprintable()


async def test_reports_message_of_any_length_is_applied_in_chunks(
    start_server: StartServer, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """Reports are applied max_hold_limit at a time, answered in order as one message."""
    running = await start_server(config, limits=Limits(max_hold_limit=3))
    await register(running.stub, schedule_limit=3)
    for _ in range(7):
        await create(running.stub)
    raw = RawWorker(running.stub)
    try:
        await raw.subscribe("lark", window=3)
        await raw.until(tasks=3)
        good = [set_request(t.task_id, t.lease.token) for t in raw.tasks]
        bad = [set_request(t.task_id, "é") for t in raw.tasks]
        reports = [good[0], bad[1], bad[2], good[1], bad[0], "nope_lark_1", good[2]]
        message = [r if isinstance(r, pb.SetTaskRequest) else set_request(r, "t") for r in reports]
        await raw.send(Request(reports=Request.Reports(reports=message)))
        await raw.until(answers=1)
        results = raw.answers[0].report_results.results
        assert [r.task_id for r in results] == [r.task_id for r in message]
        assert [outcome(r) for r in results] == [
            OK,
            invalid("lease_token"),
            invalid("lease_token"),
            OK,
            invalid("lease_token"),
            NOT_FOUND,
            OK,
        ]
        for task in raw.tasks[:3]:
            assert (await get(running.stub, task.task_id)).status == pb.TASK_STATUS_SUCCESS
    finally:
        raw.cancel()
    assert_quiet_log(caplog)


async def test_more_reports_than_sqlite_binds_in_one_statement(
    start_server: StartServer, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """One message with more reports than SQLite's bound-variable limit."""
    running = await start_server(config)
    await register(running.stub)
    count = sqlite3.connect(":memory:").getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) + 1
    unbounded = grpc.aio.insecure_channel(
        running.address, options=[("grpc.max_receive_message_length", -1)]
    )
    raw = RawWorker(pb_grpc.TaskServiceStub(unbounded))
    try:
        await raw.subscribe("lark", window=1)
        reports = Request.Reports()
        reports.reports.extend([set_request("nope_lark_1", "t")] * count)
        await raw.send(Request(reports=reports))
        await raw.until(answers=1, within=60)
        results = raw.answers[0].report_results.results
        assert len(results) == count
        assert {outcome(r) for r in results} == {NOT_FOUND}
        assert not raw.call.done()
    finally:
        raw.cancel()
        await unbounded.close()
    assert_quiet_log(caplog)
