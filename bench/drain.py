"""Issue 9 item 4: drain of a no-op backlog by two `asyncflow worker` processes.

    python -m bench drain [--backend mysql|sqlite] [--quick]

A backlog of 20,000 tasks is created first (create_many); then two real
`asyncflow worker bench.noop_worker:handlers` processes (concurrency 64,
prefetch 64) drain it. The rate is counted from the first SUCCESS to the last,
read straight from the store's table (so the measurement does not load the
server it measures), and the run fails unless every task ended SUCCESS.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from asyncflow.client import Client, TaskSpec
from bench.common import CountedUser, TaskRows, clean_env, cpu_seconds, scratch, server_process
from bench.report import Figure

ROOT = Path(__file__).resolve().parents[1]
SUCCESS, LIVE = "status = 3", "status IN (1, 2)"  # PENDING, PROCESSING; constants, not input


@contextmanager
def workers(
    address: str, task_type: str, processes: int = 2, concurrency: int = 64, prefetch: int = 64
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`asyncflow worker` processes with no-op handlers for `task_type`, stopped after."""
    binary = Path(sys.executable).with_name("asyncflow")
    command = [str(binary), "worker", "bench.noop_worker:handlers", "--address", address,
               "--concurrency", str(concurrency), "--prefetch", str(prefetch),
               "--log-level", "WARNING"]  # fmt: skip
    env = clean_env() | {"BENCH_NOOP_TYPES": task_type, "PYTHONPATH": str(ROOT)}
    started = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    try:
        yield started
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(60)


async def backlog(address: str, task_type: str, count: int) -> None:
    async with Client(address) as client:
        await client.register_type(task_type, schedule_limit=500)
        for first in range(0, count, 1000):
            await client.create_many([TaskSpec(task_type) for _ in range(min(1000, count - first))])


@dataclass(frozen=True)
class Drained:
    tasks_per_second: float
    worker_cpu_ms: float
    """CPU of the worker processes per task, summed over them."""
    server_cpu_ms: float
    """CPU of the server processes per task, summed over them."""
    statements: float = 0.0
    """MariaDB statements per task, when the servers connect as a CountedUser."""


def drained(rows: TaskRows, count: int, pids: list[subprocess.Popen[bytes]],
            servers: list[int], user: CountedUser | None, within: float = 600.0,
            ) -> Drained:  # fmt: skip
    """Tasks/s from the first SUCCESS to the last, polling the store's table, and the
    CPU the workers and the servers spent per task over the same span."""
    deadline = time.monotonic() + within
    while not rows.any(SUCCESS):
        wait_or_fail(deadline, pids)
        time.sleep(0.005)
    first, done_first = time.perf_counter(), rows.count(SUCCESS)
    cpu = [sum(cpu_seconds(p.pid) for p in pids), sum(cpu_seconds(p) for p in servers)]
    sent = user.statements() if user else 0
    while rows.any(LIVE):
        wait_or_fail(deadline, pids)
        time.sleep(0.02)
    elapsed = time.perf_counter() - first
    cpu = [sum(cpu_seconds(p.pid) for p in pids) - cpu[0],
           sum(cpu_seconds(p) for p in servers) - cpu[1]]  # fmt: skip
    sent = user.statements() - sent if user else 0
    done = rows.count(SUCCESS)
    if done != count:
        raise RuntimeError(f"{rows.task_type}: {done} of {count} tasks ended SUCCESS")
    measured = count - done_first
    return Drained(measured / elapsed, cpu[0] * 1000 / measured, cpu[1] * 1000 / measured,
                   sent / measured)  # fmt: skip


def wait_or_fail(deadline: float, pids: list[subprocess.Popen[bytes]]) -> None:
    if time.monotonic() > deadline:
        raise RuntimeError("the backlog did not drain in time")
    if any(p.poll() is not None for p in pids):
        raise RuntimeError("a worker process exited during the drain")


def drain(backend: str, database: str, create_at: str, work_at: str, task_type: str,
          count: int, servers: list[int], user: CountedUser | None = None) -> Drained:  # fmt: skip
    """Create `count` tasks through `create_at`, drain them with two worker processes
    connected to `work_at` (an address or a list) of the server processes `servers`."""
    asyncio.run(backlog(create_at, task_type, count))
    rows = TaskRows(backend, database, task_type)
    try:
        with workers(work_at, task_type) as started:
            return drained(rows, count, started, servers, user)
    finally:
        rows.close()


def measure(backend: str, quick: bool) -> list[Figure]:
    count = 1000 if quick else 20_000
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    with scratch(backend) as database, ExitStack() as stack:
        user = stack.enter_context(CountedUser(database)) if backend == "mysql" else None
        settings = user.settings if user else {}
        address, pid = stack.enter_context(server_process(database, prefix, backend, **settings))
        done = drain(backend, database, address, address, "drain", count, [pid], user)
    rate = done.tasks_per_second
    return [
        Figure(4, f"drain of {count:,} no-op tasks, 2 worker processes (64 + 64)",
               rate, "tasks/s", ">= 5,000/s", rate >= 5000, backend),
        Figure(4, "drain: worker CPU per task (both processes)", done.worker_cpu_ms, "ms",
               backend=backend),
        Figure(4, "drain: server CPU per task", done.server_cpu_ms, "ms", backend=backend),
    ] + ([
        Figure(4, "drain: MariaDB statements per task (from the first SUCCESS)",
               done.statements, "", backend=backend),
    ] if user else [])  # fmt: skip
