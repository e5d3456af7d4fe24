"""Request checks shared by every entry point (unary RPCs, and later the stream).

Each failure is an InvalidArgument naming the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncflow.errors import InvalidArgument


@dataclass(frozen=True)
class Limits:
    """Server-wide bounds on request sizes (config section [limits])."""

    max_hold_limit: int = 2000
    max_context_bytes: int = 8192
    max_page_size: int = 1000
    default_page_size: int = 100
    max_reply_bytes: int = 4 * 1024 * 1024
    """Largest hold reply and stream push: a hold leases only the tasks that fit
    (gRPC clients receive 4 MiB by default); a single larger task goes alone."""


MAX_USER_ID_CHARS = 256
MAX_STAGE_CHARS = 128
MAX_ERROR_CHARS = 4096
MAX_LEASE_TOKEN_CHARS = 64
"""Tokens are 32 hex digits today; the bound leaves room to change that."""


def check_text(value: str, field: str, max_chars: int) -> str:
    if len(value) > max_chars:
        raise InvalidArgument(f"{field} is longer than {max_chars} characters", field=field)
    if "\x00" in value:
        raise InvalidArgument(f"{field} contains a NUL character", field=field)
    return value


def check_context(value: str, limits: Limits, field: str = "context") -> str:
    size = len(value.encode("utf-8"))
    if size > limits.max_context_bytes:
        raise InvalidArgument(
            f"{field} is {size} bytes, over the limit of {limits.max_context_bytes}", field=field
        )
    return value


def check_range(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidArgument(f"{field} must be in [{low}, {high}], got {value}", field=field)
    return value


def check_lease_token(token: str) -> str:
    """A string that could be a lease token: non-empty, printable ASCII, bounded.

    Anything else was never issued by a hold, so it is a malformed request rather
    than a lost lease; refusing it here also keeps it away from the constant-time
    compare, which raises on non-ASCII strings.
    """
    if not token:
        raise InvalidArgument("lease_token is required", field="lease_token")
    if len(token) > MAX_LEASE_TOKEN_CHARS or not (token.isascii() and token.isprintable()):
        raise InvalidArgument(
            "lease_token is not a lease token (the lease.token of a held task: at most"
            f" {MAX_LEASE_TOKEN_CHARS} printable ASCII characters)",
            field="lease_token",
        )
    return token
