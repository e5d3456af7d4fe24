"""Cron schedules: their settings, and the governance pass that fires them.

A schedule creates one task from its template at each tick (asyncflow.core.cron).
The pass runs on one replica at a time (the `cron` governance loop); what makes
each tick create exactly one task is not the lock but the task's idempotency
key, "cron-<name>-<tick>": a leader that dies after creating a tick's task and
before recording it leaves its successor to create the same key again, which
returns the existing task. Recording a pass (next_fire_time, last_fire_time) is
conditional on the schedule's version, so a concurrent update or a second
leader's pass wins cleanly and the next pass starts from what it wrote.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace

from asyncflow.core import policy
from asyncflow.core.cron import CronSpec, plan
from asyncflow.core.model import CatchUp, CreateRequest, Schedule, ScheduleSettings, TaskTemplate
from asyncflow.core.service import TaskCore
from asyncflow.core.validate import MAX_STAGE_CHARS, check_context, check_range, check_text
from asyncflow.errors import Aborted, InvalidArgument, ScheduleNotFound

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,39}")
"""Short enough for "cron-<name>-<tick>" to be an idempotency key (64 characters)."""
DEFAULT_TIME_ZONE = "UTC"
DEFAULT_CATCH_UP = CatchUp.LATEST
DEFAULT_CATCH_UP_LIMIT = 10
MAX_CATCH_UP_LIMIT = 1000
DUE_BATCH = 100
"""Schedules fired per pass; more wait for the next pass."""
RACE_RETRIES = 3


def tick_key(name: str, tick: int) -> str:
    """The idempotency key of the task a schedule creates at `tick`."""
    return f"cron-{name}-{tick}"


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(f"name must match ^[a-z][a-z0-9-]{{0,39}}$, got {name!r:.80}",
                              field="name")  # fmt: skip
    return name


class ScheduleCore:
    def __init__(self, core: TaskCore, misfire_grace: int = 60) -> None:
        self.core = core
        self.misfire_grace = misfire_grace
        """Ticks older than this many seconds when a pass finds them were missed."""

    # -- operators ----------------------------------------------------------------

    async def create_schedule(self, settings: ScheduleSettings) -> Schedule:
        name = check_name(settings.name)
        if settings.cron is None or settings.template is None:
            missing = "cron" if settings.cron is None else "task"
            raise InvalidArgument(f"{missing} is required", field=missing)
        now = self.core.clock.now()
        draft = Schedule(
            name=name,
            cron=settings.cron,
            time_zone=settings.time_zone or DEFAULT_TIME_ZONE,
            template=settings.template,
            catch_up=settings.catch_up or DEFAULT_CATCH_UP,
            catch_up_limit=DEFAULT_CATCH_UP_LIMIT,
            next_fire_time=0,
        )
        schedule = await self._checked(draft, settings, now)
        stored = await self.core.store.schedule_insert(schedule, now)
        log.info("created schedule %s (%s %s)", name, stored.cron, stored.time_zone,
                 extra={"action": "schedule_create", "schedule": name})  # fmt: skip
        return stored

    async def update_schedule(self, settings: ScheduleSettings) -> Schedule:
        async def change(current: Schedule, now: int) -> Schedule:
            merged = replace(
                current,
                cron=current.cron if settings.cron is None else settings.cron,
                time_zone=settings.time_zone or current.time_zone,
                template=settings.template or current.template,
                catch_up=settings.catch_up or current.catch_up,
            )
            checked = await self._checked(merged, settings, now)
            if (checked.cron, checked.time_zone) == (current.cron, current.time_zone):
                return replace(checked, next_fire_time=current.next_fire_time)
            return checked  # a new timing: from its first tick after now

        return await self._modify(settings.name, change)

    async def list_schedules(self) -> list[Schedule]:
        return await self.core.store.schedule_list()

    async def delete_schedule(self, name: str) -> None:
        if not await self.core.store.schedule_delete(check_name(name)):
            raise ScheduleNotFound(f"schedule {name!r} does not exist", field="name")
        log.info("deleted schedule %s", name,
                 extra={"action": "schedule_delete", "schedule": name})  # fmt: skip

    async def pause_schedule(self, name: str) -> Schedule:
        async def pause(current: Schedule, now: int) -> Schedule:
            return replace(current, paused=True)

        return await self._modify(name, pause)

    async def resume_schedule(self, name: str) -> Schedule:
        """From the first tick after now: the ticks of the pause are not caught up."""

        async def resume(current: Schedule, now: int) -> Schedule:
            if not current.paused:
                return current
            spec = CronSpec.parse(current.cron, current.time_zone, now)
            return replace(current, paused=False, next_fire_time=spec.next_after(now))

        return await self._modify(name, resume)

    async def _checked(self, schedule: Schedule, settings: ScheduleSettings, now: int) -> Schedule:
        """`schedule` validated, with its next tick after now and the limit given."""
        spec = CronSpec.parse(schedule.cron, schedule.time_zone, now)
        template = await self._checked_template(schedule.template)
        limit = schedule.catch_up_limit
        if settings.catch_up_limit is not None:
            limit = check_range(settings.catch_up_limit, "catch_up_limit", 1, MAX_CATCH_UP_LIMIT)
        return replace(schedule, template=template, catch_up_limit=limit,
                       next_fire_time=spec.next_after(now))  # fmt: skip

    async def _checked_template(self, template: TaskTemplate) -> TaskTemplate:
        await self.core.task_type(template.task_type, field="task.task_type")
        check_text(template.task_stage, "task.task_stage", MAX_STAGE_CHARS)
        check_context(template.context, self.core.limits, field="task.context")
        check_range(template.priority, "task.priority", 0, policy.MAX_PRIORITY)
        return template

    async def _modify(
        self, name: str, change: Callable[[Schedule, int], Awaitable[Schedule]]
    ) -> Schedule:
        """Apply `change` to the stored schedule, conditional on its version."""
        check_name(name)
        for _ in range(RACE_RETRIES):
            current = await self.core.store.schedule_get(name)
            if current is None:
                raise ScheduleNotFound(f"schedule {name!r} does not exist", field="name")
            now = self.core.clock.now()
            changed = await change(current, now)
            if changed == current:
                return current
            updated = await self.core.store.schedule_update(changed, now)
            if updated is not None:
                log.info("updated schedule %s", name,
                         extra={"action": "schedule_update", "schedule": name})  # fmt: skip
                return updated
        raise Aborted(f"schedule {name!r} kept changing under the call; call again", field="name")

    # -- the governance pass ----------------------------------------------------------

    async def fire_due(self) -> int:
        """Create the tasks of every due tick; returns how many were created."""
        now = self.core.clock.now()
        created = 0
        for schedule in await self.core.store.schedule_list_due(now, DUE_BATCH):
            try:
                created += await self._fire(schedule, now)
            except Exception:
                log.exception("schedule %s could not fire; next pass tries again", schedule.name)
        return created

    async def _fire(self, schedule: Schedule, now: int) -> int:
        spec = CronSpec.parse(schedule.cron, schedule.time_zone, now)
        ticks, following = plan(
            spec,
            schedule.next_fire_time,
            now,
            misfire_grace=self.misfire_grace,
            catch_up=schedule.catch_up,
            catch_up_limit=schedule.catch_up_limit,
        )
        template = schedule.template
        results = []
        size = self.core.limits.max_hold_limit
        for first in range(0, len(ticks), size):
            results += await self.core.create_tasks([
                CreateRequest(task_type=template.task_type, task_stage=template.task_stage,
                              context=template.context, priority=template.priority,
                              idempotency_key=tick_key(schedule.name, tick))
                for tick in ticks[first : first + size]
            ])  # fmt: skip
        fired = replace(schedule, next_fire_time=following)
        if ticks:
            fired = replace(fired, last_fire_time=ticks[-1], last_task_id=results[-1][0].task_id)
        if await self.core.store.schedule_update(fired, now) is None:
            log.info("schedule %s changed during its pass; the next pass starts from it",
                     schedule.name)  # fmt: skip
        for tick, (task, new) in zip(ticks, results, strict=True):
            if new:
                log.info(
                    "schedule %s fired tick %d: task %s", schedule.name, tick, task.task_id,
                    extra={"action": "cron_fire", "schedule": schedule.name, "tick": tick,
                           "task_id": task.task_id},
                )  # fmt: skip
        # next_fire_time is a tick: when it did not fire, the catch-up policy dropped
        # every missed tick from it on.
        if not ticks or ticks[0] > schedule.next_fire_time:
            log.warning(
                "schedule %s skipped its missed ticks from %d to %d (catch-up %s)",
                schedule.name, schedule.next_fire_time, ticks[0] - 1 if ticks else now,
                schedule.catch_up.name,
                extra={"action": "cron_skip", "schedule": schedule.name},
            )  # fmt: skip
        return sum(new for _, new in results)
