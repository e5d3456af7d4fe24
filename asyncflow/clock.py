"""Clocks: the real one, and one that tests move by hand.

Both implement the core's Clock port (asyncflow.core.ports.Clock); every rule
that depends on time asks the clock it was given. Both also set alarms
(AlarmClock), so that what must happen at a time (a delayed task or a back-off
coming due) happens when *that* clock says so: at the real second, or when a
test moves its manual clock past it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Alarm(Protocol):
    def cancel(self) -> None: ...


class AlarmClock(Protocol):
    def now(self) -> int:
        """Current time as Unix seconds (UTC)."""
        ...

    def call_at(self, when: int, callback: Callable[[], None]) -> Alarm:
        """Call `callback` on the running event loop once the time is `when` or later."""
        ...


class SystemClock:
    def now(self) -> int:
        """Current time as Unix seconds (UTC)."""
        return int(time.time())

    def call_at(self, when: int, callback: Callable[[], None]) -> Alarm:
        # From the fractional time: at the start of second `when`, not up to a
        # second after it as a delay computed from now() would be.
        return asyncio.get_running_loop().call_later(max(0.0, when - time.time()), callback)


class _ManualAlarm:
    def __init__(self, when: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that only moves when told to; for tests and simulations. Its alarms
    go off when advance() reaches them, never by themselves."""

    def __init__(self, start: int = 1_700_000_000) -> None:
        self._now = start
        self._alarms: list[_ManualAlarm] = []

    def now(self) -> int:
        return self._now

    def advance(self, seconds: int) -> None:
        self._now += seconds
        due = [a for a in self._alarms if a.when <= self._now and not a.cancelled]
        self._alarms = [a for a in self._alarms if a.when > self._now and not a.cancelled]
        for alarm in sorted(due, key=lambda a: a.when):
            alarm.callback()

    def call_at(self, when: int, callback: Callable[[], None]) -> Alarm:
        if when <= self._now:
            return asyncio.get_running_loop().call_soon(callback)
        alarm = _ManualAlarm(when, callback)
        self._alarms.append(alarm)
        return alarm
