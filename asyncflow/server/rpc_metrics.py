"""Times every RPC and records its status code.

It wraps the handlers of the methods the server has, once, when they are
registered (asyncflow.server.interception; never an unknown method name a
client made up, so the metric labels stay bounded), whatever the kind: unary
calls report their handling time; streams report when they end. The wrappers
are plain coroutines and generators (no context manager per call): this runs
on every call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from asyncflow.server.interception import Context, Coroutine, Generator, HandlerWrapper, rewrap

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


class RpcMetrics(HandlerWrapper):
    def __init__(self, observer: RpcObserver) -> None:
        self._observer = observer

    def wrap(self, handler: Handler, path: str, service: str, method: str) -> Handler:
        observe = self._observer.rpc
        clock = time.perf_counter

        def coroutine(behaviour: Coroutine, streaming: bool) -> Coroutine:
            async def call(request: Any, context: Context) -> Any:
                started = clock()
                try:
                    response = await behaviour(request, context)
                except BaseException as exc:
                    observe(service, method, code_name(context, exc), clock() - started, streaming)
                    raise
                observe(service, method, code_name(context, None), clock() - started, streaming)
                return response

            return call

        def generator(behaviour: Generator) -> Generator:
            async def generate(request: Any, context: Context) -> AsyncIterator[Any]:
                started, failure = clock(), None
                try:
                    async for response in behaviour(request, context):
                        yield response
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    observe(service, method, code_name(context, failure), clock() - started, True)

            return generate

        return rewrap(handler, coroutine, generator)
