"""Domain errors to gRPC statuses, in one place for every RPC.

Each status carries a google.rpc.ErrorInfo (domain "asyncflow", reason from the
error class, metadata["field"] naming the request field) so that clients in any
language can tell cases apart without parsing messages.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from asyncflow.errors import AsyncflowError

log = logging.getLogger(__name__)

ERROR_DOMAIN = "asyncflow"

Request = TypeVar("Request")
Response = TypeVar("Response")
Servicer = TypeVar("Servicer")
Handler = Callable[[Servicer, Request, grpc.aio.ServicerContext[Any, Any]], Awaitable[Response]]


def to_status(error: AsyncflowError) -> grpc.Status:
    code: grpc.StatusCode = getattr(grpc.StatusCode, error.code)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    if error.field:
        info.metadata["field"] = error.field
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    if error.retry_delay is not None:  # google.rpc.RetryInfo: when to call again
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(round(error.retry_delay * 1e9))
        details.append(any_pb2.Any())
        details[-1].Pack(retry)
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    result: grpc.Status = rpc_status.to_status(status)
    return result


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: Exception, rpc: str) -> None:
    """End the call with the error's status; anything unexpected is INTERNAL, logged."""
    if isinstance(error, AsyncflowError):
        if error.code in ("INTERNAL", "UNAVAILABLE"):
            log.warning("%s failed: %s", rpc, error)
        await context.abort_with_status(to_status(error))
    log.error("%s failed unexpectedly", rpc, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error (logged on the server)")


async def cancelled_inside(context: grpc.aio.ServicerContext[Any, Any], rpc: str) -> None:
    """A CancelledError the client did not cause (a library cancelling its own
    work, e.g. a timeout that leaked its cancel) would leave the client waiting
    with no status at all: answer UNAVAILABLE, which clients retry. A client's
    own cancellation propagates as it should."""
    if context.cancelled():
        raise asyncio.CancelledError
    log.warning("%s was cancelled inside the server; answering UNAVAILABLE", rpc)
    await context.abort(grpc.StatusCode.UNAVAILABLE, "the call was interrupted; retry it")


def grpc_errors(
    handler: Handler[Servicer, Request, Response],
) -> Handler[Servicer, Request, Response]:
    """Turn AsyncflowError into its status; anything unexpected into INTERNAL (logged)."""

    @functools.wraps(handler)
    async def wrapper(
        self: Servicer, request: Request, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Response:
        try:
            return await handler(self, request, context)
        except asyncio.CancelledError:
            await cancelled_inside(context, handler.__name__)
        except Exception as error:
            await abort(context, error, handler.__name__)
        raise AssertionError("unreachable: abort raises")

    return wrapper


StreamHandler = Callable[
    [Servicer, Request, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Response]
]


def grpc_stream_errors(
    handler: StreamHandler[Servicer, Request, Response],
) -> StreamHandler[Servicer, Request, Response]:
    """grpc_errors for response-streaming handlers."""

    @functools.wraps(handler)
    async def wrapper(
        self: Servicer, request: Request, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Response]:
        try:
            async for response in handler(self, request, context):
                yield response
        except Exception as error:
            await abort(context, error, handler.__name__)

    return wrapper
