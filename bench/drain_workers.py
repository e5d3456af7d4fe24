"""Drain throughput with separate `asyncflow worker` processes (issue 9, target 4).

    .venv/bin/python -m bench.drain_workers [--tasks 20000] [--workers 2]
        [--backend mysql|sqlite] [--concurrency 64] [--prefetch 64]

A real `asyncflow serve` (MariaDB + Redis by default, a scratch database); the
type is paused while the backlog is created and the worker processes connect,
then resumed: the clock runs from the resume until every task is SUCCESS
(each durably claimed and durably reported by a worker process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asyncflow.client import Client, TaskSpec, TaskStatus
from bench.common import clean_env, scratch_database, server_process


def profile(pids: dict[str, int], seconds: float, into: str) -> list[subprocess.Popen[bytes]]:
    """py-spy (pip install py-spy) samples each process into INTO/NAME.txt (collapsed stacks)."""
    spy = Path(sys.executable).with_name("py-spy")
    return [
        subprocess.Popen(
            [str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200", "-f", "raw",
             "-o", os.path.join(into, f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for name, pid in pids.items()
    ]


async def drain(address: str, server_pid: int, args: argparse.Namespace) -> float:
    async with Client(address) as client:
        await client.register_type("drain", schedule_limit=500)
        await client.pause_type("drain")
        for first in range(0, args.tasks, 1000):
            await client.create_many(
                [TaskSpec("drain") for _ in range(min(1000, args.tasks - first))]
            )
        binary = Path(sys.executable).with_name("asyncflow")
        env = clean_env() | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        workers = [
            subprocess.Popen(
                [str(binary), "worker", "bench.noop_handlers:handlers", "--address", address,
                 "--concurrency", str(args.concurrency), "--prefetch", str(args.prefetch),
                 "--log-level", "WARNING"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            for _ in range(args.workers)
        ]
        try:
            await asyncio.sleep(2.0)  # the workers start and subscribe (the type is paused)
            start = time.perf_counter()
            await client.resume_type("drain")
            spies = []
            if args.profile:
                pids = {"server": server_pid} | {f"worker{i}": w.pid for i, w in enumerate(workers)}
                spies = profile(pids, args.profile_seconds, args.profile)
            while (await client.count("drain")).get(TaskStatus.SUCCESS, 0) < args.tasks:
                await asyncio.sleep(0.05)
            rate = args.tasks / (time.perf_counter() - start)
            for spy in spies:
                spy.wait(60)
            return rate
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)


async def main(args: argparse.Namespace) -> None:
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "bench.db")
            with server_process(path, "", backend="sqlite") as (address, pid):
                rate = await drain(address, pid, args)
    else:
        with scratch_database() as database, server_process(
            database, f"bench:{database}:"
        ) as (address, pid):
            rate = await drain(address, pid, args)
    print(f"drain of {args.tasks:,} no-op tasks, {args.workers} `asyncflow worker` processes"
          f" (concurrency {args.concurrency}, prefetch {args.prefetch}), {args.backend}:"
          f" {rate:,.0f} tasks/s")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--profile", help="a directory: py-spy profiles of every process")
    parser.add_argument("--profile-seconds", type=float, default=5.0)
    parser.add_argument("--backend", choices=("mysql", "sqlite"), default="mysql")
    asyncio.run(main(parser.parse_args()))
