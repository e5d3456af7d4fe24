"""Holds bounded by bytes (issue 8 item 8): a client with gRPC's default 4 MiB
receive limit asks for 600 tasks of 8 KB contexts (about 5 MiB). Each reply and
each push fits, and no task is left PROCESSING that the client did not receive."""

from __future__ import annotations

from dataclasses import replace

from conftest import Running, StartServer
from rpc import counts, create, hold, register
from streams import RawWorker

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb

COUNT = 600
CONTEXT = "x" * 8000
DEFAULT_RECEIVE_LIMIT = 4 * 1024 * 1024


async def backlog(stub: object, count: int = COUNT, context: str = CONTEXT) -> None:
    await register(stub, schedule_limit=COUNT)  # type: ignore[arg-type]
    for first in range(0, count, 100):
        specs = [pb.CreateTaskRequest(task_type="lark", context=context)
                 for _ in range(min(100, count - first))]  # fmt: skip
        await stub.CreateTasks(pb.CreateTasksRequest(tasks=specs))  # type: ignore[attr-defined]


async def test_holds_lease_only_what_fits_in_the_reply(server: Running) -> None:
    stub = server.stub  # a default channel: it refuses a reply over 4 MiB
    await backlog(stub)
    received: set[str] = set()
    replies = 0
    while len(received) < COUNT:
        reply = await stub.HoldTasks(pb.HoldTasksRequest(task_type="lark", limit=COUNT))
        assert reply.tasks, f"nothing held with {COUNT - len(received)} tasks pending"
        assert reply.ByteSize() <= DEFAULT_RECEIVE_LIMIT
        received |= {t.task_id for t in reply.tasks}
        replies += 1
        # Whatever was leased reached this client: nothing stranded until its deadline.
        assert (await counts(stub))[pb.TASK_STATUS_PROCESSING] == len(received)
    assert len(received) == COUNT
    assert replies == 2  # about 500 fit in 4 MiB, then the rest


async def test_stream_pushes_fit_in_the_receive_limit(server: Running) -> None:
    await backlog(server.stub)
    raw = RawWorker(server.stub)  # the same default channel: a larger push ends the stream
    try:
        await raw.subscribe("lark", window=COUNT)
        await raw.until(tasks=COUNT, within=30)
        assert len({t.task_id for t in raw.tasks}) == COUNT
        assert (await counts(server.stub))[pb.TASK_STATUS_PROCESSING] == COUNT
    finally:
        raw.cancel()


async def test_a_task_larger_than_the_budget_goes_alone(
    start_server: StartServer, config: Config
) -> None:
    small = replace(config.limits, max_reply_bytes=4096)
    running = await start_server(config, limits=small)
    await register(running.stub, schedule_limit=10)
    for _ in range(3):
        await create(running.stub, context=CONTEXT)
    await create(running.stub, context="small")
    sizes = [len(await hold(running.stub, limit=10)) for _ in range(4)]
    assert sizes == [1, 1, 1, 1]
    assert (await counts(running.stub))[pb.TASK_STATUS_PROCESSING] == 4
