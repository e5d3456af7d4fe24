"""Fencing: a holder whose lease was superseded cannot change the task (reference §12.2)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import Running
from rpc import SUCCESS, create, error_reason, fail, get, hold, next_stage, register, report

from asyncflow.clock import ManualClock
from asyncflow.v1 import task_service_pb2 as pb


async def recover(server: Running) -> list[str]:
    """One stuck-recovery pass over every type, as the governance loop runs it."""
    core = server.server.core
    recovered = []
    for config in await core.list_types():
        recovered += [t.task_id for t in await core.recover_stuck(config, batch=1000)]
    return recovered


async def test_superseded_holder_cannot_report(server: Running, clock: ManualClock) -> None:
    stub = server.stub
    await register(stub, max_processing_time_seconds=30)
    task = await create(stub, context="original")
    (first,) = await hold(stub)
    assert first.lease.attempt == 1

    clock.advance(31)  # the first holder's lease expires
    assert await recover(server) == [task.task_id]
    clock.advance(60)  # past the back-off
    (second,) = await hold(stub)
    assert second.task_id == task.task_id
    assert second.lease.attempt == 2
    assert second.lease.token != first.lease.token

    before = await get(stub, task.task_id)
    for outcome in (SUCCESS, fail(), next_stage("hijack")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await report(stub, first, outcome, context="zombie")
        assert error_reason(refused.value) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "LEASE_LOST",
            "lease_token",
        )
    assert await get(stub, task.task_id) == before

    done = await report(stub, second, SUCCESS)
    assert done.status == pb.TASK_STATUS_SUCCESS
    assert done.context == "original"


async def test_report_after_recovery_is_refused_until_reheld(
    server: Running, clock: ManualClock
) -> None:
    stub = server.stub
    await register(stub, max_processing_time_seconds=10)
    task = await create(stub)
    (held,) = await hold(stub)
    clock.advance(11)
    await recover(server)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await report(stub, held, SUCCESS)
    assert error_reason(refused.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "TASK_NOT_PROCESSING",
    )
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_PENDING


async def test_terminal_states_are_sticky(server: Running) -> None:
    stub = server.stub
    await register(stub)
    task = await create(stub)
    (held,) = await hold(stub)
    await report(stub, held, fail("no"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await report(stub, held, SUCCESS)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_FAILED


async def test_racing_reports_with_one_lease_apply_once(server: Running) -> None:
    """Two copies of the same report (a retried RPC, say): exactly one applies."""
    stub = server.stub
    await register(stub)
    task = await create(stub)
    (held,) = await hold(stub)
    results = await asyncio.gather(
        *(report(stub, held, next_stage(f"s{i}")) for i in range(8)), return_exceptions=True
    )
    applied = [r for r in results if isinstance(r, pb.Task)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(applied) == 1
    assert len(refused) == 7
    assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in refused)
    final = await get(stub, task.task_id)
    assert final.task_stage == applied[0].task_stage
    assert final.status == pb.TASK_STATUS_PENDING
