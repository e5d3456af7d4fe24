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
    retry_delay: float | None = None
    """Seconds to wait before calling again, when the server says (google.rpc.RetryInfo)."""

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


class ScheduleNotFound(NotFound):
    reason = "SCHEDULE_NOT_FOUND"


class AlreadyExists(AsyncflowError):
    code = "ALREADY_EXISTS"
    reason = "ALREADY_EXISTS"


class ScheduleAlreadyExists(AlreadyExists):
    reason = "SCHEDULE_ALREADY_EXISTS"


class FailedPrecondition(AsyncflowError):
    code = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class LeaseLost(FailedPrecondition):
    """The caller's lease is no longer the task's current lease."""

    reason = "LEASE_LOST"


class TaskNotProcessing(FailedPrecondition):
    """The task is not held by anyone (pending, or terminal)."""

    reason = "TASK_NOT_PROCESSING"


class TaskCancelled(FailedPrecondition):
    """A report or renewal for a task an operator cancelled: stop its stage."""

    reason = "TASK_CANCELLED"


class TaskFinished(FailedPrecondition):
    """A cancel of a task that already succeeded or failed."""

    reason = "TASK_FINISHED"


class TaskNotRetryable(FailedPrecondition):
    """A retry of a task that is not FAILED or CANCELLED."""

    reason = "TASK_NOT_RETRYABLE"


class Aborted(AsyncflowError):
    """Concurrent writers kept changing what the call was changing; call again."""

    code = "ABORTED"
    reason = "ABORTED"


class ResourceExhausted(AsyncflowError):
    code = "RESOURCE_EXHAUSTED"
    reason = "RESOURCE_EXHAUSTED"


class RateLimited(ResourceExhausted):
    """The caller sent more calls than its rate allows; call again after retry_delay."""

    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, field: str = "", retry_delay: float = 1.0) -> None:
        super().__init__(message, field=field)
        self.retry_delay = retry_delay


class TooManyStreams(ResourceExhausted):
    """The caller already has as many open WorkTasks streams as it may."""

    reason = "TOO_MANY_STREAMS"


class Unauthenticated(AsyncflowError):
    """No credentials, or credentials the server does not know (a token, a certificate)."""

    code = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


class PermissionDenied(AsyncflowError):
    """The caller is known, but none of its roles allows this call."""

    code = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"


class TaskTypeNotAllowed(PermissionDenied):
    """A worker credential limited to some task types, used for another type."""

    reason = "TASK_TYPE_NOT_ALLOWED"


class Unavailable(AsyncflowError):
    """The store cannot be reached; the call may be retried."""

    code = "UNAVAILABLE"
    reason = "STORE_UNAVAILABLE"


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""
