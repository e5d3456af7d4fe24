"""Cron expressions in time zones (croniter + zoneinfo), DST, and the catch-up plan."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from asyncflow.core.cron import CronSpec, plan
from asyncflow.core.model import CatchUp
from asyncflow.errors import InvalidArgument

PARIS = "Europe/Paris"


def at(text: str) -> int:
    """An ISO time with its offset, as Unix seconds."""
    return int(datetime.fromisoformat(text).timestamp())


def ticks(spec: CronSpec, after: int, count: int) -> list[int]:
    found = []
    for _ in range(count):
        after = spec.next_after(after)
        found.append(after)
    return found


def utc(tick: int) -> str:
    return datetime.fromtimestamp(tick, UTC).strftime("%m-%d %H:%M")


@pytest.mark.parametrize(
    "expression", ["* * * * *", "*/15 9-17 * * MON-FRI", "0 0 L * *", "* * * * * */5", "@daily",
                   "@HOURLY", "0 0 * * 5#3"],
)  # fmt: skip
def test_accepted_expressions(expression: str) -> None:
    spec = CronSpec.parse(expression, "UTC", at("2025-01-01T00:00:00+00:00"))
    assert spec.next_after(0) > 0


@pytest.mark.parametrize(
    ("expression", "why"),
    [("bad", "cron expression"), ("* * * *", "cron expression"),
     ("* * * * * * *", "cron expression"), ("R * * * *", "random"), ("0 R * * *", "random"),
     ("H * * * *", "cron expression"), ("61 * * * *", "cron expression"),
     ("@reboot", "cron expression"), ("*" + " *" * 80, "cron expression"),
     ("0 0 31 2 *", "never fires")],
)  # fmt: skip
def test_refused_expressions_name_the_field(expression: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why) as refused:
        CronSpec.parse(expression, "UTC", at("2025-01-01T00:00:00+00:00"))
    assert refused.value.field == "cron"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime",
                                  "Europe/Paris\x00", "x" * 65])  # fmt: skip
def test_refused_time_zones_name_the_field(zone: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        CronSpec.parse("* * * * *", zone, 0)
    assert refused.value.field == "time_zone"


def test_the_expression_is_read_in_its_time_zone() -> None:
    spec = CronSpec.parse("0 9 * * *", PARIS, 0)
    winter = spec.next_after(at("2025-01-15T12:00:00+00:00"))
    summer = spec.next_after(at("2025-07-15T12:00:00+00:00"))
    assert (utc(winter), utc(summer)) == ("01-16 08:00", "07-16 07:00")
    new_york = CronSpec.parse("0 9 * * *", "America/New_York", 0)
    assert utc(new_york.next_after(at("2025-01-15T12:00:00+00:00"))) == "01-15 14:00"


def test_spring_forward_fires_a_skipped_time_once_after_the_gap() -> None:
    # 2025-03-30: Paris clocks go from 02:00 to 03:00 (01:00 UTC); 02:30 does not exist.
    spec = CronSpec.parse("30 2 * * *", PARIS, 0)
    fired = ticks(spec, at("2025-03-29T12:00:00+01:00"), 3)
    assert [utc(t) for t in fired] == ["03-30 01:00", "03-31 00:30", "04-01 00:30"]
    assert spec.previous_before(fired[1]) == fired[0]


def test_fall_back_fires_a_fixed_time_once() -> None:
    # 2025-10-26: Paris clocks go from 03:00 back to 02:00 (01:00 UTC); 02:30 happens twice.
    spec = CronSpec.parse("30 2 * * *", PARIS, 0)
    fired = ticks(spec, at("2025-10-25T12:00:00+02:00"), 2)
    assert [utc(t) for t in fired] == ["10-26 00:30", "10-27 01:30"]  # once a day, each day
    assert spec.previous_before(fired[1]) == fired[0]
    fixed_minutes = CronSpec.parse("0,30 2 * * *", PARIS, 0)
    assert [utc(t) for t in ticks(fixed_minutes, at("2025-10-26T00:00:00+02:00"), 3)] == [
        "10-26 00:00", "10-26 00:30", "10-27 01:00"]  # fmt: skip
    # A '*' in the minute field is a wildcard: both passes of the hour.
    wildcard = CronSpec.parse("*/30 2 * * *", PARIS, 0)
    assert [utc(t) for t in ticks(wildcard, at("2025-10-26T00:00:00+02:00"), 5)] == [
        "10-26 00:00", "10-26 00:30", "10-26 01:00", "10-26 01:30", "10-27 01:00"]  # fmt: skip


def test_fall_back_fires_a_wildcard_at_every_matching_instant() -> None:
    hourly = CronSpec.parse("0 * * * *", PARIS, 0)
    fired = ticks(hourly, at("2025-10-26T00:30:00+02:00"), 4)
    assert [b - a for a, b in itertools.pairwise(fired)] == [3600, 3600, 3600]
    assert [utc(t) for t in fired] == ["10-25 23:00", "10-26 00:00", "10-26 01:00", "10-26 02:00"]


def every_minute() -> CronSpec:
    return CronSpec.parse("* * * * *", "UTC", 0)


NOW = 1_800_000_000 - 1_800_000_000 % 60  # on a minute


def test_nothing_due_before_the_next_tick() -> None:
    assert plan(every_minute(), NOW + 60, NOW, misfire_grace=60, catch_up=CatchUp.ALL,
                catch_up_limit=5) == ([], NOW + 60)  # fmt: skip


def test_ticks_within_the_grace_always_fire() -> None:
    for policy in CatchUp:
        fired, following = plan(every_minute(), NOW - 120, NOW, misfire_grace=150,
                                catch_up=policy, catch_up_limit=1)  # fmt: skip
        assert (fired, following) == ([NOW - 120, NOW - 60, NOW], NOW + 60)


@pytest.mark.parametrize(
    ("policy", "limit", "missed"),
    [(CatchUp.SKIP, 5, []), (CatchUp.LATEST, 5, []),  # ticks on time fire anyway
     (CatchUp.ALL, 3, [NOW - 240, NOW - 180, NOW - 120]),
     (CatchUp.ALL, 50, [NOW - 60 * k for k in range(10, 1, -1)])],
)  # fmt: skip
def test_missed_ticks_follow_the_catch_up_policy(
    policy: CatchUp, limit: int, missed: list[int]
) -> None:
    """Down for ten minutes: ticks older than the 90 s grace were missed."""
    fired, following = plan(every_minute(), NOW - 600, NOW, misfire_grace=90, catch_up=policy,
                            catch_up_limit=limit)  # fmt: skip
    assert fired == [*missed, NOW - 60, NOW]
    assert following == NOW + 60


def test_latest_fires_a_missed_tick_only_when_none_is_on_time() -> None:
    hourly = CronSpec.parse("0 * * * *", "UTC", 0)
    hour = NOW - NOW % 3600
    fired, following = plan(hourly, hour - 7200, hour + 1800, misfire_grace=60,
                            catch_up=CatchUp.LATEST, catch_up_limit=1)  # fmt: skip
    assert (fired, following) == ([hour], hour + 3600)
    fired, _ = plan(hourly, hour - 7200, hour + 1800, misfire_grace=60, catch_up=CatchUp.SKIP,
                    catch_up_limit=1)  # fmt: skip
    assert fired == []
