"""Server reflection under both names: grpc.reflection.v1 and v1alpha.

grpcio-reflection implements only v1alpha (grpc/grpc#38576), but grpcurl,
grpc-java, Postman and other newer tools ask for v1 first, and some ask only
for v1. The two protocols are the same messages in another package, so the
v1 service is the same servicer registered a second time under the v1 name,
and v1's descriptor (v1alpha's, renamed) goes into the pool so that clients
can list and describe it like any other service.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

from asyncflow.logs import ClientErrorLog
from asyncflow.server.decoding import guarded_handlers, register
from asyncflow.server.interception import HandlerWrapper

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1ALPHA_SERVICE: str = reflection.SERVICE_NAME
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable_reflection(
    server: grpc.aio.Server,
    service_names: Iterable[str],
    client_log: ClientErrorLog,
    wrappers: Sequence[HandlerWrapper] = (),
) -> None:
    """Serve reflection (both versions) for `service_names` and for itself."""
    pool = descriptor_pool.Default()
    try:  # by symbol: a generated v1 module, once grpcio ships one, may be loaded
        pool.FindServiceByName(V1_SERVICE)
    except KeyError:  # first server of this process
        pool.Add(_v1_file())
    servicer = reflection.aio.ReflectionServicer(
        [*service_names, V1_SERVICE, V1ALPHA_SERVICE], pool=pool
    )
    service = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
    handlers = guarded_handlers(service, servicer, client_log)
    for name in (V1ALPHA_SERVICE, V1_SERVICE):
        register(server, name, handlers, wrappers)


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, as published by gRPC: v1alpha's
    messages and service, renamed (the file has no imports and no nesting)."""
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old, new = f".{file.package}.", ".grpc.reflection.v1."
    file.name = _V1_FILE
    file.package = "grpc.reflection.v1"
    file.options.Clear()
    file.options.java_package = "io.grpc.reflection.v1"
    file.options.java_outer_classname = "ServerReflectionProto"
    file.options.java_multiple_files = True
    file.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # setting it, even to "", marks it present
                field.type_name = field.type_name.replace(old, new)
    for method in file.service[0].method:
        method.input_type = method.input_type.replace(old, new)
        method.output_type = method.output_type.replace(old, new)
    return file
