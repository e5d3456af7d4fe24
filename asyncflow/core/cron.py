"""Cron expressions read in a time zone: the ticks of a schedule, and which to fire.

The expressions are croniter's (five fields, an optional sixth for seconds, or
an @alias); the time zones are zoneinfo's (IANA names). Ticks are Unix seconds.
Daylight saving time follows the rules of Vixie cron:

- spring forward: a time that does not exist that day (02:30 when clocks jump
  from 02:00 to 03:00) fires once, at the first instant after the gap;
- fall back: an expression with a fixed minute and hour ("30 2 * * *") fires
  once, in the first pass of the repeated hour; one with a wildcard in either
  ("*/15 * * * *", "0 * * * *") fires at every matching instant of both passes,
  as real time goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from asyncflow.core.model import CatchUp
from asyncflow.errors import InvalidArgument

MAX_CRON_CHARS = 128
ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                     "@hourly"})  # fmt: skip
TIME_ZONE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")
RANDOM_ATOM = re.compile(r"(^|[,/-])R($|[,/-])", re.IGNORECASE)
"""croniter's R (a random value per iteration): two leaders would disagree on the ticks."""
MAX_REPEATS = 4
"""Ticks skipped in a row as repeats of a fall-back hour (there are at most 2 per hour)."""


@dataclass(frozen=True)
class CronSpec:
    expression: str
    zone: ZoneInfo
    fixed_time: bool
    """Minute and hour fields without '*': fires once in a repeated (fall-back) hour."""

    @classmethod
    def parse(cls, expression: str, time_zone: str, now: int) -> CronSpec:
        """Check both (InvalidArgument naming `cron` or `time_zone`), and that the
        expression fires at all after `now`."""
        zone = check_time_zone(time_zone)
        fields = expression.split()
        if (
            len(expression) > MAX_CRON_CHARS
            or not (len(fields) in (5, 6) or (len(fields) == 1 and fields[0].lower() in ALIASES))
            or any(RANDOM_ATOM.search(field) for field in fields)
            or not croniter.is_valid(expression)
        ):
            raise InvalidArgument(
                f"cron is not a cron expression (five fields, a sixth for seconds, or an"
                f" @alias; no random R): {expression!r:.160}",
                field="cron",
            )
        # Aliases fire at midnight, but @hourly; fields: minute and hour come first.
        fixed = (
            fields[0].lower() != "@hourly" if len(fields) == 1 else "*" not in fields[0] + fields[1]
        )
        spec = cls(expression, zone, fixed_time=fixed)
        try:
            spec.next_after(now)
        except CroniterBadDateError:
            raise InvalidArgument(f"cron never fires: {expression!r}", field="cron") from None
        return spec

    def next_after(self, after: int) -> int:
        """The first tick strictly after `after`."""
        ticks = croniter(self.expression, datetime.fromtimestamp(after, self.zone))
        return self._first(lambda: int(ticks.get_next(float)))

    def previous_before(self, before: int) -> int:
        """The last tick strictly before `before`."""
        ticks = croniter(self.expression, datetime.fromtimestamp(before, self.zone))
        return self._first(lambda: int(ticks.get_prev(float)))

    def _first(self, step: Callable[[], int]) -> int:
        for _ in range(MAX_REPEATS):
            tick = step()
            if not (self.fixed_time and _repeated(tick, self.zone)):
                return tick
        raise CroniterBadDateError("no tick outside a repeated hour")


def _repeated(tick: int, zone: ZoneInfo) -> bool:
    """`tick` is in the second pass of a wall-clock hour that occurs twice (fall back)."""
    local = datetime.fromtimestamp(tick, zone)
    return local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()


def check_time_zone(name: str) -> ZoneInfo:
    if len(name) <= 64 and TIME_ZONE_RE.fullmatch(name):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise InvalidArgument(f"time_zone is not an IANA time zone name: {name!r:.80}",
                          field="time_zone")  # fmt: skip


def plan(
    spec: CronSpec,
    next_fire: int,
    now: int,
    *,
    misfire_grace: int,
    catch_up: CatchUp,
    catch_up_limit: int,
) -> tuple[list[int], int]:
    """The ticks to fire now, oldest first, and the schedule's next tick after now.

    Every tick from `next_fire` to `now` is due. Those at most `misfire_grace`
    seconds old always fire; older ones were missed (no replica led the loop
    then), and the catch-up policy picks which of them fire.
    """
    if next_fire > now:
        return [], next_fire
    horizon = now - misfire_grace
    on_time: list[int] = []
    tick = next_fire if next_fire >= horizon else spec.next_after(horizon - 1)
    while tick <= now:
        on_time.append(tick)
        tick = spec.next_after(tick)
    following = tick
    missed: list[int] = []
    if next_fire < horizon and catch_up is not CatchUp.SKIP:
        wanted = catch_up_limit if catch_up is CatchUp.ALL else 0 if on_time else 1
        before = horizon
        while len(missed) < wanted and (before := spec.previous_before(before)) >= next_fire:
            missed.append(before)
        missed.reverse()
    return missed + on_time, following
