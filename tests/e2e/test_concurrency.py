"""No double hold: many holders on two server replicas sharing one MariaDB.

The original handed the same task to two holders whenever two hold calls
raced (reference §12.1). Here 16 holders drain 5,000 tasks through two
servers; every task must be held exactly once and end in SUCCESS.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from conftest import Running, StartServer
from rpc import SUCCESS, counts, create, hold, register, report

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

TASKS = 5_000
HOLDERS = 16


async def create_all(replicas: list[Running], total: int) -> set[str]:
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> str:
        async with gate:
            task = await create(replicas[i % len(replicas)].stub, context=str(i))
            return task.task_id

    return set(await asyncio.gather(*(one(i) for i in range(total))))


@pytest.mark.parametrize("backend", ["mysql"])
async def test_no_task_is_held_twice_across_two_replicas(
    start_server: StartServer, config: Config
) -> None:
    replicas = [await start_server(config), await start_server(config)]
    await register(replicas[0].stub, schedule_limit=50)
    created = await create_all(replicas, TASKS)
    assert len(created) == TASKS

    held: Counter[str] = Counter()
    rng = random.Random(7)

    async def holder(n: int) -> None:
        stub = replicas[n % 2].stub
        while True:
            batch = await hold(stub, limit=rng.randint(1, 50))
            if not batch:
                return
            for task in batch:
                held[task.task_id] += 1
                assert task.status == pb.TASK_STATUS_PROCESSING
            # Report through the other replica: leases are not tied to a server.
            other = replicas[(n + 1) % 2].stub
            await asyncio.gather(*(report(other, task, SUCCESS) for task in batch))

    await asyncio.gather(*(holder(n) for n in range(HOLDERS)))

    twice = {task_id: n for task_id, n in held.items() if n > 1}
    assert twice == {}
    assert set(held) == created
    assert await counts(replicas[1].stub) == {
        pb.TASK_STATUS_PENDING: 0,
        pb.TASK_STATUS_PROCESSING: 0,
        pb.TASK_STATUS_SUCCESS: TASKS,
        pb.TASK_STATUS_FAILED: 0,
        pb.TASK_STATUS_CANCELLED: 0,
    }


async def test_concurrent_holders_on_one_server_get_disjoint_batches(
    stub: pb_grpc.TaskServiceStub,
) -> None:
    """Same property on each backend (SQLite included), with a single server."""
    await register(stub)
    ids = {(await create(stub)).task_id for _ in range(300)}
    batches = await asyncio.gather(*(hold(stub, limit=13) for _ in range(40)))
    got = [t.task_id for batch in batches for t in batch]
    assert len(got) == len(set(got)) == 300
    assert set(got) == ids
