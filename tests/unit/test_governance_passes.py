"""The governance passes, given a fake store, a manual clock and a recorded recovery."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from fakes import FakeStore

from asyncflow.clock import ManualClock
from asyncflow.core.governance import Governance, GovernanceSettings
from asyncflow.core.model import Claim, Task, TaskChange, TaskInsert, TaskStatus, TaskTypeConfig
from asyncflow.core.service import DEFAULT_TYPE

NOW = 1_800_000_000
DAY = 86_400


class Recovered:
    """Stands in for TaskCore.recover_stuck: records each call, answers as told."""

    def __init__(self, answers: dict[str, list[Task]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, config: TaskTypeConfig, batch: int) -> list[Task]:
        self.calls.append((config.task_type, batch))
        return self.answers.get(config.task_type, [])


async def typed(store: FakeStore, *names: str) -> None:
    for name in names:
        await store.type_upsert(replace(DEFAULT_TYPE, task_type=name), NOW)


async def fill(store: FakeStore, task_type: str, count: int, now: int = NOW) -> list[Task]:
    news = [TaskInsert(task_type, "", "", 0, "", now, None) for _ in range(count)]
    return [t for t in await store.task_insert_many(news, now) if isinstance(t, Task)]


async def finish_all(store: FakeStore, task_type: str, config: TaskTypeConfig) -> None:
    held = await store.task_claim_due(config, 1000, Claim("t", NOW + 30, NOW + 10**6))
    done = TaskChange(TaskStatus.SUCCESS, "", "", 0, NOW, "")
    await store.task_update_leased_many([(t, "t", done) for t in held], NOW)


def governance(store: FakeStore, clock: ManualClock, recover: Recovered, **settings: object
               ) -> Governance:  # fmt: skip
    return Governance(store, clock, recover, GovernanceSettings(**settings))  # type: ignore[arg-type]


async def test_recovery_runs_per_type_with_the_batch_and_logs_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="asyncflow.core.governance")
    store = FakeStore()
    await typed(store, "owl", "lark")
    (task,) = await fill(store, "lark", 1)
    recover = Recovered({"lark": [task, replace(task, status=TaskStatus.FAILED)]})
    gov = governance(store, ManualClock(NOW), recover, recover_batch=7)
    assert await gov.recover_stuck() == 2
    assert recover.calls == [("lark", 7), ("owl", 7)]
    (record,) = [r for r in caplog.records if getattr(r, "action", "") == "recover_stuck"]
    assert (record.task_type, record.tasks, record.failed) == ("lark", 2, 1)  # type: ignore[attr-defined]


async def test_split_opens_a_table_only_once_the_newest_is_full() -> None:
    store = FakeStore()
    await typed(store, "lark")
    await fill(store, "lark", 3)
    clock = ManualClock(NOW)
    gov = governance(store, clock, Recovered(), table_max_rows=4)
    assert await gov.split_tables() == 0
    await fill(store, "lark", 1)
    assert await gov.split_tables() == 1
    config = await store.type_get("lark")
    assert config is not None
    assert config.end_pos == 2
    assert await gov.split_tables() == 0  # the new table is empty


async def test_advance_begin_moves_past_every_finished_table_in_one_pass() -> None:
    store = FakeStore()
    await typed(store, "lark")
    for _ in range(3):
        await fill(store, "lark", 2)
        config = await store.type_get("lark")
        assert config is not None
        await store.pos_split(config, NOW)
    config = await store.type_get("lark")
    assert config is not None
    gov = governance(store, ManualClock(NOW), Recovered())
    assert await gov.advance_begin() == 0  # table 1 still has pending tasks
    await finish_all(store, "lark", config)
    assert await gov.advance_begin() == 3  # tables 1, 2 and 3; table 4 is the end table
    config = await store.type_get("lark")
    assert config is not None
    assert (config.begin_pos, config.end_pos) == (4, 4)


async def test_retention_drops_old_tables_and_keys_by_the_clock() -> None:
    store = FakeStore()
    await typed(store, "lark")
    news = [TaskInsert("lark", "", "", 0, "", NOW, "k1")]
    await store.task_insert_many(news, NOW)
    config = await store.type_get("lark")
    assert config is not None
    await store.pos_split(config, NOW)
    await finish_all(store, "lark", config)
    assert await store.pos_advance_begin(config, NOW)
    clock = ManualClock(NOW + 2 * DAY)
    assert await governance(store, clock, Recovered()).drop_retired() == 0  # retention off
    gov = governance(store, clock, Recovered(), retention_days=3)
    assert await gov.drop_retired() == 0  # not old enough
    assert store.keys
    clock.advance(2 * DAY)
    assert await gov.drop_retired() == 1
    assert store.keys == {}
    config = await store.type_get("lark")
    assert config is not None
    assert config.data_begin_pos == 2
