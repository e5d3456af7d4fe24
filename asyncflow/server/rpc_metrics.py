"""A grpc.aio server interceptor that times every RPC and records its status code.

It wraps the handlers of the methods the server has (never an unknown method
name a client made up, so the metric labels stay bounded), whatever the kind:
unary calls report their handling time; streams report when they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from asyncflow.server.interception import Context, wrap_handler

if TYPE_CHECKING:
    from asyncflow.server.interception import Handler
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
        self._wrapped: dict[str, Handler] = {}
        """By method path: a server's handlers do not change once it serves."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED
            return handler
        path = handler_call_details.method
        if (wrapped := self._wrapped.get(path)) is None:
            wrapped = self._wrapped[path] = self._wrap(handler, path)
        return wrapped

    def _wrap(self, handler: Handler, path: str) -> Handler:
        service, _, method = path.lstrip("/").rpartition("/")

        @contextlib.asynccontextmanager
        async def timed(request: Any, context: Context, streaming: bool) -> AsyncIterator[None]:
            started, failure = time.perf_counter(), None
            try:
                yield
            except BaseException as exc:
                failure = exc
                raise
            finally:
                elapsed = time.perf_counter() - started
                code = code_name(context, failure)
                self._observer.rpc(service, method, code, elapsed, streaming)

        return wrap_handler(handler, timed)
