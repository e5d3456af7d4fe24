"""Drain throughput with separate `asyncflow worker` processes (issue 9, target 4).

    .venv/bin/python -m bench.drain_workers [--tasks 20000] [--workers 2]
        [--backend mysql|sqlite] [--concurrency 64] [--prefetch 64] [--profile DIR]

A real `asyncflow serve` (MariaDB + Redis by default, a scratch database); the
type is paused while the backlog is created and the worker processes connect,
then resumed: the clock runs from the resume until every task is SUCCESS
(each durably claimed and durably reported by a worker process). --profile
samples the server and each worker with py-spy (`pip install py-spy`) into
DIR/<process>.txt (collapsed stacks) during the first --profile-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from asyncflow.client import Client, TaskSpec, TaskStatus
from bench.common import clean_env, scratch_database, server_process

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
Process = asyncio.subprocess.Process


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def spawn(*command: str, env: dict[str, str] | None = None) -> Process:
    quiet = asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(*command, env=env, stdout=quiet, stderr=quiet)


async def profile(pids: dict[str, int], seconds: float, into: str) -> list[Process]:
    return [
        await spawn(str(BIN / "py-spy"), "record", "-p", str(pid), "-d", str(int(seconds)),
                    "-r", "200", "-f", "raw", "-o", os.path.join(into, f"{name}.txt"))
        for name, pid in pids.items()
    ]  # fmt: skip


async def finished(client: Client, count: int) -> bool:
    return (await client.count("drain")).get(TaskStatus.SUCCESS, 0) >= count


async def drain(address: str, server_pid: int, args: argparse.Namespace) -> tuple[float, str]:
    async with Client(address) as client:
        await client.register_type("drain", schedule_limit=500)
        await client.pause_type("drain")
        for first in range(0, args.tasks, 1000):
            await client.create_many(
                [TaskSpec("drain") for _ in range(min(1000, args.tasks - first))]
            )
        env = clean_env() | {"PYTHONPATH": str(ROOT)}
        workers = [
            await spawn(str(BIN / "asyncflow"), "worker", "bench.noop_handlers:handlers",
                        "--address", address, "--concurrency", str(args.concurrency),
                        "--prefetch", str(args.prefetch), "--log-level", "WARNING", env=env)
            for _ in range(args.workers)
        ]  # fmt: skip
        try:
            await asyncio.sleep(2.0)  # the workers start and subscribe (the type is paused)
            pids = {"server": server_pid} | {f"worker{i}": w.pid for i, w in enumerate(workers)}
            cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
            start = time.perf_counter()
            await client.resume_type("drain")
            spies = []
            if args.profile:
                spies = await profile(pids, args.profile_seconds, args.profile)
            while not await finished(client, args.tasks):  # noqa: ASYNC110 (other processes)
                await asyncio.sleep(0.05)
            rate = args.tasks / (time.perf_counter() - start)
            per_task = "; ".join(
                f"{name} {(cpu_seconds(pid) - cpu[name]) / args.tasks * 1e6:.0f}"
                for name, pid in pids.items()
            )
            for spy in spies:
                await spy.wait()
            return rate, f"CPU per task (µs): {per_task}"
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                await worker.wait()


async def main(args: argparse.Namespace) -> None:
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "bench.db")
            with server_process(path, "", backend="sqlite") as (address, pid):
                rate, cpu = await drain(address, pid, args)
    else:
        with (
            scratch_database() as database,
            server_process(database, f"bench:{database}:") as (address, pid),
        ):
            rate, cpu = await drain(address, pid, args)
    print(f"drain of {args.tasks:,} no-op tasks, {args.workers} `asyncflow worker` processes"
          f" (concurrency {args.concurrency}, prefetch {args.prefetch}), {args.backend}:"
          f" {rate:,.0f} tasks/s; {cpu}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--backend", choices=("mysql", "sqlite"), default="mysql")
    parser.add_argument("--profile", help="a directory: py-spy profiles of every process")
    parser.add_argument("--profile-seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args()))
