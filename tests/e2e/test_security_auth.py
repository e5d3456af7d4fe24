"""Tokens and roles on a real server: every RPC x every role, bad tokens, workers
limited to task types, reflection and health, reloading the tokens file, audit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from conftest import Running, StartServer
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as rpb
from rpc import SUCCESS, error_reason, report
from secure import ROLES, Tokens, channel, stub
from streams import RawWorker

from asyncflow.config import Config
from asyncflow.server.auth.roles import ALLOWED
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

# Auth does not touch the store: one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
SERVICE = pb.DESCRIPTOR.services_by_name["TaskService"]


class RoleStub(pb_grpc.TaskServiceStub):
    def __init__(self, ch: grpc.aio.Channel) -> None:
        super().__init__(ch)
        self.channel = ch


@pytest.fixture
async def as_role(secured: Running, tokens: Tokens) -> AsyncIterator[dict[str, RoleStub]]:
    """A stub per role (and `none`: no token), over local credentials."""
    channels = {name: channel(secured.server.port, token=tokens.tokens.get(name))
                for name in [*ROLES, "none"]}  # fmt: skip
    yield {name: RoleStub(ch) for name, ch in channels.items()}
    for ch in channels.values():
        await ch.close()


def in_one_batch(ch: grpc.aio.Channel, path: str) -> grpc.aio.UnaryUnaryMultiCallable:
    """A streaming method called the unary way: the request and the end of the
    client's stream leave in one batch with the call. Written to a stream call
    instead, a message can race the server's refusal, and grpc.aio then reports
    INTERNAL ('Failed "execute_batch"') in place of the server's status
    (grpc/grpc#36066); the status is what these tests are about."""
    return ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString())


async def call(role: RoleStub, method: str) -> grpc.StatusCode:
    """Call `method` with an empty request; the status it ends with."""
    described = SERVICE.methods_by_name[method]
    request = message_factory.GetMessageClass(described.input_type)()
    try:
        if described.client_streaming:  # WorkTasks: an allowed caller gets past the guard
            path = f"/{SERVICE.full_name}/{method}"
            await in_one_batch(role.channel, path)(request, timeout=10)
        else:
            await getattr(role, method)(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
async def test_every_rpc_for_every_role(as_role: dict[str, RoleStub], method: str) -> None:
    """The role table decides, for each role; no token at all is UNAUTHENTICATED."""
    for role in ROLES:
        code = await call(as_role[role], method)
        if role in ALLOWED[method]:
            assert code not in (grpc.StatusCode.PERMISSION_DENIED,
                                grpc.StatusCode.UNAUTHENTICATED), (role, code)  # fmt: skip
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (role, code)
    assert await call(as_role["none"], method) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer "),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer a b"),),
        (("authorization", "Bearer aft_unknown"),),
        (("authorization", "Bearer x"), ("authorization", "Bearer y")),
    ],
    ids=["missing", "empty", "basic", "spaces", "unknown", "twice"],
)
async def test_missing_malformed_and_unknown_tokens(secured: Running, metadata: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await secured.stub.Ping(pb.PingRequest(), metadata=metadata)
    assert error_reason(refused.value) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", "")


async def test_a_token_in_any_case_of_bearer(secured: Running, tokens: Tokens) -> None:
    metadata = (("authorization", f"bearer {tokens.tokens['reader']}"),)
    assert (await secured.stub.Ping(pb.PingRequest(), metadata=metadata)).message == "pong"


async def test_a_worker_limited_to_a_type(secured: Running, tokens: Tokens,
                                          as_role: dict[str, RoleStub]) -> None:  # fmt: skip
    """Cannot hold, report, extend or subscribe to another type; nothing changes."""
    admin = as_role["admin"]
    for task_type in ("a", "b"):
        await admin.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type=task_type))
        await admin.CreateTask(pb.CreateTaskRequest(task_type=task_type))
    limited = channel(secured.server.port, token=tokens.add("a-only", ["worker"], ["a"]))
    secured.server.reload()
    worker = stub(limited)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await worker.HoldTasks(pb.HoldTasksRequest(task_type="b"))
        assert error_reason(refused.value) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "TASK_TYPE_NOT_ALLOWED",
            "task_type",
        )
        (held_a,) = (await worker.HoldTasks(pb.HoldTasksRequest(task_type="a"))).tasks
        (held_b,) = (await admin.HoldTasks(pb.HoldTasksRequest(task_type="b"))).tasks
        for attempt in (
            report(worker, held_b, SUCCESS),
            worker.ExtendLease(pb.ExtendLeaseRequest(task_id=held_b.task_id,
                                                     lease_token=held_b.lease.token)),
        ):  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await attempt
            assert error_reason(refused.value) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "TASK_TYPE_NOT_ALLOWED",
                "task_id",
            )
        still = (await admin.GetTask(pb.GetTaskRequest(task_id=held_b.task_id))).task
        assert still.status == pb.TASK_STATUS_PROCESSING
        assert (await report(worker, held_a, SUCCESS)).status == pb.TASK_STATUS_SUCCESS

        # The stream: each subscribed type at open, each report's task.
        refused_stream = RawWorker(worker)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await refused_stream.subscribe("a", "b", window=1)
        assert error_reason(ended.value) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "TASK_TYPE_NOT_ALLOWED",
            "subscribe.task_types",
        )
        refused_stream.cancel()
        stream = RawWorker(worker)
        await stream.subscribe("a", window=1)
        await stream.report_success(held_b)
        await stream.until(answers=1)
        (result,) = stream.answers[0].report_results.results
        assert (result.error.code, result.error.reason) == (
            "PERMISSION_DENIED",
            "TASK_TYPE_NOT_ALLOWED",
        )
        still = (await admin.GetTask(pb.GetTaskRequest(task_id=held_b.task_id))).task
        assert still.status == pb.TASK_STATUS_PROCESSING
        await stream.close()
    finally:
        await limited.close()


