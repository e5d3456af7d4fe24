"""A report outlasts a store outage: re-sent until the store is back, applied once.

The server's MariaDB connection goes through a TCP proxy that the test cuts and
restores (the shared MariaDB keeps running). The outage lasts until the worker
has re-sent the report more times, and for longer (over 6 s), than the old
worker's budget (5 attempts, about 3 s), so a worker that gives up earlier than
the lease deadline fails this test.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest
from conftest import MYSQL, StartServer
from proxy import TcpProxy
from waiting import eventually

from asyncflow.client import Client, TaskStatus
from asyncflow.clock import SystemClock
from asyncflow.config import Config
from asyncflow.core.governance import GovernanceSettings
from asyncflow.worker import Done, Job, Worker

OLD_ATTEMPTS = 5
"""What the worker used to try before giving a report up."""


@pytest.mark.parametrize("backend", ["mysql"])
async def test_a_report_outlasts_a_store_outage(
    start_server: StartServer, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncflow.worker")
    runs: list[str] = []
    running, finish = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> Done:
        runs.append(job.task_id)
        running.set()
        await finish.wait()
        return Done(context="reported")

    async with TcpProxy(MYSQL["host"], MYSQL["port"]) as proxy:
        server = await start_server(
            config,
            clock_=SystemClock(),
            store=replace(config.store, mysql_port=proxy.port),
            # Stuck recovery on, fast: a report given up would mean a second run.
            governance=GovernanceSettings(long_process_interval=0.2),
        )
        async with Client(server.address) as client:
            await client.register_type("outage", max_processing_time=30)
            task = await client.create("outage")
            async with Worker(server.address, handlers={"outage": handler}):
                await running.wait()
                proxy.cut()
                finish.set()  # the stage ends while the store is unreachable

                def failed_attempts() -> int:
                    prefix = f"report for {task.task_id} not delivered"
                    return sum(r.getMessage().startswith(prefix) for r in caplog.records)

                async def outlasted_the_old_budget() -> bool:
                    return failed_attempts() > OLD_ATTEMPTS + 1

                await eventually(outlasted_the_old_budget, within=30, what="the report re-sent")
                assert proxy.refused > 0  # the store really was unreachable
                proxy.restore()

                async def succeeded() -> bool:
                    try:
                        return (await client.get(task.task_id)).status is TaskStatus.SUCCESS
                    except Exception:  # the server's pool may still be reconnecting
                        return False

                await eventually(succeeded, within=30, what="the task succeeded")
            done = await client.get(task.task_id)
    assert runs == [task.task_id]  # run once: the lease never expired, nothing re-ran it
    assert (done.status, done.context, done.retries) == (TaskStatus.SUCCESS, "reported", 0)
    assert not [r for r in caplog.records if r.getMessage().startswith("gave up")]
