"""A schedule firing every second on three `asyncflow serve` replicas sharing MariaDB
and Redis, for 20 seconds, its leader killed with SIGKILL half-way: each tick's task
is created once, none duplicated and none lost (catch-up ALL)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL, serve_env
from replicas import Replica
from rpc import register
from waiting import eventually

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

RUN_SECONDS = 20
KILL_AFTER = 8


@pytest.fixture
def replicas(config: Config, tmp_path: Path) -> Iterator[list[Replica]]:
    env = serve_env(
        config,
        ASYNCFLOW_SERVER_PORT="0",
        ASYNCFLOW_SERVER_SHUTDOWN_DELAY_SECONDS="0",  # no load balancer to wait for
        ASYNCFLOW_GOVERNANCE_CRON_INTERVAL="0.2",
        ASYNCFLOW_GOVERNANCE_LOCK_TTL_SECONDS="1.5",
    )
    started = [Replica(env, tmp_path / f"replica-{i}.log") for i in range(3)]
    yield started
    for replica in started:
        replica.stop()


async def every_task(stub: pb_grpc.TaskServiceStub) -> list[pb.Task]:
    tasks: list[pb.Task] = []
    token = ""
    while True:
        reply = await stub.ListTasks(pb.ListTasksRequest(task_type="beat", page_size=1000,
                                                         page_token=token))  # fmt: skip
        tasks += reply.tasks
        token = reply.next_page_token
        if not token:
            return tasks


@pytest.mark.parametrize("backend", ["mysql"])
async def test_every_tick_once_across_replicas_and_a_killed_leader(
    replicas: list[Replica], redis_prefix: str
) -> None:
    addresses = [await replica.address() for replica in replicas]
    channels = [grpc.aio.insecure_channel(address) for address in addresses]
    stubs = [pb_grpc.TaskServiceStub(channel) for channel in channels]
    locks = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    by_pid = {replica.pid: (replica, stub) for replica, stub in zip(replicas, stubs, strict=True)}
    try:
        await register(stubs[0], "beat")
        created = (await stubs[1].CreateSchedule(pb.CreateScheduleRequest(
            name="beat", cron="* * * * * *", task=pb.TaskTemplate(task_type="beat"),
            catch_up=pb.CATCH_UP_POLICY_ALL, catch_up_limit=100,
        ))).schedule  # fmt: skip
        first = created.next_fire_time
        started = time.monotonic()

        async def leader() -> int | None:
            owner = await locks.get(f"{redis_prefix}lock:cron")
            return int(owner.split(":")[1]) if owner else None

        async def fired_for(seconds: int, stub: pb_grpc.TaskServiceStub) -> bool:
            (schedule,) = (await stub.ListSchedules(pb.ListSchedulesRequest())).schedules
            return schedule.last_fire_time >= first + seconds

        await eventually(lambda: fired_for(KILL_AFTER, stubs[2]), within=KILL_AFTER + 30,
                         what="the first ticks fired")  # fmt: skip
        victim_pid = await leader()
        assert victim_pid in by_pid
        victim, _ = by_pid.pop(victim_pid)
        victim.process.kill()  # SIGKILL, mid-run: no release, no goodbye
        victim.process.wait()
        survivor = next(iter(by_pid.values()))[1]

        await eventually(lambda: fired_for(RUN_SECONDS, survivor), within=RUN_SECONDS + 30,
                         what=f"{RUN_SECONDS} s of ticks")  # fmt: skip
        await survivor.PauseSchedule(pb.PauseScheduleRequest(name="beat"))
        new_leader = await leader()
        assert new_leader in by_pid
        print(f"ran {time.monotonic() - started:.1f}s; leader {victim_pid} killed,"
              f" {new_leader} took over")  # fmt: skip

        tasks = await every_task(survivor)
        ticks = Counter(int(t.task_id.split("_")[0].removeprefix("cron-beat-")) for t in tasks)
        assert max(ticks.values()) == 1  # no tick created twice
        last = max(ticks)
        assert last >= first + RUN_SECONDS
        assert sorted(ticks) == list(range(first, last + 1))  # no tick lost
        (schedule,) = (await survivor.ListSchedules(pb.ListSchedulesRequest())).schedules
        assert schedule.last_fire_time == last
    finally:
        await locks.aclose()
        for channel in channels:
            await channel.close()
    for replica, _ in by_pid.values():
        assert replica.stop() == 0
