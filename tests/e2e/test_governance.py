"""Governance passes (reference §7 and defects §12.4-6, 19-21) with an injected clock."""

from __future__ import annotations

import logging

import grpc
import pytest
from conftest import Running
from rpc import SUCCESS, counts, create, error_reason, get, hold, register, report

from asyncflow.clock import ManualClock
from asyncflow.core.governance import Governance, GovernanceSettings
from asyncflow.v1 import task_service_pb2 as pb


def governance(server: Running, **settings: object) -> Governance:
    running = server.server
    return Governance(
        running.store,
        running.core.clock,
        running.core.recover_stuck,
        GovernanceSettings(**settings),  # type: ignore[arg-type]
    )


async def positions(server: Running) -> tuple[int, int, int]:
    """(data_begin_pos, begin_pos, end_pos) as ListTaskTypes reports them."""
    reply = await server.stub.ListTaskTypes(pb.ListTaskTypesRequest())
    (config,) = [c for c in reply.task_types if c.task_type == "lark"]
    return config.data_begin_pos, config.begin_pos, config.end_pos


def actions(caplog: pytest.LogCaptureFixture, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == action]


async def test_stuck_recovery_counts_retries_then_fails(
    server: Running, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncflow.core.governance")
    stub = server.stub
    await register(stub, max_processing_time_seconds=30, max_retry_num=1, retry_interval_seconds=4)
    task = await create(stub)
    gov = governance(server)
    (first,) = await hold(stub)
    clock.advance(30)
    assert await gov.recover_stuck() == 0  # the deadline itself is still inside the lease
    clock.advance(1)
    assert await gov.recover_stuck() == 1

    # The cache was refreshed: a read right after recovery shows the new state.
    seen = await get(stub, task.task_id)
    assert (seen.status, seen.crt_retry_num) == (pb.TASK_STATUS_PENDING, 1)
    assert seen.order_time == clock.now() + 4  # progressive: 4 * 2**0
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await report(stub, first, SUCCESS)
    assert error_reason(refused.value)[1] == "TASK_NOT_PROCESSING"

    clock.advance(4)
    (second,) = await hold(stub)
    assert second.lease.attempt == 2
    clock.advance(31)
    assert await gov.recover_stuck() == 1
    final = await get(stub, task.task_id)
    assert (final.status, final.crt_retry_num) == (pb.TASK_STATUS_FAILED, 1)
    logged = actions(caplog, "recover_stuck")
    assert [(r.task_type, r.tasks, r.failed) for r in logged] == [("lark", 1, 0), ("lark", 1, 1)]  # type: ignore[attr-defined]


async def test_split_then_advance_while_holds_keep_working(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncflow.core.governance")
    stub = server.stub
    await register(stub)
    gov = governance(server, table_max_rows=5)
    first_table = [await create(stub) for _ in range(4)]
    assert await gov.split_tables() == 0  # 4 rows: not full yet
    first_table.append(await create(stub))
    assert await gov.split_tables() == 1
    assert await gov.split_tables() == 0  # the new table is empty
    assert await positions(server) == (1, 1, 2)
    second_table = [await create(stub) for _ in range(3)]
    assert all(t.task_id.endswith("_lark_2") for t in second_table)

    assert await gov.advance_begin() == 0  # table 1 still has pending tasks
    held = await hold(stub, limit=100)  # one hold spans both tables
    assert {t.task_id for t in held} == {t.task_id for t in first_table + second_table}
    in_table_1 = [t for t in held if t.task_id.endswith("_lark_1")]
    for task in held:
        if task is not in_table_1[0]:
            await report(stub, task, SUCCESS)
    assert await gov.advance_begin() == 0  # one task of table 1 is still processing
    await report(stub, in_table_1[0], SUCCESS)
    assert await gov.advance_begin() == 1
    assert await positions(server) == (1, 2, 2)
    assert await gov.advance_begin() == 0  # begin never passes end
    assert [r.table for r in actions(caplog, "split")] == ["t_lark_task_2"]  # type: ignore[attr-defined]
    assert [r.begin_pos for r in actions(caplog, "advance_begin")] == [2]  # type: ignore[attr-defined]


async def test_retention_drops_only_old_retired_tables(
    server: Running, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncflow.core.governance")
    stub = server.stub
    await register(stub)
    gov = governance(server, table_max_rows=2, retention_days=1)
    old = [await create(stub, idempotency_key=f"old-{i}") for i in range(2)]
    assert await gov.split_tables() == 1
    for task in await hold(stub, limit=10):
        await report(stub, task, SUCCESS)
    assert await gov.advance_begin() == 1
    assert await gov.drop_retired() == 0  # retired, but not old enough
    clock.advance(86_400 + 1)
    newer = await create(stub)
    assert await gov.drop_retired() == 1
    assert await positions(server) == (2, 2, 2)
    assert [r.table for r in actions(caplog, "drop_table")] == ["t_lark_task_1"]  # type: ignore[attr-defined]
    assert sum((await counts(stub)).values()) == 1
    store = server.server.core.store
    assert await store.task_get("lark", 1, old[0].task_id) is None
    # The idempotency window closed with the table: the key is free again.
    again = await stub.CreateTask(pb.CreateTaskRequest(task_type="lark", idempotency_key="old-0"))
    assert again.created
    assert (await get(stub, newer.task_id)).task_id == newer.task_id


async def test_retention_is_off_by_default(server: Running, clock: ManualClock) -> None:
    await register(server.stub)
    gov = governance(server, table_max_rows=1)
    await create(server.stub)
    await gov.split_tables()
    for task in await hold(server.stub):
        await report(server.stub, task, SUCCESS)
    await gov.advance_begin()
    clock.advance(10 * 365 * 86_400)
    assert await gov.drop_retired() == 0
    assert await positions(server) == (1, 2, 2)
