"""Queue depth and throughput from periodic counts (the core over fakes of its ports)."""

from __future__ import annotations

from fakes import FakeStore, RecordingCache

from asyncflow.clock import ManualClock
from asyncflow.core.model import CreateRequest, Success, TaskStatus, TypeSettings
from asyncflow.core.service import TaskCore
from asyncflow.http.depth import QueueDepth
from asyncflow.http.metrics import PrometheusMetrics


class Timer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_counts_and_throughput_per_minute() -> None:
    store = FakeStore()
    await store.migrate()
    core = TaskCore(store, RecordingCache(), ManualClock())
    timer = Timer()
    metrics = PrometheusMetrics()
    depth = QueueDepth(core, metrics, interval=30.0, timer=timer)
    await core.register_type(TypeSettings("lark"))
    assert depth.throughput("lark") is None  # nothing counted yet
    await depth.refresh()
    for _ in range(6):
        await core.create_task(CreateRequest("lark"))
    for task in await core.hold_tasks("lark", 3):
        await core.set_task(task.task_id, task.lease_token, Success())
    timer.now += 5
    await depth.refresh()
    assert depth.throughput("lark") is None  # 5 s say nothing per minute
    timer.now += 25
    await depth.refresh()
    assert depth.counts["lark"][TaskStatus.PENDING] == 3
    assert depth.counts["lark"][TaskStatus.SUCCESS] == 3
    throughput = depth.throughput("lark")
    assert throughput is not None
    assert (throughput.created_per_minute, throughput.finished_per_minute) == (12.0, 6.0)
    assert depth.throughput("other") is not None  # a type with no counts: zero
    text = metrics.exposition().decode()
    assert 'asyncflow_queue_depth{status="success",task_type="lark"} 3.0' in text


async def test_a_failed_count_keeps_the_last_one() -> None:
    store = FakeStore()
    await store.migrate()
    core = TaskCore(store, RecordingCache(), ManualClock())
    metrics = PrometheusMetrics()
    depth = QueueDepth(core, metrics, interval=30.0)
    await core.register_type(TypeSettings("lark"))
    await depth.refresh()
    before = dict(depth.counts)
    await store.close()
    await depth.refresh()
    assert depth.counts == before
    assert "asyncflow_queue_depth_refresh_errors_total 1.0" in metrics.exposition().decode()
