"""The injected clock: every rule that depends on time asks one of these."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """Current time as Unix seconds (UTC)."""
        ...


class SystemClock:
    def now(self) -> int:
        return int(time.time())


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: int = 1_700_000_000) -> None:
        self._now = start

    def now(self) -> int:
        return self._now

    def advance(self, seconds: int) -> None:
        self._now += seconds
