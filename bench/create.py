"""Issue 9 items 2 and 3: one-by-one `Client.create` latency and bulk `create_many` rate.

    python -m bench create [--backend mysql|sqlite] [--quick]

A real `asyncflow serve` process; one `Client` in this process. Item 2 creates
tasks one at a time and times each call (p50/p95); item 3 sends batches of
1,000 tasks one after the other. Both count the tasks in the store afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field

from asyncflow.client import Client, TaskSpec
from bench.common import CountedUser, TaskRows, percentiles, scratch, server_process
from bench.report import Figure

BATCH = 1000


async def one_by_one(client: Client, count: int) -> dict[str, float]:
    """Milliseconds per `create`, each awaited before the next is sent."""
    for _ in range(20):  # warm up the channel and the server's pools, unmeasured
        await client.create("one")
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await client.create("one")
        samples.append((time.perf_counter() - start) * 1000)
    return percentiles(samples)


async def bulk(client: Client, total: int) -> float:
    """Tasks/s of `create_many` batches of BATCH sent one after the other."""
    await client.create_many([TaskSpec("warm")])
    start = time.perf_counter()
    for first in range(0, total, BATCH):
        await client.create_many([TaskSpec("bulk") for _ in range(min(BATCH, total - first))])
    return total / (time.perf_counter() - start)


@dataclass
class Created:
    latency: dict[str, float]
    rate: float = 0.0
    statements: list[int] = field(default_factory=list)
    """MariaDB statements of the one-by-one phase, then of the bulk phase."""


async def run(address: str, singles: int, total: int, user: CountedUser | None) -> Created:
    def statements() -> int:
        return user.statements() if user else 0

    async with Client(address) as client:
        for name in ("one", "warm", "bulk"):
            await client.register_type(name)
        before = statements()
        created = Created(await one_by_one(client, singles))
        middle = statements()
        created.rate = await bulk(client, total)
        created.statements = [middle - before, statements() - middle]
        return created


def measure(backend: str, quick: bool) -> list[Figure]:
    singles, total = (200, 5 * BATCH) if quick else (2000, 20 * BATCH)
    with scratch(backend) as database, ExitStack() as stack:
        user = stack.enter_context(CountedUser(database)) if backend == "mysql" else None
        prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        settings = user.settings if user else {}
        with server_process(database, prefix, backend, settings=settings) as (address, _):
            created = asyncio.run(run(address, singles, total, user))
        latency, rate = created.latency, created.rate
        for task_type, expected in (("one", singles + 20), ("bulk", total)):
            rows = TaskRows(backend, database, task_type)
            found = rows.count("1 = 1")
            rows.close()
            if found != expected:
                raise RuntimeError(f"{task_type}: {found} tasks in the store, {expected} created")
    one = f"one-by-one Client.create, {singles:,} calls"
    return [
        Figure(2, f"{one}: p50", latency["p50"], "ms", "p50 <= 1.5 ms", latency["p50"] <= 1.5,
               backend),
        Figure(2, f"{one}: p95", latency["p95"], "ms", backend=backend),
        Figure(3, f"create_many, batches of {BATCH:,}, {total:,} tasks", rate,
               "tasks/s", f">= {20_000 if backend == 'mysql' else 30_000:,}/s",
               rate >= (20_000 if backend == "mysql" else 30_000), backend),
    ] + ([
        # Warm-up calls included: 20 creates, one create_many of 1 task.
        Figure(2, "one-by-one create: MariaDB statements per task",
               created.statements[0] / (singles + 20), "", backend=backend),
        Figure(3, "create_many: MariaDB statements per task", created.statements[1] / (total + 1),
               "", backend=backend),
    ] if user else [])  # fmt: skip
