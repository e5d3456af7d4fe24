"""gRPC statuses back into asyncflow's typed errors (the server's mapping, reversed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from asyncflow import errors
from asyncflow.v1 import task_service_pb2 as pb

T = TypeVar("T")


def _subclasses(cls: type[errors.AsyncflowError]) -> list[type[errors.AsyncflowError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _subclasses(direct))]


_CLASSES = _subclasses(errors.AsyncflowError)
"""Every error class, found by walking the tree: a new one can never be left out."""
BY_REASON = {cls.reason: cls for cls in _CLASSES}
BY_CODE = {
    cls.code: cls
    for cls in _CLASSES
    if cls.code not in {getattr(base, "code", None) for base in cls.__bases__}
}
"""The most general class of each code (for a status without a known reason)."""
BY_CODE["DEADLINE_EXCEEDED"] = errors.Unavailable  # the client's own deadline: worth a retry


def _error(
    code: str, reason: str, field: str, message: str, retry_delay: float | None = None
) -> errors.AsyncflowError:
    cls = BY_REASON.get(reason) or BY_CODE.get(code, errors.AsyncflowError)
    error = cls(message, field=field)
    error.code = code  # keep what the server said, even for the generic classes
    if retry_delay is not None:
        error.retry_delay = retry_delay
    return error


def from_rpc_error(error: grpc.RpcError) -> errors.AsyncflowError:
    """A failed call, from a grpc.aio or a blocking channel (both are grpc.Call)."""
    failed = cast(grpc.Call, error)
    code = failed.code().name
    reason, field, retry_delay = "", "", None
    status = rpc_status.from_call(failed)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                reason, field = info.reason, info.metadata.get("field", "")
            elif detail.Unpack(retry):
                retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
    return _error(code, reason, field, failed.details() or code, retry_delay)


def from_pb(error: pb.ItemError) -> errors.AsyncflowError:
    """A refused item of a stream batch."""
    return _error(error.code, error.reason, error.field, error.message)


async def call(rpc: Callable[[], Awaitable[T]]) -> T:
    """Run one RPC; a failed status becomes the matching asyncflow error."""
    try:
        return await rpc()
    except grpc.aio.AioRpcError as error:
        raise from_rpc_error(error) from None
