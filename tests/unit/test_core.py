"""The core's rules, with fakes of its ports only (store, cache, clock, due listener)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace

import pytest
from fakes import FakeStore, RecordingCache, RecordingListener

from asyncflow.clock import ManualClock
from asyncflow.core import policy
from asyncflow.core.model import (
    CreateRequest,
    Fail,
    NextStage,
    Release,
    Report,
    Retry,
    RetryStrategy,
    Success,
    Task,
    TaskFilter,
    TaskStatus,
    TaskTypeConfig,
    TypeSettings,
)
from asyncflow.core.service import TaskCore
from asyncflow.core.validate import Limits
from asyncflow.errors import (
    InvalidArgument,
    LeaseLost,
    TaskNotFound,
    TaskNotProcessing,
    TaskTypeNotFound,
)

NOW = 1_800_000_000


@dataclass
class Parts:
    core: TaskCore
    store: FakeStore
    cache: RecordingCache
    clock: ManualClock
    due: RecordingListener


def make_parts(store: FakeStore) -> Parts:
    cache, clock, due = RecordingCache(), ManualClock(NOW), RecordingListener()
    core = TaskCore(store, cache, clock, Limits(max_hold_limit=200), on_due=due)
    return Parts(core, store, cache, clock, due)


@pytest.fixture
def parts() -> Parts:
    return make_parts(FakeStore())


async def held(parts: Parts, count: int = 1, **settings: object) -> list[Task]:
    """Register "lark", create `count` tasks and hold them all."""
    await parts.core.register_type(TypeSettings("lark", **settings))  # type: ignore[arg-type]
    await parts.core.create_tasks([CreateRequest("lark") for _ in range(count)])
    return await parts.core.hold_tasks("lark", count)


# -- task types ----------------------------------------------------------------


async def test_register_keeps_current_values_for_unset_fields(parts: Parts) -> None:
    first = await parts.core.register_type(TypeSettings("lark", max_retry_num=7))
    assert (first.max_retry_num, first.schedule_limit) == (7, 100)  # the default otherwise
    again = await parts.core.register_type(
        TypeSettings("lark", retry_strategy=RetryStrategy.UNIFORM)
    )
    assert (again.max_retry_num, again.retry.strategy) == (7, RetryStrategy.UNIFORM)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (TypeSettings("Lark"), "task_type"),
        (TypeSettings("lark", schedule_limit=201), "schedule_limit"),  # over max_hold_limit
        (TypeSettings("lark", max_retry_num=-1), "max_retry_num"),
        (TypeSettings("lark", retry_interval=0), "retry_interval_seconds"),
    ],
)
async def test_register_refuses_bad_settings_and_writes_nothing(
    parts: Parts, settings: TypeSettings, field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await parts.core.register_type(settings)
    assert refused.value.field == field
    assert "type_upsert" not in parts.store.calls


# -- producers -----------------------------------------------------------------


async def test_create_folds_priority_into_order_time_and_announces(parts: Parts) -> None:
    await parts.core.register_type(TypeSettings("lark"))
    task, created = await parts.core.create_task(CreateRequest("lark", priority=60))
    assert created
    assert task.order_time == NOW - 60
    assert parts.due.due == [("lark", NOW - 60, 1)]
    # Not cached by the create (no older state to hide): the first read fills it.
    assert task.task_id not in parts.cache.entries
    assert await parts.core.get_task(task.task_id) == task
    assert parts.cache.entries[task.task_id] == task


async def test_create_with_a_used_key_returns_that_task_as_it_is_now(parts: Parts) -> None:
    await parts.core.register_type(TypeSettings("lark"))
    first, _ = await parts.core.create_task(CreateRequest("lark", idempotency_key="order-1"))
    (holding,) = await parts.core.hold_tasks("lark", 1)
    again, created = await parts.core.create_task(
        CreateRequest("lark", context="other", idempotency_key="order-1")
    )
    assert not created
    assert again == holding  # the existing task, not a new one
    assert again.task_id == first.task_id


async def test_create_many_checks_every_item_before_writing(parts: Parts) -> None:
    await parts.core.register_type(TypeSettings("lark"))
    with pytest.raises(InvalidArgument) as bad:
        await parts.core.create_tasks(
            [CreateRequest("lark"), CreateRequest("lark", user_id="x\x00")]
        )
    assert bad.value.field == "tasks[1].user_id"
    with pytest.raises(TaskTypeNotFound) as missing:
        await parts.core.create_tasks([CreateRequest("lark"), CreateRequest("ghost")])
    assert missing.value.field == "tasks[1].task_type"
    config = await parts.core.task_type("lark")
    assert sum((await parts.store.task_count(config)).values()) == 0


# -- readers -------------------------------------------------------------------


async def test_get_reads_through_the_cache(parts: Parts) -> None:
    await parts.core.register_type(TypeSettings("lark"))
    task, _ = await parts.core.create_task(CreateRequest("lark"))
    parts.cache.entries.clear()
    assert await parts.core.get_task(task.task_id) == task  # a miss: from the store
    assert parts.cache.entries[task.task_id] == task  # and published
    parts.store.calls.clear()
    assert await parts.core.get_task(task.task_id) == task
    assert parts.store.calls == []  # a hit
    with pytest.raises(TaskNotFound):
        await parts.core.get_task("nope_lark_1")


async def test_list_pages_with_tokens_bound_to_the_type(parts: Parts) -> None:
    await parts.core.register_type(TypeSettings("lark"))
    await parts.core.register_type(TypeSettings("owl"))
    made = [t for t, _ in await parts.core.create_tasks([CreateRequest("lark")] * 5)]
    first, token = await parts.core.list_tasks("lark", TaskFilter(), 3, "")
    rest, last = await parts.core.list_tasks("lark", TaskFilter(), 3, token)
    assert [t.task_id for t in first + rest] == [t.task_id for t in made]
    assert last == ""
    with pytest.raises(InvalidArgument) as foreign:
        await parts.core.list_tasks("owl", TaskFilter(), 3, token)
    assert foreign.value.field == "page_token"


# -- holders -------------------------------------------------------------------


async def test_hold_leases_for_max_processing_time(parts: Parts) -> None:
    (task,) = await held(parts, max_processing_time=45)
    assert task.status is TaskStatus.PROCESSING
    assert task.lease_deadline == NOW + 45
    assert len(task.lease_token) == 32
    assert parts.cache.entries[task.task_id] == task


@pytest.mark.parametrize(
    ("outcome", "status", "retries", "order_time"),
    [
        (Success(), TaskStatus.SUCCESS, 0, NOW),
        (NextStage("two"), TaskStatus.PENDING, 0, NOW + 10),
        (Retry("boom"), TaskStatus.PENDING, 1, NOW + 10 + 5),
        (Retry("boom", delay=100), TaskStatus.PENDING, 1, NOW + 10 + 100),
        (Fail("fatal"), TaskStatus.FAILED, 0, NOW),
        (Release(), TaskStatus.PENDING, 0, NOW),
    ],
)
async def test_report_applies_the_policy(
    parts: Parts, outcome: object, status: TaskStatus, retries: int, order_time: int
) -> None:
    (task,) = await held(parts)
    parts.clock.advance(10)
    parts.due.due.clear()
    done = await parts.core.set_task(task.task_id, task.lease_token, outcome, "new")  # type: ignore[arg-type]
    assert (done.status, done.crt_retry_num, done.order_time) == (status, retries, order_time)
    assert (done.context, done.lease_token) == ("new", "")
    assert parts.cache.entries[task.task_id] == done
    announced = [("lark", order_time, 1)] if status is TaskStatus.PENDING else []
    assert parts.due.due == announced


async def test_report_is_fenced_by_the_lease(parts: Parts) -> None:
    (task,) = await held(parts)
    with pytest.raises(LeaseLost):
        await parts.core.set_task(task.task_id, "not-the-token", Success())
    await parts.core.set_task(task.task_id, task.lease_token, Success())
    with pytest.raises(TaskNotProcessing):
        await parts.core.set_task(task.task_id, task.lease_token, Success())
    with pytest.raises(TaskNotFound):
        await parts.core.set_task("nope_lark_1", task.lease_token, Success())


async def test_a_batch_of_reports_answers_each_on_its_own(parts: Parts) -> None:
    first, second = await held(parts, 2)
    results = await parts.core.set_tasks(
        [
            Report(first.task_id, first.lease_token, Success()),
            Report(second.task_id, "forged", Success()),
            Report("bad id", "x", Success()),
            Report(first.task_id, first.lease_token, Success()),  # the same task again
        ]
    )
    assert isinstance(results[0], Task)
    assert results[0].status is TaskStatus.SUCCESS
    assert isinstance(results[1], LeaseLost)
    assert isinstance(results[2], InvalidArgument)
    assert isinstance(results[3], TaskNotProcessing)  # the first report won
    assert parts.store.calls.count("task_update_leased_many") == 2  # one write, one retry


async def test_concurrent_holds_share_one_claim_each_with_its_own_lease(parts: Parts) -> None:
    await parts.core.register_type(TypeSettings("lark"))
    await parts.core.create_tasks([CreateRequest("lark") for _ in range(5)])
    parts.store.calls.clear()
    first, second, missing, third = await asyncio.gather(
        parts.core.hold_tasks("lark", 2),
        parts.core.hold_tasks("lark", 2),
        parts.core.hold_tasks("nope", 2),
        parts.core.hold_tasks("lark", 2),
        return_exceptions=True,
    )
    assert isinstance(missing, TaskTypeNotFound)  # fails alone
    assert isinstance(first, list)
    assert isinstance(second, list)
    assert isinstance(third, list)
    assert [len(first), len(second), len(third)] == [2, 2, 1]
    assert len({t.task_id for t in first + second + third}) == 5
    assert len({t.lease_token for t in first + second + third}) == 3
    assert parts.store.calls.count("task_claim_due") == 1  # one claim transaction
    assert parts.store.calls.count("type_get") == 2  # once per type


async def test_reports_on_known_tasks_skip_the_read_and_stay_fenced(parts: Parts) -> None:
    first, second, third = await held(parts, 3)
    renewed = await parts.core.extend_lease(second.task_id, second.lease_token)  # version moved
    parts.store.calls.clear()
    known = {t.task_id: t for t in (first, second, third)}  # as pushed: second is now stale
    results = await parts.core.set_tasks(
        [Report(t.task_id, t.lease_token, Success()) for t in (first, second)], known
    )
    assert [r.status for r in results if isinstance(r, Task)] == [TaskStatus.SUCCESS] * 2
    assert results[1] == replace(renewed, status=TaskStatus.SUCCESS, lease_token="",
                                 lease_deadline=0, version=renewed.version + 1,
                                 schedule_log=results[1].schedule_log)  # fmt: skip
    # The first attempt read nothing; only the stale one was read, then written again.
    assert parts.store.calls == ["task_update_leased_many", "task_get_many",
                                 "task_update_leased_many"]  # fmt: skip
    # A stale holder's hint cannot refuse the current holder's report in the same batch.
    (again,) = await parts.core.set_tasks([Report(third.task_id, "old-token", Release())])
    assert isinstance(again, LeaseLost)
    stale_hint = {third.task_id: replace(third, lease_token="old-token")}
    mixed = await asyncio.gather(
        parts.core.set_tasks([Report(third.task_id, "old-token", Success())], stale_hint),
        parts.core.set_tasks([Report(third.task_id, third.lease_token, Success())]),
    )
    assert isinstance(mixed[0][0], LeaseLost | TaskNotProcessing)
    assert isinstance(mixed[1][0], Task)
    assert mixed[1][0].status is TaskStatus.SUCCESS


async def test_extend_lease_moves_the_deadline_from_now(parts: Parts) -> None:
    (task,) = await held(parts, max_processing_time=30)
    parts.clock.advance(20)
    extended = await parts.core.extend_lease(task.task_id, task.lease_token)
    assert extended.lease_deadline == NOW + 20 + 30
    with pytest.raises(LeaseLost):
        await parts.core.extend_lease(task.task_id, "forged")


# -- stuck recovery ------------------------------------------------------------


async def test_recovery_applies_the_retry_policy_then_fails(parts: Parts) -> None:
    (task,) = await held(parts, max_retry_num=1, max_processing_time=30, retry_interval=4)
    config = await parts.core.task_type("lark")
    assert await parts.core.recover_stuck(config, 100) == []  # not expired yet
    parts.clock.advance(31)
    (recovered,) = await parts.core.recover_stuck(config, 100)
    assert (recovered.status, recovered.crt_retry_num) == (TaskStatus.PENDING, 1)
    assert recovered.order_time == NOW + 31 + policy.retry_delay(config.retry, 0)
    assert json.loads(recovered.schedule_log)["last"]["outcome"] == "lease_expired"
    assert parts.cache.entries[task.task_id] == recovered
    assert parts.due.due[-1] == ("lark", recovered.order_time, 1)
    parts.clock.advance(4)
    (again,) = await parts.core.hold_tasks("lark", 1)
    parts.clock.advance(31)
    (failed,) = await parts.core.recover_stuck(config, 100)
    assert (failed.status, failed.crt_retry_num) == (TaskStatus.FAILED, 1)  # retries used
    assert again.hold_count == 2


class ReportInBetween(FakeStore):
    """A store where a holder's report lands between recovery's read and its write."""

    def __init__(self) -> None:
        super().__init__()
        self.report: Report | None = None
        self.core: TaskCore | None = None

    async def task_list_expired(self, config: TaskTypeConfig, now: int, limit: int) -> list[Task]:
        expired = await super().task_list_expired(config, now, limit)
        if self.report is not None and self.core is not None:
            report, self.report = self.report, None
            await self.core.set_task(report.task_id, report.lease_token, report.outcome)
        return expired


async def test_a_report_landing_during_recovery_wins() -> None:
    store = ReportInBetween()
    parts = make_parts(store)
    store.core = parts.core
    late, stuck = await held(parts, 2, max_processing_time=30)
    parts.clock.advance(31)
    store.report = Report(late.task_id, late.lease_token, Success())
    recovered = await parts.core.recover_stuck(await parts.core.task_type("lark"), 100)
    assert [t.task_id for t in recovered] == [stuck.task_id]
    assert (await parts.core.get_task(late.task_id)).status is TaskStatus.SUCCESS
