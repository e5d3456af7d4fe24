"""Waiting without sleeping to synchronise: poll a condition until a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = "condition"
) -> float:
    """Poll `condition` until it holds; fail after `within` seconds. Returns the wait."""
    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"{what} not met within {within:.1f}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start
