"""A grpc.aio server interceptor that times every RPC and records its status code.

It wraps the handlers of the methods the server has (never an unknown method
name a client made up, so the metric labels stay bounded), whatever the kind:
unary calls report their handling time; streams report when they end.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # generic in the type stubs only
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class RpcObserver(Protocol):
    def rpc(self, service: str, method: str, code: str, seconds: float, streaming: bool) -> None:
        """One RPC ended with `code` (a grpc.StatusCode name) after `seconds`."""
        ...


def code_name(context: Context, failure: BaseException | None) -> str:
    """The status the call ended with: the one the handler set or aborted with;
    else CANCELLED for a cancelled call, UNKNOWN for any other exception (what
    grpc answers), OK when it returned."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code in CODE_NAMES:
        return CODE_NAMES[code]
    if isinstance(failure, asyncio.CancelledError):
        return "CANCELLED"
    return "OK" if failure is None else "UNKNOWN"


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, observer: RpcObserver) -> None:
        self._observer = observer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED
            return handler
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
            ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
            ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
            ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
        )
        for kind, build, streaming in kinds:
            behaviour = getattr(handler, kind)
            if behaviour is None:
                continue
            # A streaming handler yields its responses, or is a coroutine that
            # writes them with context.write() (grpc's own Health.Watch).
            timed: Callable[[Any, Context], Any]
            if inspect.isasyncgenfunction(behaviour):
                timed = self._streaming(behaviour, service, method)
            else:
                timed = self._unary(behaviour, service, method, streaming=streaming)
            wrapped: Handler = build(
                timed,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            return wrapped
        return handler

    def _ended(self, service: str, method: str, context: Context, failure: BaseException | None,
               started: float, *, streaming: bool) -> None:  # fmt: skip
        elapsed = time.perf_counter() - started
        self._observer.rpc(service, method, code_name(context, failure), elapsed, streaming)

    def _unary(
        self,
        behaviour: Callable[[Any, Context], Awaitable[Any]],
        service: str,
        method: str,
        *,
        streaming: bool = False,
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        async def timed(request: Any, context: Context) -> Any:
            started, failure = time.perf_counter(), None
            try:
                return await behaviour(request, context)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                self._ended(service, method, context, failure, started, streaming=streaming)

        return timed

    def _streaming(
        self, behaviour: Callable[[Any, Context], AsyncIterator[Any]], service: str, method: str
    ) -> Callable[[Any, Context], AsyncIterator[Any]]:
        async def timed(request: Any, context: Context) -> AsyncIterator[Any]:
            started, failure = time.perf_counter(), None
            try:
                async for response in behaviour(request, context):
                    yield response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                self._ended(service, method, context, failure, started, streaming=True)

        return timed
