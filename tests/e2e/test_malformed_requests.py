"""Request bytes that are not a valid message: INVALID_ARGUMENT, quietly, changing nothing.

The bodies go on the wire as they are (no serializer), on every unary method,
on the WorkTasks stream, and on the health and reflection services. Each is
answered INVALID_ARGUMENT with reason MALFORMED_REQUEST, the store is the same
afterwards, and the log holds one rate-limited WARNING at most: no ERROR, no
traceback.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import grpc
import pytest
from conftest import Running, StartServer
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from hostile import SERVICE, World, assert_quiet_log, error_info, seed_world
from rpc import get, register
from streams import subscribe

from asyncflow.clock import ManualClock
from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MALFORMED = "MALFORMED_REQUEST"
TASK_SERVICE = pb.DESCRIPTOR.services_by_name["TaskService"]
UNARY_METHODS = [m for m in TASK_SERVICE.methods if not m.client_streaming]


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def invalid_utf8(message: Descriptor) -> bytes | None:
    """A body whose first reachable string field holds C0 AF (not UTF-8), or None."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            inner: bytes | None = b"\xc0\xaf"
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            inner = invalid_utf8(field.message_type)
        else:
            continue
        if inner is not None:
            return varint(field.number << 3 | 2) + varint(len(inner)) + inner
    return None


COMMON_BODIES = {
    "truncated-varint": bytes.fromhex("10ff"),  # field 2 varint, continuation bit, then nothing
    "truncated-length": bytes.fromhex("0a05616263"),  # field 1 announces 5 bytes, 3 follow
    "bad-wire-type": bytes.fromhex("0f"),  # wire type 7 does not exist
    "random": random.Random(0).randbytes(64),
}


def bodies(message: Descriptor) -> dict[str, bytes]:
    found = dict(COMMON_BODIES)
    utf8 = invalid_utf8(message)
    if utf8 is not None:
        found["invalid-utf8"] = utf8
    return found


UNARY_CASES = [
    pytest.param(method.name, body, id=f"{method.name}-{name}")
    for method in UNARY_METHODS
    for name, body in bodies(method.input_type).items()
]


@pytest.fixture
async def world(
    server: Running, config: Config, mysql_database: str, caplog: pytest.LogCaptureFixture
) -> World:
    return await seed_world(server, config, mysql_database, caplog)


class RawStream:
    """A streaming call whose requests go on the wire as the bytes given."""

    def __init__(self, channel: grpc.aio.Channel, path: str) -> None:
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.call = channel.stream_stream(path)(self._requests())

    async def _requests(self) -> AsyncIterator[bytes]:
        while (body := await self._outbox.get()) is not None:
            yield body

    async def send(self, body: bytes) -> None:
        await self._outbox.put(body)

    async def read(self) -> pb.WorkTasksResponse:
        reply = await self.call.read()
        assert isinstance(reply, bytes), reply
        return pb.WorkTasksResponse.FromString(reply)

    async def refusal(self) -> tuple[grpc.aio.AioRpcError, list[bytes]]:
        """Read to the end, which must be an error: (the error, what came before)."""
        before: list[bytes] = []
        while True:
            try:
                reply = await self.call.read()
            except grpc.aio.AioRpcError as error:
                return error, before
            assert isinstance(reply, bytes), f"the call ended with {reply}, not an error"
            before.append(reply)

    async def close(self) -> None:
        """End the request iterator and the call, so that nothing is left pending."""
        await self._outbox.put(None)
        self.call.cancel()


@pytest.fixture
async def open_stream(world: World) -> AsyncIterator[Callable[[str], RawStream]]:
    """Open raw streams on the server under test; all closed at the end."""
    opened: list[RawStream] = []

    def open_(path: str) -> RawStream:
        opened.append(RawStream(world.running.channel, path))
        return opened[-1]

    yield open_
    for stream in opened:
        await stream.close()


OpenStream = Callable[[str], RawStream]


def assert_malformed(exc: grpc.aio.AioRpcError, message_type: str) -> None:
    assert exc.code() == INVALID, exc.details()
    info = error_info(exc)
    assert (info.domain, info.reason) == ("asyncflow", MALFORMED)
    assert f"could not be decoded as {message_type}" in (exc.details() or "")


@pytest.mark.parametrize(("method", "body"), UNARY_CASES)
async def test_undecodable_unary_request(world: World, method: str, body: bytes) -> None:
    input_type = TASK_SERVICE.methods_by_name[method].input_type
    with pytest.raises(DecodeError):  # the body really is malformed
        message_factory.GetMessageClass(input_type).FromString(body)
    await world.refused(
        lambda _: world.raw_unary(method, body),
        INVALID,
        "",
        MALFORMED,
        names=f"could not be decoded as {input_type.full_name}",
    )


async def test_the_issue_example_names_the_message(world: World) -> None:
    """A raw GetTask body 0a 02 c0 af: task_id holds bytes that are not UTF-8."""
    exc = await world.refused(
        lambda _: world.raw_unary("GetTask", bytes.fromhex("0a02c0af")),
        INVALID,
        "",
        MALFORMED,
        names="asyncflow.v1.GetTaskRequest",
    )
    assert exc.details() == (
        "the request could not be decoded as asyncflow.v1.GetTaskRequest:"
        " String field had bad UTF-8"
    )


