"""What the channels retry: calls safe to repeat, on UNAVAILABLE, by gRPC itself;
never a create without an idempotency key; and a call waits for a replica to come up.

Counting attempts needs a server that fails on purpose: `Flaky` is a TaskService
that answers UNAVAILABLE to the first attempts of each call, as a replica that is
restarting does, then answers with a fixed reply. (Everything else in tests/sdk
runs against the real server.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import grpc
import pytest
from conftest import StartServer
from net import free_port
from producers import KINDS, Producer, close, open_client
from waiting import eventually

from asyncflow._sdk.channel import MAX_ATTEMPTS
from asyncflow.client import ChannelSettings, TaskSpec, TaskStatus, Unavailable
from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

TASK = pb.Task(task_id="k_t_1", task_type="t", status=pb.TASK_STATUS_PENDING)
TYPE = pb.TaskTypeConfig(task_type="t", retry_strategy=pb.RETRY_STRATEGY_UNIFORM)


class Flaky(pb_grpc.TaskServiceServicer):
    def __init__(self) -> None:
        self.failures = 0
        """UNAVAILABLE answers before each call succeeds."""
        self.attempts: Counter[str] = Counter()

    async def _answer(self, method: str, context: grpc.aio.ServicerContext, reply: Any) -> Any:
        self.attempts[method] += 1
        if self.attempts[method] <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the replica is restarting")
        return reply

    async def RegisterTaskType(self, request: Any, context: Any) -> Any:
        return await self._answer("RegisterTaskType", context,
                                  pb.RegisterTaskTypeResponse(task_type=TYPE))  # fmt: skip

    async def ListTaskTypes(self, request: Any, context: Any) -> Any:
        return await self._answer("ListTaskTypes", context,
                                  pb.ListTaskTypesResponse(task_types=[TYPE]))  # fmt: skip

    async def CreateTask(self, request: Any, context: Any) -> Any:
        return await self._answer("CreateTask", context, pb.CreateTaskResponse(task=TASK))

    async def CreateTasks(self, request: Any, context: Any) -> Any:
        results = [pb.CreateTaskResponse(task=TASK) for _ in request.tasks]
        return await self._answer("CreateTasks", context, pb.CreateTasksResponse(results=results))

    async def GetTask(self, request: Any, context: Any) -> Any:
        return await self._answer("GetTask", context, pb.GetTaskResponse(task=TASK))

    async def ListTasks(self, request: Any, context: Any) -> Any:
        return await self._answer("ListTasks", context, pb.ListTasksResponse(tasks=[TASK]))

    async def CountTasks(self, request: Any, context: Any) -> Any:
        count = pb.StatusCount(status=pb.TASK_STATUS_PENDING, count=3)
        return await self._answer("CountTasks", context, pb.CountTasksResponse(counts=[count]))

    async def Ping(self, request: Any, context: Any) -> Any:
        return await self._answer("Ping", context, pb.PingResponse(server_time=7))


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, str]]:
    server = grpc.aio.server()
    servicer = Flaky()
    pb_grpc.add_TaskServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture(params=KINDS)
async def client(
    request: pytest.FixtureRequest, flaky: tuple[Flaky, str]
) -> AsyncIterator[Producer]:
    fast = ChannelSettings(retry_initial_backoff=0.01, retry_max_backoff=0.05)
    opened = open_client(request.param, flaky[1], timeout=10, settings=fast)
    yield Producer(opened)
    await close(opened)


Calls = list[tuple[str, Callable[[Producer], Awaitable[object]], object]]
REPEATABLE: Calls = [
    ("RegisterTaskType", lambda c: c.register_type("t"), "t"),
    ("ListTaskTypes", lambda c: c.list_types(), ["t"]),
    ("CreateTask", lambda c: c.create("t", idempotency_key="k"), "k_t_1"),
    ("CreateTasks", lambda c: c.create_many([TaskSpec("t", idempotency_key="k")] * 2),
     ["k_t_1", "k_t_1"]),
    ("GetTask", lambda c: c.get("k_t_1"), "k_t_1"),
    ("ListTasks", lambda c: c.list("t"), ["k_t_1"]),
    ("CountTasks", lambda c: c.count("t"), {TaskStatus.PENDING: 3}),
    ("Ping", lambda c: c.ping(), 7),
]  # fmt: skip
ONCE: Calls = [
    ("CreateTask", lambda c: c.create("t"), None),
    ("CreateTasks", lambda c: c.create_many([TaskSpec("t", idempotency_key="k"), TaskSpec("t")]),
     None),
]  # fmt: skip


def summary(result: Any) -> object:
    """What a result says, in the terms of REPEATABLE's third column."""
    if isinstance(result, list):
        return [summary(item) for item in result]
    return getattr(result, "task_id", getattr(result, "task_type", result))


async def test_calls_safe_to_repeat_are_retried(client: Producer, flaky: tuple[Flaky, str]) -> None:
    servicer, _ = flaky
    servicer.failures = 1
    for method, invoke, expected in REPEATABLE:
        assert summary(await invoke(client)) == expected, method
        assert servicer.attempts[method] == 2, method
        servicer.attempts.clear()


async def test_a_create_without_a_key_is_never_repeated(
    client: Producer, flaky: tuple[Flaky, str]
) -> None:
    servicer, _ = flaky
    servicer.failures = 1
    for method, invoke, _ in ONCE:
        with pytest.raises(Unavailable, match="restarting"):
            await invoke(client)
        assert servicer.attempts[method] == 1, method
        servicer.attempts.clear()


async def test_retries_stop_after_the_last_attempt(
    client: Producer, flaky: tuple[Flaky, str]
) -> None:
    servicer, _ = flaky
    servicer.failures = 1000
    with pytest.raises(Unavailable, match="restarting"):
        await client.create("t", idempotency_key="k")
    assert servicer.attempts["CreateTask"] == MAX_ATTEMPTS


@pytest.mark.parametrize("kind", KINDS)
async def test_calls_wait_for_a_replica_to_come_up(
    kind: str, start_server: StartServer, config: Config
) -> None:
    """The port refuses connections at first (as a replica restarting): the calls (a
    create without a key too: waiting is safe, it has not been sent) wait within
    their deadline, and go once the server is up."""
    refused = 0

    def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal refused
        refused += 1
        writer.transport.abort()

    refuser = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = refuser.sockets[0].getsockname()[1]
    client = open_client(kind, f"127.0.0.1:{port}", timeout=30)
    producer = Producer(client)
    try:
        pinging = asyncio.ensure_future(producer.ping())
        creating = asyncio.ensure_future(producer.create("lark"))

        async def tried() -> bool:
            return refused > 0

        await eventually(tried, what="a connection attempt")
        refuser.close()
        await refuser.wait_closed()
        assert not pinging.done()
        assert not creating.done()
        server = await start_server(config, server=replace(config.server, port=port))
        await server.stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"))
        assert await pinging > 0
        assert (await creating).task_type == "lark"
    finally:
        await close(client)


@pytest.mark.parametrize("kind", KINDS)
async def test_without_wait_for_ready_a_call_fails_at_once(kind: str) -> None:
    settings = ChannelSettings(wait_for_ready=False)
    client = open_client(kind, f"127.0.0.1:{free_port()}", timeout=30, settings=settings)
    try:
        with pytest.raises(Unavailable):
            await asyncio.wait_for(Producer(client).ping(), 20)
    finally:
        await close(client)
