"""Server reflection answers under grpc.reflection.v1 (what newer tools ask first) and v1alpha."""

from __future__ import annotations

import grpc
import pytest
from conftest import Running
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as rpb

TASK_SERVICE = "asyncflow.v1.TaskService"
V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"

# Reflection does not touch the store: one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def ask(server: Running, service: str, *requests: rpb.ServerReflectionRequest
              ) -> list[rpb.ServerReflectionResponse]:  # fmt: skip
    """One reflection stream on `service`. v1 and v1alpha messages are the same
    on the wire, so a v1 client is the v1alpha messages on the v1 method path."""
    call = server.channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=rpb.ServerReflectionRequest.SerializeToString,
        response_deserializer=rpb.ServerReflectionResponse.FromString,
    )
    return [response async for response in call(iter(requests))]


def files(response: rpb.ServerReflectionResponse) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    found = {}
    for raw in response.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(raw)
        found[file.name] = file
    return found


@pytest.mark.parametrize("service", [V1, V1ALPHA])
async def test_both_versions_list_every_service(server: Running, service: str) -> None:
    (reply,) = await ask(server, service, rpb.ServerReflectionRequest(list_services=""))
    names = {s.name for s in reply.list_services_response.service}
    assert names == {TASK_SERVICE, "grpc.health.v1.Health", V1, V1ALPHA}


async def test_v1_describes_the_task_service(server: Running) -> None:
    request = rpb.ServerReflectionRequest(file_containing_symbol=TASK_SERVICE)
    (reply,) = await ask(server, V1, request)
    file = files(reply)["asyncflow/v1/task_service.proto"]
    (service,) = file.service
    assert service.name == "TaskService"
    assert "WorkTasks" in {m.name for m in service.method}
    assert "ItemError" in {m.name for m in file.message_type}


async def test_v1_describes_itself_consistently(server: Running) -> None:
    (reply,) = await ask(server, V1, rpb.ServerReflectionRequest(file_containing_symbol=V1))
    (file,) = files(reply).values()
    assert file.name == "grpc/reflection/v1/reflection.proto"
    assert file.package == "grpc.reflection.v1"
    # Every type reference resolves inside the file: a client can build it.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    method = pool.FindServiceByName(V1).FindMethodByName("ServerReflectionInfo")
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    assert method.output_type.full_name == "grpc.reflection.v1.ServerReflectionResponse"


async def test_v1_unknown_symbol_is_not_found(server: Running) -> None:
    (reply,) = await ask(server, V1, rpb.ServerReflectionRequest(file_containing_symbol="no.Such"))
    assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
