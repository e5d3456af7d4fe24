"""The baseline: a bare grpc.aio servicer that answers TaskService calls with canned replies.

    python -m bench.echo --reply CreateTask=create.bin --reply GetTask=get.bin

It decodes each request and encodes a fixed reply of the same size as the real
server's (captured from it), so the difference between this and `asyncflow
serve` under the same load is what asyncflow adds on top of gRPC itself.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from asyncflow.v1 import task_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["TaskService"]


def handler(method: str, reply: bytes) -> grpc.RpcMethodHandler[Message, Message]:
    descriptor = SERVICE.methods_by_name[method]
    request_type: type[Message] = getattr(pb, descriptor.input_type.name)
    response_type: type[Message] = getattr(pb, descriptor.output_type.name)
    canned = response_type.FromString(reply)

    async def answer(request: Message, context: Any) -> Message:
        return canned

    return grpc.unary_unary_rpc_method_handler(
        answer,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )


async def serve(replies: dict[str, bytes], port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handlers = {name: handler(name, reply) for name, reply in replies.items()}
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)]
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"echo listening on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", action="append", default=[], help="METHOD=FILE")
    args = parser.parse_args()
    replies = {}
    for item in args.reply:
        method, _, path = item.partition("=")
        replies[method] = Path(path).read_bytes()
    asyncio.run(serve(replies, args.port))


if __name__ == "__main__":
    main()
