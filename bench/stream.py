"""Enqueue-to-start latency and drain throughput of no-op tasks through the SDK.

    .venv/bin/python -m bench.stream [--tasks 20000] [--latency-tasks 2000]

A real `asyncflow serve` process on MariaDB + Redis (a scratch database); the
producer and an SDK Worker run in this process. Latency: tasks created one at
a time at a steady rate while the worker idles on its stream; measured from
just before CreateTask to the handler's first line (one clock: this process).
Throughput: a backlog created first, then drained by one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from asyncflow.client import Client, TaskSpec
from asyncflow.worker import Job, Worker
from bench.common import percentiles, rss_mib, scratch_database, server_process


async def latency(address: str, count: int, rate: float, stream: bool) -> dict[str, float]:
    sent: dict[str, float] = {}
    started: dict[str, float] = {}
    finished = asyncio.Event()

    async def noop(job: Job) -> None:
        started.setdefault(job.task_id, time.perf_counter())
        if len(started) == count:
            finished.set()

    worker = Worker(
        address, handlers={"lat": noop}, concurrency=32, stream=stream, poll_interval=1.0
    )
    async with Client(address) as client, worker:
        await asyncio.sleep(1.0)  # let the worker subscribe before the clock starts
        for _ in range(count):
            # Matched by task id: the handler may start before create returns.
            start = time.perf_counter()
            sent[(await client.create("lat")).task_id] = start
            await asyncio.sleep(1 / rate)
        await asyncio.wait_for(finished.wait(), 120)
    return percentiles([(started[k] - sent[k]) * 1000 for k in sent])


async def throughput(address: str, count: int) -> tuple[float, float]:
    done = asyncio.Event()
    completed = 0

    async def noop(job: Job) -> None:
        nonlocal completed
        completed += 1
        if completed == count:
            done.set()

    async with Client(address) as client:
        start = time.perf_counter()
        for first in range(0, count, 500):
            await client.create_many([TaskSpec("drain") for _ in range(min(500, count - first))])
        create_rate = count / (time.perf_counter() - start)
        worker = Worker(address, handlers={"drain": noop}, concurrency=64, prefetch=64)
        start = time.perf_counter()
        async with worker:
            await asyncio.wait_for(done.wait(), 600)
            drain_rate = count / (time.perf_counter() - start)
    return create_rate, drain_rate


async def main(args: argparse.Namespace) -> None:
    with (
        scratch_database() as database,
        server_process(database, f"bench:{database}:") as (
            address,
            pid,
        ),
    ):
        async with Client(address) as client:
            await client.register_type("lat", schedule_limit=100)
            await client.register_type("drain", schedule_limit=500)
        stream = await latency(address, args.latency_tasks, args.rate, stream=True)
        polled = await latency(address, args.latency_tasks // 4, args.rate, stream=False)
        create_rate, drain_rate = await throughput(address, args.tasks)
        server_rss = rss_mib(pid)
    print(f"enqueue->start latency, stream, {args.latency_tasks} tasks at {args.rate:g}/s (ms):")
    print("  " + "  ".join(f"{k} {v:.1f}" for k, v in stream.items()))
    print(f"enqueue->start latency, unary polling every 1 s, {args.latency_tasks // 4} tasks (ms):")
    print("  " + "  ".join(f"{k} {v:.1f}" for k, v in polled.items()))
    print(f"create_many (batches of 500): {create_rate:,.0f} tasks/s")
    print(f"drain of {args.tasks:,} no-op tasks, 1 worker (concurrency 64, prefetch 64): "
          f"{drain_rate:,.0f} tasks/s")  # fmt: skip
    print(f"server RSS after the run: {server_rss:.0f} MiB; bench process: {rss_mib(0):.0f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--latency-tasks", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=200.0, help="creates per second")
    asyncio.run(main(parser.parse_args()))
