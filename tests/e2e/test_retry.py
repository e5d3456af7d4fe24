"""Retries, back-off, priority ordering and head-of-line freedom, through the server.

The original never persisted order_time or priority, so back-off and priority
had no effect (reference §12.3), and holds read only the begin table (§12.5).
"""

from __future__ import annotations

from conftest import Running
from rpc import SUCCESS, create, get, hold, next_stage, register, report, retry

from asyncflow.clock import ManualClock
from asyncflow.v1 import task_service_pb2 as pb


async def run_until_failed(server: Running, clock: ManualClock, task_id: str) -> list[int]:
    """Hold and report a retry each time the task is due; return the delays seen."""
    stub = server.stub
    delays = []
    while True:
        (held,) = await hold(stub)
        assert held.task_id == task_id
        after = await report(stub, held, retry("flaky"))
        if after.status == pb.TASK_STATUS_FAILED:
            assert held.lease.attempt == len(delays) + 1
            return delays
        delay = after.order_time - clock.now()
        delays.append(delay)
        assert after.crt_retry_num == len(delays)
        clock.advance(delay - 1)
        assert await hold(stub) == []  # not due one second early
        clock.advance(1)


async def test_progressive_backoff_then_exhaustion(server: Running, clock: ManualClock) -> None:
    await register(
        server.stub, max_retry_num=5, retry_interval_seconds=3, max_retry_interval_seconds=20
    )
    task = await create(server.stub)
    delays = await run_until_failed(server, clock, task.task_id)
    # max_retry_num + 1 attempts: 5 retries with doubling delays capped at 20, then FAILED.
    assert delays == [3, 6, 12, 20, 20]
    final = await get(server.stub, task.task_id)
    assert (final.status, final.crt_retry_num) == (pb.TASK_STATUS_FAILED, 5)
    assert '"outcome":"fail"' in final.schedule_log


async def test_uniform_backoff(server: Running, clock: ManualClock) -> None:
    await register(
        server.stub,
        max_retry_num=3,
        retry_strategy=pb.RETRY_STRATEGY_UNIFORM,
        retry_interval_seconds=7,
    )
    task = await create(server.stub)
    assert await run_until_failed(server, clock, task.task_id) == [7, 7, 7]


async def test_zero_retries_fails_on_first_error(server: Running, clock: ManualClock) -> None:
    await register(server.stub, max_retry_num=0)
    task = await create(server.stub)
    assert await run_until_failed(server, clock, task.task_id) == []


async def test_requested_delay_overrides_policy(server: Running, clock: ManualClock) -> None:
    await register(server.stub, retry_interval_seconds=5)
    task = await create(server.stub)
    (held,) = await hold(server.stub)
    after = await report(server.stub, held, retry("later", delay=120))
    assert after.order_time == clock.now() + 120
    assert after.task_id == task.task_id


async def test_next_stage_resets_the_retry_budget(server: Running, clock: ManualClock) -> None:
    """Retries are per stage (the original shared one counter across stages, §12.11)."""
    await register(server.stub, max_retry_num=1, retry_interval_seconds=1)
    task = await create(server.stub, task_stage="a")
    (held,) = await hold(server.stub)
    assert (await report(server.stub, held, retry())).crt_retry_num == 1
    clock.advance(1)
    (held,) = await hold(server.stub)
    moved = await report(server.stub, held, next_stage("b"), context="from-a")
    assert (moved.task_stage, moved.crt_retry_num, moved.context) == ("b", 0, "from-a")
    (held,) = await hold(server.stub)
    assert held.context == "from-a"
    again = await report(server.stub, held, retry())
    assert (again.status, again.crt_retry_num) == (pb.TASK_STATUS_PENDING, 1)
    assert again.task_id == task.task_id


async def test_priority_orders_holds_and_survives_stages(
    server: Running, clock: ManualClock
) -> None:
    stub = server.stub
    await register(stub)
    low = await create(stub, priority=0)
    clock.advance(1)
    high = await create(stub, priority=3600)
    clock.advance(1)
    mid = await create(stub, priority=60)
    clock.advance(1)
    low_too = await create(stub, priority=0)
    held = await hold(stub, limit=2)
    assert [t.task_id for t in held] == [high.task_id, mid.task_id]
    # Re-queued for its next stage, the high-priority task keeps its advance.
    by_id = {t.task_id: t for t in held}
    requeued = await report(stub, by_id[high.task_id], next_stage("two"))
    assert requeued.order_time == clock.now() - 3600
    await report(stub, by_id[mid.task_id], SUCCESS)
    assert [t.task_id for t in await hold(stub)] == [high.task_id, low.task_id, low_too.task_id]


async def test_old_table_does_not_block_newer_tables(server: Running, clock: ManualClock) -> None:
    stub = server.stub
    await register(stub, retry_interval_seconds=3600, max_retry_interval_seconds=3600)
    stuck = await create(stub)
    (held,) = await hold(stub)
    await report(stub, held, retry("come back in an hour"))
    store = server.server.core.store
    config = await store.type_get("lark")
    assert config is not None
    assert await store.pos_split(config, clock.now())
    fresh = await create(stub)
    assert fresh.task_id.endswith("_lark_2")
    assert [t.task_id for t in await hold(stub)] == [fresh.task_id]
    clock.advance(3600)
    assert [t.task_id for t in await hold(stub)] == [stuck.task_id]
