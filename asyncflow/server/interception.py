"""Wrapping grpc.aio method handlers once, when they are registered, whatever their kind.

Metrics and the auth guard run code around every call: before it (and may
refuse it), and after it (seeing how it ended). They wrap each method's handler
once, as the server registers it (asyncflow.server.decoding.register), rather
than as grpc.aio server interceptors: an interceptor is asked for the handler on
every call, through a chain of coroutines (grpc's, one per interceptor, then
the interceptor's own), and the metrics interceptor alone added 0.02-0.03 ms
to a GetTask's ~0.2 ms of server CPU (docs/benchmarks.md). Only
the methods a server has are wrapped; an unknown method name, answered
UNIMPLEMENTED by grpc, reaches no wrapper, as it reached no interceptor.

A wrapper must keep the behaviour's kind, which is how grpc tells a response
stream written with context.write (a coroutine, grpc's own Health.Watch) from a
generated one (an async generator).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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


Coroutine = Callable[[Any, Context], Awaitable[Any]]
Generator = Callable[[Any, Context], AsyncIterator[Any]]


def rewrap(
    handler: Handler,
    coroutine: Callable[[Coroutine, bool], Coroutine],
    generator: Callable[[Generator], Generator],
) -> Handler:
    """The same handler with its behaviour replaced by `coroutine(behaviour,
    response streaming)` or `generator(behaviour)`, after its kind."""
    for kind, build, streaming in KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is None:
            continue
        wrapped: Callable[[Any, Context], Any]
        if inspect.isasyncgenfunction(behaviour):
            wrapped = generator(behaviour)
        else:
            wrapped = coroutine(behaviour, streaming)
        result: Handler = build(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        return result
    return handler


def wrap_handler(handler: Handler, around: Around) -> Handler:
    """The same handler, each call of which runs inside `around`."""
    return rewrap(
        handler,
        lambda behaviour, streaming: _coroutine(behaviour, around, streaming),
        lambda behaviour: _generator(behaviour, around),
    )


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


class HandlerWrapper:
    """Code run around every call of the methods it wraps (all, unless `wraps` says)."""

    def wraps(self, service: str) -> bool:
        """Whether the methods of `service` are wrapped."""
        return True

    def wrap(self, handler: Handler, path: str, service: str, method: str) -> Handler:
        raise NotImplementedError


def wrap_handlers(
    service: str, handlers: dict[str, Handler], wrappers: Sequence[HandlerWrapper]
) -> dict[str, Handler]:
    """`handlers` (by method name) of `service`, each wrapped by every wrapper that
    wraps the service; the first wrapper is the outermost (it runs first, and
    sees calls the later ones refuse)."""
    wrapped = dict(handlers)
    for wrapper in reversed(wrappers):
        if wrapper.wraps(service):
            for method, handler in wrapped.items():
                wrapped[method] = wrapper.wrap(handler, f"/{service}/{method}", service, method)
    return wrapped
