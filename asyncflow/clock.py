"""Clocks: the real one, and one that tests move by hand.

Both implement the core's Clock port (asyncflow.core.ports.Clock); every rule
that depends on time asks the clock it was given.
"""

from __future__ import annotations

import time


class SystemClock:
    def now(self) -> int:
        """Current time as Unix seconds (UTC)."""
        return int(time.time())


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: int = 1_700_000_000) -> None:
        self._now = start

    def now(self) -> int:
        return self._now

    def advance(self, seconds: int) -> None:
        self._now += seconds
