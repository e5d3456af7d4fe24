"""The one error tree of asyncflow, shared by the server, the store and the SDK.

The store turns driver errors into these; the servicer turns these into gRPC
statuses (with a google.rpc.ErrorInfo whose reason is `reason`); the SDK turns
statuses back into these. Each class fixes its gRPC code by name so the mapping
lives in one table (asyncflow.server.errors).
"""

from __future__ import annotations


class AsyncflowError(Exception):
    """Base of every error asyncflow raises on purpose."""

    code = "INTERNAL"
    reason = "INTERNAL"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(AsyncflowError):
    """A request field is malformed or out of range; `field` names it."""

    code = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"


class MalformedRequest(InvalidArgument):
    """The request bytes are not a valid encoding of the method's request message
    (invalid UTF-8 in a string field, a truncated varint, another message...)."""

    reason = "MALFORMED_REQUEST"


class NotFound(AsyncflowError):
    code = "NOT_FOUND"
    reason = "NOT_FOUND"


class TaskTypeNotFound(NotFound):
    reason = "TASK_TYPE_NOT_FOUND"


class TaskNotFound(NotFound):
    reason = "TASK_NOT_FOUND"


class FailedPrecondition(AsyncflowError):
    code = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class LeaseLost(FailedPrecondition):
    """The caller's lease is no longer the task's current lease."""

    reason = "LEASE_LOST"


class TaskNotProcessing(FailedPrecondition):
    """The task is not held by anyone (pending, or terminal)."""

    reason = "TASK_NOT_PROCESSING"


class ResourceExhausted(AsyncflowError):
    code = "RESOURCE_EXHAUSTED"
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(AsyncflowError):
    """The store cannot be reached; the call may be retried."""

    code = "UNAVAILABLE"
    reason = "STORE_UNAVAILABLE"


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""
