"""Workers as real processes: killed with SIGKILL mid-task, and stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import Running, StartServer
from waiting import eventually

from asyncflow.client import Client, TaskSpec, TaskStatus
from asyncflow.clock import SystemClock
from asyncflow.config import Config
from asyncflow.core.governance import GovernanceSettings
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.worker import Job, Worker

WORKERS = Path(__file__).with_name("workers.py")
SDK_ALONE = Path(__file__).with_name("sdk_alone.py")


class WorkerProcess:
    """`asyncflow worker tests/sdk/workers.py:worker`; stdout lines are collected.
    With sdk_alone, the server's dependencies cannot be imported in the process."""

    def __init__(
        self, address: str, sdk_alone: bool = False, args: tuple[str, ...] = (), **env: str
    ) -> None:
        environ = {**os.environ, "ASYNCFLOW_ADDRESS": address, **env}
        binary = Path(sys.executable).with_name("asyncflow")
        command = [sys.executable, str(SDK_ALONE)] if sdk_alone else [str(binary)]
        self.process = subprocess.Popen(
            [*command, "worker", f"{WORKERS}:worker", "--log-level", "WARNING", *args],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def ids(self, event: str) -> list[str]:
        return [line.split()[1] for line in self.lines if line.startswith(f"{event} ")]

    async def until(self, event: str, count: int, within: float = 20) -> list[str]:
        async def seen() -> bool:
            return len(self.ids(event)) >= count

        await eventually(seen, within=within, what=f"{count} '{event}' lines")
        return self.ids(event)


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.close()


async def counts(client: Client) -> dict[TaskStatus, int]:
    return await client.count("slow")


async def test_killed_worker_loses_no_task(
    start_server: StartServer, config: Config, processes: list[WorkerProcess]
) -> None:
    server = await start_server(
        config,
        clock_=SystemClock(),
        governance=GovernanceSettings(long_process_interval=0.2),
    )
    async with Client(server.address) as client:
        await client.register_type("slow", max_processing_time=2, retry_interval=1)
        created = await client.create_many([TaskSpec("slow") for _ in range(3)])
        doomed = WorkerProcess(server.address, WORKER_CONCURRENCY="1", WORKER_PREFETCH="2")
        processes.append(doomed)
        (started,) = await doomed.until("started", 1)

        async def holding_three() -> bool:
            return (await counts(client))[TaskStatus.PROCESSING] == 3

        await eventually(holding_three, within=10, what="one running and two prefetched")
        store = server.server.core.store
        row = await store.task_get("slow", 1, started)
        assert row is not None
        stale_token = row.lease_token

        doomed.process.kill()  # SIGKILL: no goodbye, no release by the worker
        doomed.process.wait()

        async def unstarted_back() -> bool:
            now = await counts(client)
            return now[TaskStatus.PENDING] == 2 and now[TaskStatus.PROCESSING] == 1

        await eventually(unstarted_back, within=5, what="the un-started tasks back at once")
        running = await client.get(started)
        assert (running.status, running.attempt) == (TaskStatus.PROCESSING, 1)  # lease still on

        runs: Counter[str] = Counter()

        async def finish(job: Job) -> None:
            runs[job.task_id] += 1

        async with Worker(server.address, handlers={"slow": finish}):

            async def all_done() -> bool:
                return (await counts(client))[TaskStatus.SUCCESS] == 3

            await eventually(all_done, within=30, what="every task completed by the survivor")
        assert set(runs) == {t.task_id for t in created}
        assert set(runs.values()) == {1}
        recovered = await client.get(started)
        assert recovered.retries == 1  # the expired lease counted as a retry

        late = pb.SetTaskRequest(task_id=started, lease_token=stale_token)
        late.success.SetInParent()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await server.stub.SetTask(late)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert await counts(client) == {
            TaskStatus.PENDING: 0,
            TaskStatus.PROCESSING: 0,
            TaskStatus.SUCCESS: 3,
            TaskStatus.FAILED: 0,
            TaskStatus.CANCELLED: 0,
        }


async def test_sigterm_finishes_in_flight_tasks(
    start_server: StartServer, config: Config, processes: list[WorkerProcess]
) -> None:
    server = await start_server(config, clock_=SystemClock())
    async with Client(server.address) as client:
        await client.register_type("slow")
        await client.create_many([TaskSpec("slow") for _ in range(6)])
        worker = WorkerProcess(server.address, WORKER_CONCURRENCY="3", WORKER_SECONDS="1.0")
        processes.append(worker)
        await worker.until("started", 3)
        worker.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.process.wait, 30)
        assert code == 0, worker.lines
        started, done = worker.ids("started"), worker.ids("done")
        assert sorted(done) == sorted(started)  # every stage it began, it finished
        assert await counts(client) == {
            TaskStatus.PENDING: 6 - len(done),
            TaskStatus.PROCESSING: 0,
            TaskStatus.SUCCESS: len(done),
            TaskStatus.FAILED: 0,
            TaskStatus.CANCELLED: 0,
        }


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_asyncflow_worker_runs_with_the_sdk_alone(
    server: Running, processes: list[WorkerProcess]
) -> None:
    """`pip install asyncflow` without the server extra: `asyncflow worker` works."""
    async with Client(server.address) as client:
        await client.register_type("slow")
        created = await client.create_many([TaskSpec("slow") for _ in range(3)])
        worker = WorkerProcess(server.address, sdk_alone=True, WORKER_SECONDS="0")
        processes.append(worker)
        assert sorted(await worker.until("done", 3)) == sorted(t.task_id for t in created)

        async def all_succeeded() -> bool:
            return (await counts(client))[TaskStatus.SUCCESS] == 3

        await eventually(all_succeeded, what="three tasks reported")
        worker.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.process.wait, 30) == 0, worker.lines


async def test_asyncflow_worker_takes_a_list_of_replicas_and_channel_options(
    start_server: StartServer, config: Config, processes: list[WorkerProcess]
) -> None:
    """`--address host1:port,host2:port` as Worker takes it: one stream per replica."""
    replicas = [await start_server(config, clock_=SystemClock()) for _ in range(2)]
    address = ",".join(replica.address for replica in replicas)
    async with Client(address) as client:
        await client.register_type("slow")
        created = await client.create_many([TaskSpec("slow") for _ in range(6)])
        options = ("--address", address, "--keepalive", "20", "--keepalive-timeout", "5")
        worker = WorkerProcess("localhost:1", args=options, WORKER_CONCURRENCY="4",
                               WORKER_SECONDS="0")  # fmt: skip
        processes.append(worker)
        assert sorted(await worker.until("done", 6)) == sorted(t.task_id for t in created)
        assert [len(replica.server.dispatcher.sessions) for replica in replicas] == [1, 1]
        worker.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.process.wait, 30) == 0, worker.lines
        assert any(f"on {address}" in line for line in worker.lines), worker.lines


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (("--keepalive", "1"), "keepalive_time must be at least 10 seconds"),
        (("--address", "10.0.0.1:1,[::1]:2"), "no address family in common"),
    ],
)
async def test_asyncflow_worker_refuses_bad_channel_options(
    options: tuple[str, ...], error: str, processes: list[WorkerProcess]
) -> None:
    worker = WorkerProcess("localhost:1", args=options)
    processes.append(worker)
    assert await asyncio.to_thread(worker.process.wait, 30) == 2
    worker.close()
    assert any(error in line for line in worker.lines), worker.lines
