"""/metrics: after a scripted run the counters show exactly what happened."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import aiohttp
import grpc
import pytest
from conftest import Running, StartServer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from rpc import SUCCESS, create, get, hold, register, report, retry
from streams import RawWorker
from waiting import eventually
from webclient import Web

from asyncflow.clock import ManualClock
from asyncflow.config import Config
from asyncflow.core.governance import GovernanceSettings

SERVICE = "asyncflow.v1.TaskService"


async def test_a_scripted_run_shows_exactly_in_the_counters(
    server: Running, web: Web, clock: ManualClock
) -> None:
    stub = server.stub
    await register(stub, max_retry_num=3, max_processing_time_seconds=30)
    created = [await create(stub) for _ in range(5)]  # N = 5
    held = await hold(stub, limit=10)
    assert len(held) == 5
    for task in held[:2]:  # M = 2 successes
        await report(stub, task, SUCCESS)
    for task in held[2:4]:  # K = 2 retries
        await report(stub, task, retry("boom"))
    clock.advance(31)  # the fifth lease expires: one recovery
    core = server.server.core
    assert len(await core.recover_stuck(await core.task_type("lark"), 100)) == 1
    with pytest.raises(grpc.aio.AioRpcError):  # its old holder is fenced off
        await report(stub, held[4], SUCCESS)
    await get(stub, created[0].task_id)  # the cache has it

    scrape = await web.metrics()
    lark = {"task_type": "lark"}
    assert scrape.value("asyncflow_tasks_created_total", **lark, outcome="created") == 5
    assert scrape.value("asyncflow_tasks_held_total", **lark) == 5
    assert scrape.value("asyncflow_tasks_pushed_total", **lark) == 0
    assert scrape.value("asyncflow_tasks_reported_total", **lark, outcome="success") == 2
    assert scrape.value("asyncflow_tasks_reported_total", **lark, outcome="retry") == 2
    assert scrape.value("asyncflow_tasks_reported_total", **lark, outcome="refused") == 1
    assert scrape.total("asyncflow_tasks_reported_total") == 5
    assert scrape.value("asyncflow_lease_recoveries_total", **lark, outcome="retry") == 1
    assert scrape.total("asyncflow_lease_recoveries_total") == 1
    assert scrape.value("asyncflow_cache_lookups_total", result="hit") == 1

    def calls(method: str, code: str = "OK") -> float:
        labels = {"service": SERVICE, "method": method, "code": code}
        assert scrape.value("asyncflow_rpc_duration_seconds_count", **labels) == scrape.value(
            "asyncflow_rpc_handled_total", **labels
        )
        return scrape.value("asyncflow_rpc_handled_total", **labels)

    assert calls("RegisterTaskType") == 1
    assert calls("CreateTask") == 5
    assert calls("HoldTasks") == 1
    assert calls("SetTask") == 4
    assert calls("SetTask", "FAILED_PRECONDITION") == 1
    assert calls("GetTask") == 1
    bucket = {"service": SERVICE, "method": "CreateTask", "code": "OK", "le": "+Inf"}
    assert scrape.value("asyncflow_rpc_duration_seconds_bucket", **bucket) == 5


async def test_bad_calls_are_counted_by_code_and_unknown_methods_not_at_all(
    server: Running, web: Web
) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await create(server.stub, "Not A Type")
    unknown = server.channel.unary_unary("/asyncflow.v1.TaskService/Nope")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await unknown(b"")
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    health = health_pb2_grpc.HealthStub(server.channel)
    await health.Check(health_pb2.HealthCheckRequest())
    scrape = await web.metrics()
    labels = {"service": SERVICE, "method": "CreateTask", "code": "INVALID_ARGUMENT"}
    assert scrape.value("asyncflow_rpc_handled_total", **labels) == 1
    assert scrape.total("asyncflow_rpc_handled_total", method="Nope") == 0
    checks = {"service": "grpc.health.v1.Health", "method": "Check", "code": "OK"}
    assert scrape.value("asyncflow_rpc_handled_total", **checks) == 1


async def test_streams_show_pushes_window_and_outstanding_tasks(server: Running, web: Web) -> None:
    stub = server.stub
    await register(stub)
    for _ in range(3):
        await create(stub)
    worker = RawWorker(stub)
    try:
        await worker.subscribe("lark", window=2)
        await worker.until(tasks=2)
        scrape = await web.metrics()
        assert scrape.value("asyncflow_tasks_pushed_total", task_type="lark") == 2
        assert scrape.value("asyncflow_tasks_held_total", task_type="lark") == 2
        assert scrape.value("asyncflow_streams_open") == 1
        assert scrape.value("asyncflow_streams_window") == 2
        assert scrape.value("asyncflow_streams_outstanding_tasks") == 2
    finally:
        worker.cancel()

    labels = {"service": SERVICE, "method": "WorkTasks"}

    async def ended() -> bool:
        scrape = await web.metrics()
        return (
            scrape.value("asyncflow_streams_open") == 0
            and scrape.total("asyncflow_rpc_handled_total", **labels) == 1
        )

    await eventually(ended, what="the stream's end counted")
    scrape = await web.metrics()
    assert scrape.value("asyncflow_streams_window") == 0
    assert scrape.total("asyncflow_rpc_duration_seconds_count", **labels) == 0  # not a latency


async def test_queue_depth_is_counted_on_its_interval(server: Running, web: Web) -> None:
    stub = server.stub
    await register(stub)
    for _ in range(3):
        await create(stub)
    (task,) = await hold(stub, limit=1)
    await report(stub, task, SUCCESS)

    async def counted() -> bool:
        scrape = await web.metrics()
        statuses = ("pending", "processing", "success", "failed")
        depth = [
            scrape.value("asyncflow_queue_depth", task_type="lark", status=s) for s in statuses
        ]
        return depth == [2, 0, 1, 0]

    await eventually(counted, what="the depth counted (every second in tests)")
    scrape = await web.metrics()
    assert scrape.value("asyncflow_queue_depth_refreshed_timestamp_seconds") > 0
    assert scrape.value("asyncflow_db_connections_max") >= 1


async def test_governance_passes_are_timed_by_loop(
    start_server: StartServer, config: Config
) -> None:
    fast = GovernanceSettings(long_process_interval=0.05, split_interval=0.05, move_interval=0.05)
    running = await start_server(replace(config, governance=fast))
    assert running.server.http is not None
    async with aiohttp.ClientSession() as session:
        web = Web(running.server.http.url, session)

        async def passed() -> bool:
            scrape = await web.metrics()
            return all(
                scrape.value("asyncflow_governance_pass_duration_seconds_count",
                             loop=loop, result="ok") >= 2
                for loop in ("recover_stuck", "split", "advance_begin")
            )  # fmt: skip

        await eventually(passed, what="two passes of each loop")


async def test_replicas_count_their_own_calls_and_add_up(
    start_server: StartServer, config: Config
) -> None:
    """Two servers in one process (one store): separate registries whose
    counters sum to the whole."""
    first, second = await start_server(config), await start_server(config)
    await register(first.stub)
    for _ in range(3):
        await create(first.stub)
    for _ in range(4):
        await create(second.stub)
    totals = []
    async with aiohttp.ClientSession() as session:
        for running in (first, second):
            assert running.server.http is not None
            scrape = await Web(running.server.http.url, session).metrics()
            totals.append(scrape.value("asyncflow_tasks_created_total", task_type="lark",
                                       outcome="created"))  # fmt: skip
    assert totals == [3, 4]


async def test_the_grafana_dashboard_graphs_only_metrics_that_exist(web: Web) -> None:
    dashboard = (Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text()
    used = set(re.findall(r"asyncflow_[a-z_]+", dashboard))
    status, text = await web.get("/metrics")
    assert status == 200
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exposed = {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes.get(family.type, ("",))
    }
    assert len(used) >= 15
    assert used - exposed == set()
