"""Waiting helpers shared by the worker's parts: back-off, and waits a stop cuts short."""

from __future__ import annotations

import asyncio
import contextlib
import random

FIRST_DELAY = 0.1
MAX_DELAY = 10.0


class Backoff:
    """Exponential back-off with ±20 % jitter: 0.1 s, doubling up to 10 s."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def delay(self) -> float:
        """The next delay to wait (and double the one after)."""
        delay = self._next * random.uniform(0.8, 1.2)
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


async def wait_either(
    event: asyncio.Event, stopping: asyncio.Event, seconds: float | None = None
) -> None:
    """Wait until `event` or `stopping` is set, or `seconds` pass."""
    waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopping.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, but wake at once when `stopping` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