async def test_health_stays_open(secured: Running) -> None:
    health = health_pb2_grpc.HealthStub(secured.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE.full_name))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def list_services(ch: grpc.aio.Channel, metadata: Any = ()) -> set[str]:
    ask = in_one_batch(ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    reply = await ask(rpb.ServerReflectionRequest(list_services=""), metadata=metadata)
    answer = rpb.ServerReflectionResponse.FromString(reply)
    return {s.name for s in answer.list_services_response.service}


@pytest.mark.parametrize("reflection", ["open", "authenticated", "off"])
async def test_reflection_follows_its_key(start_server: StartServer, config: Config,
                                          tokens: Tokens, reflection: str) -> None:  # fmt: skip
    server = await start_server(replace(config, auth=tokens.auth(reflection=reflection)))
    anonymous: set[str] | grpc.StatusCode
    try:
        anonymous = await list_services(server.channel)
    except grpc.aio.AioRpcError as error:
        anonymous = error.code()
    with_token = channel(server.server.port, token=tokens.tokens["reader"])
    try:
        known: set[str] | grpc.StatusCode = await list_services(with_token)
    except grpc.aio.AioRpcError as error:
        known = error.code()
    finally:
        await with_token.close()
    expected = {
        "open": (True, True),
        "authenticated": (grpc.StatusCode.UNAUTHENTICATED, True),
        "off": (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNIMPLEMENTED),
    }[reflection]
    got = tuple(SERVICE.full_name in s if isinstance(s, set) else s for s in (anonymous, known))
    assert got == expected


async def test_the_tokens_file_is_reloaded(secured: Running, tokens: Tokens) -> None:
    """A token added to the file works after reload (SIGHUP); one removed stops."""
    late = tokens.add("late", ["reader"])
    reader = tokens.tokens["reader"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await secured.stub.Ping(pb.PingRequest(), metadata=(("authorization", f"Bearer {late}"),))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    tokens.entries = [e for e in tokens.entries if 'name = "reader"' not in e]
    tokens.save()
    secured.server.reload()
    await secured.stub.Ping(pb.PingRequest(), metadata=(("authorization", f"Bearer {late}"),))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await secured.stub.Ping(pb.PingRequest(), metadata=(("authorization", f"Bearer {reader}"),))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # A broken file is not loaded: the entries in force stay.
    tokens.path.write_text("[[token]]\nname = 1\n")
    secured.server.reload()
    await secured.stub.Ping(pb.PingRequest(), metadata=(("authorization", f"Bearer {late}"),))


async def test_refusals_and_admin_actions_are_logged(
    as_role: dict[str, RoleStub], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.aio.AioRpcError):
        await as_role["reader"].PauseTaskType(pb.PauseTaskTypeRequest(task_type="lark"))
    with pytest.raises(grpc.aio.AioRpcError):
        await as_role["none"].GetTask(pb.GetTaskRequest(task_id="x"))
    await as_role["admin"].RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"))
    refusals = [r.getMessage() for r in caplog.records if r.name == "asyncflow.server.clients"]
    assert any("PauseTaskType" in m and "reader" in m and "may not call" in m for m in refusals)
    assert any("GetTask" in m and "no credentials" in m for m in refusals)
    (action,) = [r for r in caplog.records if r.name == "asyncflow.audit"]
    assert action.getMessage() == "RegisterTaskType by admin (token): OK task_type=lark"
