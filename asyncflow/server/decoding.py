"""Service registration that refuses undecodable requests with INVALID_ARGUMENT.

grpc.aio decodes each request message with the method handler's
request_deserializer (the generated add_*_to_server functions pass the message
class's FromString). When it raises — invalid UTF-8 in a string field, a
truncated varint, random bytes — grpc handles the DecodeError itself: a unary
call ends UNKNOWN with the parser's text and grpc logs an ERROR with a
traceback; on a stream the error comes out of the request iterator inside the
handler (INTERNAL, logged again). Any client could flood the log that way.

So services are registered here instead, with method handlers built from the
service descriptor: the deserializer returns an Undecodable marker instead of
raising, and the behavior answers it with MalformedRequest (INVALID_ARGUMENT,
reason MALFORMED_REQUEST) before the servicer runs. On a streaming call the
request iterator raises MalformedRequest where the bad message would have been,
so the servicer ends the call as for any protocol error. Each refusal is one
rate-limited WARNING, without a traceback.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError

from asyncflow.errors import MalformedRequest
from asyncflow.logs import ClientErrorLog
from asyncflow.server.errors import to_status
from asyncflow.server.interception import HandlerWrapper, wrap_handlers

Context = grpc.aio.ServicerContext[Any, Any]
Behavior = Callable[..., Any]
Handlers = dict[str, "grpc.RpcMethodHandler[Any, Any]"]  # the stubs are generic, grpc is not

HANDLER_SHAPES = {
    # (client streaming, server streaming)
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
PARSER_PREFIX = re.compile(r"^Error parsing message( with type '[^']*')?: ")


@dataclass(frozen=True)
class Undecodable:
    """What the deserializer returns for bytes that are not a valid message."""

    detail: str
    """The parser's reason, e.g. "String field had bad UTF-8"."""


def guarded_handlers(
    service: ServiceDescriptor, servicer: object, client_log: ClientErrorLog
) -> Handlers:
    """The handlers add_*_to_server would register for `servicer`, guarded."""
    return {
        method.name: MethodGuard(method, client_log).handler(getattr(servicer, method.name))
        for method in service.methods
    }


def register(
    server: grpc.aio.Server,
    service_name: str,
    handlers: Handlers,
    wrappers: Sequence[HandlerWrapper] = (),
) -> None:
    """By path, as the generated add_*_to_server does, each handler wrapped once by
    `wrappers` (metrics, the guard: outermost first).

    Not also as registered methods (add_registered_method_handlers, which the
    generated code calls too): grpc.aio then keeps one pending request task per
    registered method and, for every call it accepts, asyncio.wait()s on all of
    them (~30 here) and starts a new one: +0.015 ms of CPU on a GetTask's ~0.16.
    The generic handler finds the method by one dict lookup."""
    handlers = wrap_handlers(service_name, handlers, wrappers)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, handlers),))


class MethodGuard:
    """Decodes one method's requests and refuses those that cannot be decoded."""

    def __init__(self, method: MethodDescriptor, client_log: ClientErrorLog) -> None:
        self._method = method
        self._path = f"/{method.containing_service.full_name}/{method.name}"
        self._client_log = client_log

    def handler(self, behavior: Behavior) -> grpc.RpcMethodHandler[Any, Any]:
        method = self._method
        shape = HANDLER_SHAPES[(method.client_streaming, method.server_streaming)]
        guarded = self._streaming(behavior) if method.client_streaming else self._unary(behavior)
        return shape(
            guarded,
            request_deserializer=self._decoder(),
            response_serializer=message_factory.GetMessageClass(
                method.output_type
            ).SerializeToString,
        )

    def _decoder(self) -> Callable[[bytes], Any]:
        from_bytes = message_factory.GetMessageClass(self._method.input_type).FromString

        def decode(data: bytes) -> Any:
            try:
                return from_bytes(data)
            except DecodeError as exc:
                return Undecodable(PARSER_PREFIX.sub("", str(exc)))

        return decode

    def _refusal(self, request: Undecodable, context: Context) -> MalformedRequest:
        error = MalformedRequest(
            f"the request could not be decoded as {self._method.input_type.full_name}:"
            f" {request.detail}"
        )
        self._client_log.warning(error.reason, f"{self._path} from {context.peer()}: {error}")
        return error

    async def _abort(self, error: MalformedRequest, context: Context) -> NoReturn:
        await context.abort_with_status(to_status(error))
        raise AssertionError("unreachable: abort raises")

    # A wrapper must keep its behavior's kind, which is how grpc tells a response
    # stream written with context.write (a coroutine) from a generated one. The
    # kinds our services use are the ones wrapped; another fails at start.

    def _unary(self, behavior: Behavior) -> Behavior:
        """One request (the response may be a stream written with context.write)."""
        self._expect(behavior, inspect.iscoroutinefunction, "a coroutine function")

        async def call(request: Any, context: Context) -> Any:
            if isinstance(request, Undecodable):
                await self._abort(self._refusal(request, context), context)
            return await behavior(request, context)

        return call

    def _streaming(self, behavior: Behavior) -> Behavior:
        """A request stream, answered by an async generator. MalformedRequest comes out
        of the request iterator; a servicer that does not turn it into a status
        itself (asyncflow's does) gets it turned here."""
        self._expect(behavior, inspect.isasyncgenfunction, "an async generator function")

        async def generate(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            decoded = self._decoded(requests, context)
            try:
                async with contextlib.aclosing(behavior(decoded, context)) as responses:
                    async for response in responses:
                        yield response
            except MalformedRequest as error:
                await self._abort(error, context)

        return generate

    def _expect(self, behavior: Behavior, kind: Callable[[Any], bool], name: str) -> None:
        if not kind(behavior):
            raise TypeError(f"{self._path}: cannot guard {behavior!r}, not {name}")

    async def _decoded(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Undecodable):
                raise self._refusal(request, context)
            yield request
