"""Issue 9 item 5: create -> handler start with an idle worker, 200 tasks 20 ms apart.

Reuses bench.stream's measurement: a real `asyncflow serve` process, the
producer and an SDK Worker (idle on its WorkTasks stream) in this process, one
clock for both ends.
"""

from __future__ import annotations

import asyncio
import uuid

from asyncflow.client import Client
from bench.common import TaskRows, scratch, server_process
from bench.report import Figure
from bench.stream import latency


async def run(address: str, count: int) -> dict[str, float]:
    async with Client(address) as client:
        await client.register_type("lat", schedule_limit=100)
    return await latency(address, count, rate=50.0, stream=True)


def measure(backend: str, quick: bool) -> list[Figure]:
    count = 50 if quick else 200
    with scratch(backend) as database:
        with server_process(database, f"bench:{uuid.uuid4().hex[:8]}:", backend) as (address, _):
            cuts = asyncio.run(run(address, count))
        rows = TaskRows(backend, database, "lat")
        started = rows.count("status <> 1")
        rows.close()
    if started != count:
        raise RuntimeError(f"lat: {started} of {count} tasks left PENDING")
    what = f"create -> handler start, idle worker, {count} tasks 20 ms apart"
    return [
        Figure(5, f"{what}: p50", cuts["p50"], "ms", "p50 <= 2 ms", cuts["p50"] <= 2, backend),
        Figure(5, f"{what}: p95", cuts["p95"], "ms", "p95 <= 5 ms", cuts["p95"] <= 5, backend),
    ]
