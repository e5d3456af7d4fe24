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


MAX_USER_ID_CHARS = 256
MAX_STAGE_CHARS = 128
MAX_ERROR_CHARS = 4096


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
