"""Wrapping a grpc.aio method handler in an async context manager, whatever its kind.

Server interceptors (metrics, the auth guard) run code around every call: before
it (and may refuse it), and after it (seeing how it ended). A wrapper must keep
the behaviour's kind, which is how grpc tells a response stream written with
context.write (a coroutine, grpc's own Health.Watch) from a generated one (an
async generator).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # generic in the type stubs only
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
Around = Callable[[Any, Context, bool], AbstractAsyncContextManager[None]]
"""(request or request iterator, context, response streaming) -> the code around."""

KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
)


def wrap_handler(handler: Handler, around: Around) -> Handler:
    """The same handler, each call of which runs inside `around`."""
    for kind, build, streaming in KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is None:
            continue
        wrapped: Callable[[Any, Context], Any]
        if inspect.isasyncgenfunction(behaviour):
            wrapped = _generator(behaviour, around)
        else:
            wrapped = _coroutine(behaviour, around, streaming)
        result: Handler = build(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        return result
    return handler


def _coroutine(
    behaviour: Callable[[Any, Context], Awaitable[Any]], around: Around, streaming: bool
) -> Callable[[Any, Context], Awaitable[Any]]:
    async def call(request: Any, context: Context) -> Any:
        async with around(request, context, streaming):
            return await behaviour(request, context)

    return call


def _generator(
    behaviour: Callable[[Any, Context], AsyncIterator[Any]], around: Around
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def generate(request: Any, context: Context) -> AsyncIterator[Any]:
        async with around(request, context, True):
            async for response in behaviour(request, context):
                yield response

    return generate


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that wraps each method's handler once (by method path:
    a server's handlers do not change once it serves), not once per call."""

    def __init__(self) -> None:
        self._wrapped: dict[str, Handler] = {}

    def wraps(self, service: str) -> bool:
        """Whether the methods of `service` are wrapped (all, unless overridden)."""
        return True

    def wrap(self, handler: Handler, path: str, service: str, method: str) -> Handler:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        path = handler_call_details.method
        service, _, method = path.lstrip("/").rpartition("/")
        # None: an unknown method, which grpc answers UNIMPLEMENTED.
        if handler is None or not self.wraps(service):
            return handler
        if (wrapped := self._wrapped.get(path)) is None:
            wrapped = self._wrapped[path] = self.wrap(handler, path, service, method)
        return wrapped
