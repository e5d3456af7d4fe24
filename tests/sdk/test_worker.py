"""The worker SDK against a real server: stages, outcomes, limits, shutdown, leases."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from conftest import Running, StartServer
from waiting import eventually

from asyncflow.client import Client, TaskSpec, TaskStatus
from asyncflow.clock import ManualClock, SystemClock
from asyncflow.config import Config
from asyncflow.core.governance import GovernanceSettings
from asyncflow.testing import EmbeddedServer
from asyncflow.worker import Done, Job, NonRetryable, RetryLater, RunNext, Worker

STAGES = ["a", "b", "c"]


async def wait_counts(client: Client, task_type: str, within: float = 60, **expected: int) -> None:
    want = {TaskStatus[name.upper()]: n for name, n in expected.items()}

    async def reached() -> bool:
        counts = await client.count(task_type)
        return all(counts[status] == n for status, n in want.items())

    await eventually(reached, within=within, what=f"{task_type} counts {expected}")


async def test_multi_stage_tasks_run_each_stage_exactly_once(server: Running) -> None:
    runs: Counter[tuple[str, str]] = Counter()
    worker = Worker(server.address, concurrency=32)

    @worker.handler("flow")
    async def flow(job: Job) -> RunNext | Done:
        runs[(job.task_id, job.stage)] += 1
        context = f"{job.context}|{job.stage}"
        following = STAGES.index(job.stage) + 1
        if following < len(STAGES):
            return RunNext(STAGES[following], context=context)
        return Done(context=context)

    async with Client(server.address) as client:
        await client.register_type("flow", schedule_limit=100)
        created = []
        for start in range(0, 1000, 250):
            batch = [TaskSpec("flow", stage="a", context=str(i)) for i in range(start, start + 250)]
            created += await client.create_many(batch)
        async with worker:
            await wait_counts(client, "flow", within=120, success=1000)
        sample = range(0, 1000, 37)
        finals = {i: await client.get(created[i].task_id) for i in sample}
    assert len(runs) == 3000
    assert set(runs.values()) == {1}
    for number, task in finals.items():
        assert (task.stage, task.context) == ("c", f"{number}|a|b|c")


async def test_handler_outcomes(server: Running, clock: ManualClock) -> None:
    seen: Counter[str] = Counter()
    worker = Worker(server.address, concurrency=4)

    @worker.handler("outcomes")
    async def outcomes(job: Job) -> Done | None:
        seen[job.context] += 1
        if job.context == "later" and job.attempt == 1:
            raise RetryLater("not yet", delay=0)
        if job.context == "hopeless":
            raise NonRetryable("bad input")
        if job.context == "crash":
            raise RuntimeError("boom")
        if job.context == "context":
            return Done(context="rewritten")
        return None

    async with Client(server.address) as client:
        await client.register_type("outcomes", max_retry_num=1, retry_interval=1)
        tasks = {c: await client.create("outcomes", context=c) for c in
                 ("plain", "later", "hopeless", "crash", "context")}  # fmt: skip
        async with worker:
            await wait_counts(client, "outcomes", success=3, failed=1, pending=1)
            crashed = await client.get(tasks["crash"].task_id)
            assert (crashed.retries, crashed.status) == (1, TaskStatus.PENDING)
            assert "RuntimeError('boom')" in crashed.schedule_log
            clock.advance(2)  # past the back-off: the crash runs again and exhausts its retries
            await wait_counts(client, "outcomes", success=3, failed=2)
        hopeless = await client.get(tasks["hopeless"].task_id)
        assert "bad input" in hopeless.schedule_log
        assert (await client.get(tasks["context"].task_id)).context == "rewritten"
        assert (await client.get(tasks["later"].task_id)).attempt == 0
    assert seen == {"plain": 1, "later": 2, "hopeless": 1, "crash": 2, "context": 1}


async def test_concurrency_limit_is_respected(server: Running) -> None:
    active = 0
    most = 0
    full = asyncio.Event()
    worker = Worker(server.address, concurrency=4)

    @worker.handler("busy")
    async def busy(job: Job) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        if active == 4:
            full.set()
        await full.wait()
        active -= 1

    async with Client(server.address) as client:
        await client.register_type("busy")
        await client.create_many([TaskSpec("busy") for _ in range(20)])
        async with worker:
            await wait_counts(client, "busy", success=20)
    assert most == 4


async def test_polling_mode(server: Running) -> None:
    worker = Worker(server.address, concurrency=8, stream=False, poll_interval=0.05)

    @worker.handler("polled")
    async def polled(job: Job) -> RunNext | None:
        return RunNext("second") if job.stage == "" else None

    async with Client(server.address) as client:
        await client.register_type("polled")
        await client.create_many([TaskSpec("polled") for _ in range(30)])
        async with worker:
            await wait_counts(client, "polled", success=30)
    assert worker.completed == 60


async def test_stop_releases_what_did_not_finish(server: Running) -> None:
    started = 0
    two_running = asyncio.Event()
    worker = Worker(server.address, concurrency=2)

    @worker.handler("stuck")
    async def stuck(job: Job) -> None:
        nonlocal started
        started += 1
        if started == 2:
            two_running.set()
        await asyncio.Event().wait()  # never finishes on its own

    async with Client(server.address) as client:
        await client.register_type("stuck")
        await client.create_many([TaskSpec("stuck") for _ in range(3)])
        async with worker:
            await two_running.wait()
            await worker.stop(grace=0.1)
        counts = await client.count("stuck")
        assert counts[TaskStatus.PROCESSING] == 0
        assert counts[TaskStatus.PENDING] == 3
        assert {t.retries async for t in client.list("stuck")} == {0}  # a release is no retry


async def test_long_stage_keeps_its_lease(start_server: StartServer, config: Config) -> None:
    """A stage longer than max_processing_time is not recovered while it heartbeats,
    nor is the prefetched task waiting behind it."""
    fast = GovernanceSettings(long_process_interval=0.2)
    server = await start_server(config, clock_=SystemClock(), governance=fast)
    finish = asyncio.Event()
    worker = Worker(server.address, concurrency=1, prefetch=1)

    @worker.handler("long")
    async def long(job: Job) -> None:
        await finish.wait()

    async with Client(server.address) as client:
        # Two seconds, not one: under a loaded CI machine a one-second lease leaves
        # the heartbeat too little slack, and the test would measure the machine.
        await client.register_type("long", max_processing_time=2)
        first, second = await client.create_many([TaskSpec("long"), TaskSpec("long")])
        async with worker:

            async def past_three_leases() -> bool:
                held = await client.get(second.task_id)
                return held.attempt == 1 and (await client.ping()) >= first.create_time + 6

            await eventually(past_three_leases, within=20, what="three lease lengths")
            finish.set()
            await wait_counts(client, "long", success=2)
        for task in (first, second):
            done = await client.get(task.task_id)
            assert done.retries == 0
            assert '"attempt":1' in done.schedule_log  # never recovered, never re-held


async def test_test_kit_runs_handlers_without_databases() -> None:
    async with EmbeddedServer() as server, Client(server.address) as client:
        await client.register_type("kit")
        worker = Worker(server.address, handlers={"kit": lambda job: _done(job)})
        async with worker:
            task = await client.create("kit", context="hello")
            await wait_counts(client, "kit", success=1)
        assert (await client.get(task.task_id)).context == "hello!"


async def _done(job: Job) -> Done:
    return Done(context=job.context + "!")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_unregistered_type_is_retried_until_registered(server: Running) -> None:
    worker = Worker(server.address, handlers={"late": _done})
    async with Client(server.address) as client, worker:
        await client.register_type("late")
        task = await client.create("late", context="x")
        await wait_counts(client, "late", within=30, success=1)
        assert (await client.get(task.task_id)).context == "x!"
