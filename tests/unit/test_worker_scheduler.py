"""The worker's Scheduler: the local queue, the slots, and what stages hand over."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from worker_fakes import FakeLeases, FakeOrigin, FakeReporter, task, until

from asyncflow._sdk.job import Done, Job, NonRetryable, RetryLater, RunNext
from asyncflow._sdk.scheduler import Scheduler


class Stages:
    """A handler whose stages end when the test says so."""

    def __init__(self) -> None:
        self.began: list[str] = []
        self._ends: dict[str, asyncio.Event] = {}

    async def __call__(self, job: Job) -> None:
        self.began.append(job.task_id)
        await self._ends.setdefault(job.task_id, asyncio.Event()).wait()

    def finish(self, task_id: str) -> None:
        self._ends.setdefault(task_id, asyncio.Event()).set()


def scheduler(
    concurrency: int, handler: Any, finished: list[object] | None = None
) -> tuple[Scheduler, FakeLeases, FakeReporter]:
    leases, reporter = FakeLeases(), FakeReporter()
    on_finished = finished.append if finished is not None else None
    parts = Scheduler({"lark": handler}, concurrency, leases, reporter, on_finished)  # type: ignore[arg-type]
    return parts, leases, reporter


async def test_at_most_concurrency_stages_run_and_the_rest_wait_in_order() -> None:
    stages = Stages()
    finished: list[object] = []
    parts, leases, reporter = scheduler(2, stages, finished)
    origin = FakeOrigin()
    parts.accept([task("a"), task("b"), task("c"), task("d")], origin)

    await until(lambda: stages.began == ["a", "b"], what="two stages running")
    assert (parts.running, parts.waiting, parts.room) == (["a", "b"], ["c", "d"], 0)
    assert origin.started_ids == ["a", "b"]  # only what really began is acknowledged
    assert leases.kept == ["a", "b", "c", "d"]  # waiting tasks' leases are kept too

    stages.finish("b")
    await until(lambda: stages.began == ["a", "b", "c"], what="c started")
    assert origin.started_ids == ["a", "b", "c"]
    assert reporter.sent == [("b", "success")]
    assert finished == [origin]
    assert parts.slot_freed.is_set()
    assert parts.completed == 1
    assert leases.released == []  # the reporter ends the lease once the report is settled


async def test_tasks_of_an_ended_stream_never_start() -> None:
    stages = Stages()
    parts, leases, reporter = scheduler(1, stages)
    old, new = FakeOrigin(), FakeOrigin()
    parts.accept([task("a"), task("b")], old)
    parts.accept([task("c")], new)
    await until(lambda: stages.began == ["a"], what="a running")

    old.open = False  # the server released b when old ended
    stages.finish("a")
    await until(lambda: stages.began == ["a", "c"], what="c started")
    assert "b" in leases.released
    assert ("b", "release") not in reporter.sent  # nothing to give back: the server did


async def test_forget_drops_the_waiting_tasks_of_an_origin() -> None:
    stages = Stages()
    parts, leases, _ = scheduler(1, stages)
    old, new = FakeOrigin(), FakeOrigin()
    parts.accept([task("a"), task("b")], old)
    parts.accept([task("c")], new)
    parts.forget(old)
    assert parts.waiting == ["c"]
    assert leases.released == ["b"]


async def test_a_lost_lease_abandons_the_stage_or_the_waiting_task() -> None:
    stages = Stages()
    parts, leases, reporter = scheduler(1, stages)
    parts.accept([task("a"), task("b"), task("c")], FakeOrigin())
    await until(lambda: stages.began == ["a"], what="a running")

    parts.lease_lost("c")
    assert parts.waiting == ["b"]
    parts.lease_lost("a")
    await until(lambda: stages.began == ["a", "b"], what="b started")
    assert reporter.sent == []  # a report would be refused: nothing is sent
    assert "a" in leases.released


async def test_handler_results_become_reports() -> None:
    async def handler(job: Job) -> RunNext | Done | None:
        match job.task_id:
            case "next":
                return RunNext("record", context="c2")
            case "done":
                return Done(context="final")
            case "later":
                raise RetryLater("busy", delay=2.6)
            case "fatal":
                raise NonRetryable("no recipient")
            case "crash":
                raise RuntimeError("boom")
        return None

    parts, _, reporter = scheduler(10, handler)
    ids = ["next", "done", "plain", "later", "fatal", "crash"]
    parts.accept([task(i) for i in ids], None)
    await until(lambda: len(reporter.sent) == len(ids), what="every report")
    reports = {r.task_id: r for r in reporter.reports}
    assert (reports["next"].next_stage.task_stage, reports["next"].context) == ("record", "c2")
    assert reports["done"].HasField("success")
    assert reports["done"].context == "final"
    assert reports["plain"].HasField("success")
    assert not reports["plain"].HasField("context")
    assert (reports["later"].retry.error_message, reports["later"].retry.delay_seconds) == (
        "busy",
        3,
    )
    assert reports["fatal"].fail.error_message == "no recipient"
    assert reports["crash"].retry.error_message == "RuntimeError('boom')"
    assert not reports["crash"].retry.HasField("delay_seconds")  # the type's back-off
    assert all(r.lease_token == f"token-{r.task_id}" for r in reporter.reports)


async def test_drain_gives_back_what_waits_and_what_did_not_finish() -> None:
    stages = Stages()
    parts, _, reporter = scheduler(2, stages)
    parts.accept([task("a"), task("b"), task("c")], FakeOrigin())
    await until(lambda: stages.began == ["a", "b"], what="two running")
    stages.finish("a")  # finishes within the grace period...

    await parts.drain(grace=0.05)  # ...b never does
    assert sorted(reporter.sent) == [("a", "success"), ("b", "release"), ("c", "release")]
    assert stages.began == ["a", "b"]  # c was given back, never started
    assert parts.running == []
    assert parts.waiting == []

    parts.accept([task("late")], FakeOrigin())  # pushed while stopping
    assert reporter.sent[-1] == ("late", "release")


async def test_close_lets_running_stages_finish_but_starts_nothing_new() -> None:
    stages = Stages()
    parts, _, reporter = scheduler(1, stages)
    parts.accept([task("a"), task("b")], FakeOrigin())
    await until(lambda: stages.began == ["a"], what="a running")
    parts.close()
    stages.finish("a")
    await until(lambda: reporter.sent == [("a", "success")], what="a reported")
    assert stages.began == ["a"]
    assert parts.waiting == ["b"]  # drain gives it back


async def test_a_task_without_handler_is_given_back() -> None:
    stages = Stages()
    parts, _, reporter = scheduler(1, stages)
    parts.accept([task("x", task_type="other")], None)
    assert reporter.sent == [("x", "release")]
    assert parts.room == 1


@pytest.mark.parametrize("concurrency", [0, -1])
def test_the_worker_refuses_a_useless_concurrency(concurrency: int) -> None:
    from asyncflow.worker import Worker

    with pytest.raises(ValueError, match="concurrency"):
        Worker(concurrency=concurrency)