async def test_raw_valid_body_is_served(world: World) -> None:
    """The raw path itself works: a well-formed body gets a normal answer."""
    body = pb.GetTaskRequest(task_id=world.pending.task_id).SerializeToString()
    reply = pb.GetTaskResponse.FromString(await world.raw_unary("GetTask", body))
    assert reply.task == await get(world.stub, world.pending.task_id)


WORK_TASKS = SERVICE + "WorkTasks"
STREAM_BODIES = bodies(pb.WorkTasksRequest.DESCRIPTOR)


@pytest.mark.parametrize("body", STREAM_BODIES.values(), ids=STREAM_BODIES.keys())
@pytest.mark.parametrize("subscribed", [False, True], ids=["first", "after-subscribe"])
async def test_undecodable_stream_message(
    world: World, body: bytes, subscribed: bool, open_stream: OpenStream
) -> None:
    await register(world.stub, "idle")  # no tasks: nothing is pushed or released
    before = await world.snapshot()
    stream = open_stream(WORK_TASKS)
    if subscribed:
        await stream.send(subscribe("idle", window=3).SerializeToString())
        assert (await stream.read()).HasField("subscribed")
    await stream.send(body)
    exc, replies = await stream.refusal()
    assert replies == []
    assert_malformed(exc, "asyncflow.v1.WorkTasksRequest")
    assert await world.snapshot() == before
    assert_quiet_log(world.caplog)


async def test_reports_before_an_undecodable_message_are_applied_and_answered(
    world: World, open_stream: OpenStream
) -> None:
    stream = open_stream(WORK_TASKS)
    await stream.send(subscribe("lark", window=1).SerializeToString())
    assert (await stream.read()).HasField("subscribed")
    (pushed,) = (await stream.read()).tasks.tasks
    assert pushed.task_id == world.pending.task_id
    report = pb.SetTaskRequest(
        task_id=pushed.task_id, lease_token=pushed.lease.token, success=pb.SetTaskRequest.Success()
    )
    request = pb.WorkTasksRequest(reports=pb.WorkTasksRequest.Reports(reports=[report]))
    await stream.send(request.SerializeToString())
    await stream.send(COMMON_BODIES["truncated-varint"])  # right behind the report
    exc, replies = await stream.refusal()
    assert_malformed(exc, "asyncflow.v1.WorkTasksRequest")
    answers = [pb.WorkTasksResponse.FromString(r) for r in replies]
    (result,) = [r for a in answers for r in a.report_results.results]
    assert result.task.status == pb.TASK_STATUS_SUCCESS
    assert (await get(world.stub, pushed.task_id)).status == pb.TASK_STATUS_SUCCESS
    assert_quiet_log(world.caplog)


# -- the other services of the server --------------------------------------------


@pytest.mark.parametrize(
    "path", ["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"], ids=["check", "watch"]
)
async def test_undecodable_health_request(world: World, path: str) -> None:
    body = invalid_utf8(health_pb2.HealthCheckRequest.DESCRIPTOR)
    assert body is not None
    channel = world.running.channel
    call = (
        channel.unary_unary(path)(body)
        if path.endswith("Check")
        else channel.unary_stream(path)(body).read()
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert_malformed(raised.value, "grpc.health.v1.HealthCheckRequest")
    assert_quiet_log(world.caplog)


async def test_health_list_is_unimplemented_quietly(world: World) -> None:
    call = world.running.channel.unary_unary("/grpc.health.v1.Health/List")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"")
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert_quiet_log(world.caplog)


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_undecodable_reflection_request(
    world: World, version: str, open_stream: OpenStream
) -> None:
    path = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    stream = open_stream(path)
    await stream.send(COMMON_BODIES["truncated-length"])
    exc, replies = await stream.refusal()
    assert replies == []
    assert_malformed(exc, "grpc.reflection.v1alpha.ServerReflectionRequest")
    assert_quiet_log(world.caplog)


# -- the log ----------------------------------------------------------------------


def client_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "reason", None) == MALFORMED]


async def test_undecodable_requests_are_logged_rate_limited(
    start_server: StartServer,
    config: Config,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client sending garbage in a loop gets a few WARNING lines, then a count."""
    caplog.set_level(logging.WARNING)
    running = await start_server(config)
    call = running.channel.unary_unary(SERVICE + "GetTask")
    for _ in range(40):
        with pytest.raises(grpc.aio.AioRpcError):
            await call(bytes.fromhex("0a02c0af"))
    logged = client_warnings(caplog)
    assert len(logged) == 5
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in logged)
    assert "asyncflow.v1.TaskService/GetTask" in logged[0].getMessage()

    clock.advance(60)  # the next interval: one line, with the count of the left-out ones
    with pytest.raises(grpc.aio.AioRpcError):
        await call(bytes.fromhex("10ff"))
    last = client_warnings(caplog)[-1]
    assert len(client_warnings(caplog)) == 6
    assert last.suppressed == 35  # type: ignore[attr-defined]
    assert "35 more MALFORMED_REQUEST lines were suppressed" in last.getMessage()
    assert_quiet_log(caplog)


async def test_request_over_the_size_limit_is_refused_quietly(
    start_server: StartServer, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(config, server=replace(config.server, max_message_bytes=1024))
    body = pb.GetTaskRequest(task_id="k" * 2048).SerializeToString()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.channel.unary_unary(SERVICE + "GetTask")(body)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_quiet_log(caplog)
