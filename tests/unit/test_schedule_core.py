"""Cron schedules over the fake store and a manual clock: settings, the firing pass,
a leader dying mid-tick, catch-up after downtime, time zones and DST."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest
from fakes import FakeStore, RecordingCache, RecordingListener

from asyncflow.clock import ManualClock
from asyncflow.core.model import (
    CatchUp,
    Schedule,
    ScheduleSettings,
    Task,
    TaskFilter,
    TaskTemplate,
    TypeSettings,
)
from asyncflow.core.schedules import ScheduleCore, tick_key
from asyncflow.core.service import TaskCore
from asyncflow.errors import (
    InvalidArgument,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    TaskTypeNotFound,
    Unavailable,
)

START = 1_800_000_000  # a whole minute, UTC


@dataclass
class Parts:
    schedules: ScheduleCore
    core: TaskCore
    store: FakeStore
    clock: ManualClock


def make_parts(start: int = START, grace: int = 60) -> Parts:
    store, clock = FakeStore(), ManualClock(start)
    core = TaskCore(store, RecordingCache(), clock, on_due=RecordingListener())
    return Parts(ScheduleCore(core, misfire_grace=grace), core, store, clock)


@pytest.fixture
async def parts() -> Parts:
    made = make_parts()
    await made.core.register_type(TypeSettings("lark"))
    return made


def every(cron: str = "* * * * *", name: str = "tick", **changes: object) -> ScheduleSettings:
    settings = ScheduleSettings(name, cron=cron, template=TaskTemplate("lark", "go", "{}", 5))
    return ScheduleSettings(**{**settings.__dict__, **changes})  # type: ignore[arg-type]


async def tasks(parts: Parts) -> list[Task]:
    found, _ = await parts.core.list_tasks("lark", TaskFilter(), 1000, "")
    return found


async def fired_ticks(parts: Parts, name: str = "tick") -> list[int]:
    prefix = f"cron-{name}-"
    return sorted(int(t.task_id.split("_")[0][len(prefix) :]) for t in await tasks(parts)
                  if t.task_id.startswith(prefix))  # fmt: skip


async def run_for(parts: Parts, seconds: int, step: int = 1) -> None:
    """Move the clock, a pass after each step (a leader that never misses a pass)."""
    for _ in range(0, seconds, step):
        parts.clock.advance(step)
        await parts.schedules.fire_due()


async def test_create_checks_every_setting(parts: Parts) -> None:
    made = await parts.schedules.create_schedule(every())
    assert (made.time_zone, made.catch_up, made.catch_up_limit) == ("UTC", CatchUp.LATEST, 10)
    assert (made.next_fire_time, made.last_fire_time, made.paused) == (START + 60, 0, False)
    with pytest.raises(ScheduleAlreadyExists):
        await parts.schedules.create_schedule(every())
    bad: list[tuple[ScheduleSettings, str]] = [
        (every(name="Bad_Name"), "name"), (every(name="x" * 41), "name"),
        (every(cron="every minute"), "cron"), (every(cron=None), "cron"),
        (every(template=None), "task"), (every(time_zone="Nowhere/Land"), "time_zone"),
        (every(catch_up_limit=0), "catch_up_limit"), (every(catch_up_limit=1001), "catch_up_limit"),
        (every(template=TaskTemplate("lark", priority=10**9)), "task.priority"),
        (every(template=TaskTemplate("lark", task_stage="s" * 129)), "task.task_stage"),
        (every(template=TaskTemplate("lark", context="c" * 9000)), "task.context"),
        (every(template=TaskTemplate("Lark")), "task.task_type"),
    ]  # fmt: skip
    for settings, field in bad:
        with pytest.raises(InvalidArgument) as refused:
            await parts.schedules.create_schedule(ScheduleSettings(**{**settings.__dict__,
                                                                      "name": settings.name
                                                                      if field == "name"
                                                                      else "other"}))  # fmt: skip
        assert refused.value.field == field
    with pytest.raises(TaskTypeNotFound) as missing:
        await parts.schedules.create_schedule(every(name="b", template=TaskTemplate("ghost")))
    assert missing.value.field == "task.task_type"
    assert [s.name for s in await parts.schedules.list_schedules()] == ["tick"]


async def test_each_tick_creates_its_task_once(parts: Parts) -> None:
    await parts.schedules.create_schedule(every())
    await run_for(parts, 300, step=7)  # passes at uneven times
    assert await fired_ticks(parts) == [START + 60 * k for k in range(1, 6)]
    (made,) = await parts.schedules.list_schedules()
    assert (made.last_fire_time, made.next_fire_time) == (START + 300, START + 360)
    assert made.last_task_id == f"{tick_key('tick', START + 300)}_lark_1"
    task = (await tasks(parts))[0]
    assert (task.task_stage, task.context, task.priority) == ("go", "{}", 5)
    assert await parts.schedules.fire_due() == 0  # nothing due in between


async def test_a_leader_dying_mid_tick_and_its_successor_create_one_task(parts: Parts) -> None:
    await parts.schedules.create_schedule(every())
    parts.clock.advance(60)
    real_update = parts.store.schedule_update

    async def dies_before_recording(schedule: Schedule, now: int) -> Schedule | None:
        raise Unavailable("the leader's connection died")

    parts.store.schedule_update = dies_before_recording  # type: ignore[method-assign]
    assert await parts.schedules.fire_due() == 0  # the task is created, the pass is lost
    assert await fired_ticks(parts) == [START + 60]
    parts.store.schedule_update = real_update  # type: ignore[method-assign]
    parts.clock.advance(1)
    assert await parts.schedules.fire_due() == 0  # the successor creates nothing new
    assert await fired_ticks(parts) == [START + 60]
    (made,) = await parts.schedules.list_schedules()
    assert (made.last_fire_time, made.next_fire_time) == (START + 60, START + 120)
    await run_for(parts, 60)
    assert await fired_ticks(parts) == [START + 60, START + 120]


async def test_two_leaders_passing_at_once_create_one_task_per_tick(parts: Parts) -> None:
    other = ScheduleCore(parts.core, misfire_grace=60)
    await parts.schedules.create_schedule(every(catch_up=CatchUp.ALL))
    parts.clock.advance(180)
    first, second = await parts.schedules.fire_due(), await other.fire_due()
    assert (first, second) == (3, 0)
    assert await fired_ticks(parts) == [START + 60, START + 120, START + 180]


HOUR = 3600


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(CatchUp.SKIP, []), (CatchUp.LATEST, [3]), (CatchUp.ALL, [2, 3])],
)
async def test_catch_up_after_downtime(parts: Parts, policy: CatchUp, expected: list[int]) -> None:
    """An hourly schedule and three hours without a leader: each tick is missed (older
    than the grace) when a pass finds them, half an hour after the last one."""
    await parts.schedules.create_schedule(every("0 * * * *", catch_up=policy, catch_up_limit=2))
    parts.clock.advance(3 * HOUR + HOUR // 2)
    await parts.schedules.fire_due()
    assert await fired_ticks(parts) == [START + k * HOUR for k in expected]
    (made,) = await parts.schedules.list_schedules()
    assert made.next_fire_time == START + 4 * HOUR


async def test_ticks_within_the_grace_fire_whatever_the_policy(parts: Parts) -> None:
    await parts.schedules.create_schedule(every(catch_up=CatchUp.SKIP))
    parts.clock.advance(120)  # a pass every two minutes: the last two ticks are on time
    await parts.schedules.fire_due()
    assert await fired_ticks(parts) == [START + 60, START + 120]


async def test_paused_schedules_do_not_fire_and_resume_from_now(parts: Parts) -> None:
    await parts.schedules.create_schedule(every(catch_up=CatchUp.ALL))
    assert (await parts.schedules.pause_schedule("tick")).paused
    await run_for(parts, 600, step=60)
    assert await fired_ticks(parts) == []
    resumed = await parts.schedules.resume_schedule("tick")
    assert (resumed.paused, resumed.next_fire_time) == (False, START + 660)  # no catch-up
    await run_for(parts, 60, step=60)
    assert await fired_ticks(parts) == [START + 660]


async def test_update_keeps_the_next_tick_unless_the_timing_changes(parts: Parts) -> None:
    await parts.schedules.create_schedule(every())
    parts.clock.advance(30)
    kept = await parts.schedules.update_schedule(
        ScheduleSettings("tick", template=TaskTemplate("lark", "other"))
    )
    assert (kept.next_fire_time, kept.template.task_stage) == (START + 60, "other")
    moved = await parts.schedules.update_schedule(ScheduleSettings("tick", cron="0 * * * *"))
    assert (moved.next_fire_time, moved.template.task_stage) == (START + 3600 - START % 3600,
                                                                 "other")  # fmt: skip
    with pytest.raises(ScheduleNotFound):
        await parts.schedules.update_schedule(ScheduleSettings("ghost", cron="* * * * *"))
    await parts.schedules.delete_schedule("tick")
    with pytest.raises(ScheduleNotFound):
        await parts.schedules.delete_schedule("tick")


def paris(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


async def test_a_daily_schedule_across_both_dst_changes() -> None:
    """At 02:30 Europe/Paris: once on the day 02:30 happens twice, once (at 03:00) on the
    day it does not happen, with a leader passing every ten minutes through both nights."""
    for night, expected in (
        ("2025-10-25T12:00:00+02:00", ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]),
        ("2025-03-29T12:00:00+01:00", ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]),
    ):
        parts = make_parts(start=paris(night))
        await parts.core.register_type(TypeSettings("lark"))
        await parts.schedules.create_schedule(every("30 2 * * *", time_zone="Europe/Paris"))
        await run_for(parts, 2 * 86_400, step=600)
        assert await fired_ticks(parts) == [paris(t) for t in expected]
