"""The create path through the SDK: one-by-one create latency and bulk create_many rate.

    .venv/bin/python -m bench.create_path [--backend mysql|sqlite] [--one-by-one 2000]
        [--bulk 20000] [--batch 1000]

A real `asyncflow serve` process (MariaDB + Redis in a scratch database, or a
SQLite file); one `Client` in this process. One by one: `Client.create` awaited
in a loop, each call timed (issue 9 target 2: p50 <= 1.5 ms). Bulk:
`Client.create_many` in batches of `--batch` (target 3: >= 20,000 tasks/s on
MariaDB, >= 30,000 on SQLite). The store's count is checked afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from asyncflow.client import Client, TaskSpec
from bench.common import cpu_seconds, percentiles, scratch_database, server_process

CONTEXT = "x" * 200


async def one_by_one(client: Client, count: int) -> dict[str, float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await client.create("one", context=CONTEXT)
        samples.append((time.perf_counter() - start) * 1000)
    return percentiles(samples)


async def bulk(client: Client, count: int, batch: int) -> float:
    start = time.perf_counter()
    for first in range(0, count, batch):
        size = min(batch, count - first)
        await client.create_many([TaskSpec("bulk", context=CONTEXT) for _ in range(size)])
    return count / (time.perf_counter() - start)


async def measure(address: str, pid: int, args: argparse.Namespace) -> None:
    async with Client(address) as client:
        await client.register_type("one")
        await client.register_type("bulk")
        await one_by_one(client, 100)  # warm up: channel, pool connections
        cpu = cpu_seconds(pid)
        lat = await one_by_one(client, args.one_by_one)
        one_cpu = (cpu_seconds(pid) - cpu) * 1000 / args.one_by_one
        cpu = cpu_seconds(pid)
        rate = await bulk(client, args.bulk, args.batch)
        bulk_cpu = (cpu_seconds(pid) - cpu) * 1000_000 / args.bulk
        counted = sum((await client.count("bulk")).values())
    if counted != args.bulk:
        raise RuntimeError(f"created {args.bulk} tasks in bulk, the store has {counted}")
    print(f"{args.backend}: one-by-one create, {args.one_by_one} calls (ms): "
          + "  ".join(f"{k} {v:.2f}" for k, v in lat.items())
          + f"; server CPU {one_cpu:.3f} ms/call")  # fmt: skip
    print(f"{args.backend}: create_many, {args.bulk} tasks in batches of {args.batch}:"
          f" {rate:,.0f} tasks/s; server CPU {bulk_cpu:.0f} us/task")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("mysql", "sqlite"), default="mysql")
    parser.add_argument("--one-by-one", type=int, default=2000)
    parser.add_argument("--bulk", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="asyncflow-bench-db-") as tmp:
            database = str(Path(tmp) / "asyncflow.db")
            with server_process(database, "", "sqlite") as (address, pid):
                asyncio.run(measure(address, pid, args))
    else:
        with scratch_database() as db, server_process(db, f"bench:{db}:") as (address, pid):
            asyncio.run(measure(address, pid, args))


if __name__ == "__main__":
    main()
