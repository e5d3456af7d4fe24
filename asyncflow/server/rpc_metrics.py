"""A grpc.aio server interceptor that times every RPC and records its status code.

It wraps the handlers of the methods the server has (never an unknown method
name a client made up, so the metric labels stay bounded), whatever the kind:
unary calls report their handling time; streams report when they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from asyncflow.server.interception import Context, WrappingInterceptor, wrap_handler

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


class RpcMetricsInterceptor(WrappingInterceptor):
    def __init__(self, observer: RpcObserver) -> None:
        super().__init__()
        self._observer = observer

    def wrap(self, handler: Handler, path: str, service: str, method: str) -> Handler:
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
