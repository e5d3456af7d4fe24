"""The Metrics port (asyncflow.core.ports.Metrics) over prometheus_client, and /metrics.

One registry per server instance, so that several servers in one process (the
tests, the test kit) each count their own. Every replica exposes its own
counters: sum them across replicas (`sum by (task_type) (rate(...))`). The
gauges of queue depth are the database's numbers, the same on every replica:
take `max by (task_type, status)`, never the sum. docs/metrics.md lists every
metric and docs/grafana-dashboard.json graphs them.

Outcomes by event (the `outcome` label):
- created: "created", or "existing" when an idempotency key named a task made before;
- reported: what the holder reported ("success", "next_stage", "retry", "fail",
  "release"), or "refused" when its lease was gone (fencing);
- recovered: "retry" (back to the queue) or "failed" (retries used up);
- held, pushed: none. Every lease granted counts as held, by HoldTasks or for a
  stream; pushed counts the part of them sent on WorkTasks streams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from asyncflow.core.model import PoolUsage, TaskStatus
from asyncflow.core.ports import TaskEvent

RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PASS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)
STATUS_NAMES = {status: status.name.lower() for status in TaskStatus}


class PrometheusMetrics:
    def __init__(self) -> None:
        # The *_created series (when each counter was made) double the output and
        # no dashboard reads them. A process-wide switch, like the env variable.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        registry = self.registry
        self.rpcs = Counter(
            "asyncflow_rpc_handled", "gRPC calls ended, unary and streaming, by status code.",
            ["service", "method", "code"], registry=registry,
        )  # fmt: skip
        self.rpc_seconds = Histogram(
            "asyncflow_rpc_duration_seconds", "Handling time of unary gRPC calls.",
            ["service", "method", "code"], buckets=RPC_BUCKETS, registry=registry,
        )  # fmt: skip
        self.events = {
            event: Counter(name, text, labels, registry=registry)
            for event, name, text, labels in (
                ("created", "asyncflow_tasks_created", "Tasks created (or found by their "
                 "idempotency key).", ["task_type", "outcome"]),
                ("held", "asyncflow_tasks_held", "Leases granted, by HoldTasks or for streams.",
                 ["task_type"]),
                ("pushed", "asyncflow_tasks_pushed", "Held tasks sent on WorkTasks streams.",
                 ["task_type"]),
                ("reported", "asyncflow_tasks_reported", "Holders' reports, by outcome.",
                 ["task_type", "outcome"]),
                ("recovered", "asyncflow_lease_recoveries", "Expired leases recovered by "
                 "governance.", ["task_type", "outcome"]),
            )
        }  # fmt: skip
        self.cache = Counter(
            "asyncflow_cache_lookups", "Task reads from the cache.", ["result"], registry=registry
        )
        # The labelled series, looked up once: labels() validates, locks and
        # hashes on every call, and these are counted on every RPC. The label
        # values are bounded (methods the server has, status codes, task types),
        # and prometheus_client keeps every series it made anyway.
        self._lookups: dict[bool, Any] = {}
        self._rpcs: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._tasks: dict[tuple[str, str, str], Any] = {}
        self.passes = Histogram(
            "asyncflow_governance_pass_duration_seconds", "Governance passes and their length.",
            ["loop", "result"], buckets=PASS_BUCKETS, registry=registry,
        )  # fmt: skip
        self.depth = Gauge(
            "asyncflow_queue_depth", "Tasks by type and status, counted every "
            "http.queue_depth_interval_seconds (the time: *_refreshed_timestamp_seconds).",
            ["task_type", "status"], registry=registry,
        )  # fmt: skip
        self.depth_time = Gauge(
            "asyncflow_queue_depth_refreshed_timestamp_seconds",
            "When asyncflow_queue_depth was last counted (Unix time).", registry=registry,
        )  # fmt: skip
        self.depth_seconds = Gauge(
            "asyncflow_queue_depth_refresh_seconds",
            "How long the last count of asyncflow_queue_depth took.", registry=registry,
        )  # fmt: skip
        self.depth_errors = Counter(
            "asyncflow_queue_depth_refresh_errors", "Counts of the queue depth that failed.",
            registry=registry,
        )  # fmt: skip

    # -- the core's port ----------------------------------------------------------

    def tasks(self, event: TaskEvent, task_type: str, outcome: str, count: int) -> None:
        key = (event, task_type, outcome)
        labelled = self._tasks.get(key)
        if labelled is None:
            counter = self.events[event]
            labelled = counter.labels(task_type, outcome) if outcome else counter.labels(task_type)
            self._tasks[key] = labelled
        labelled.inc(count)

    def cache_lookup(self, hit: bool) -> None:
        labelled = self._lookups.get(hit)
        if labelled is None:
            labelled = self._lookups[hit] = self.cache.labels("hit" if hit else "miss")
        labelled.inc()

    def governance_pass(self, loop: str, seconds: float, failed: bool) -> None:
        self.passes.labels(loop, "error" if failed else "ok").observe(seconds)

    # -- the observer of every gRPC call (asyncflow.server.rpc_metrics) -----------

    def rpc(self, service: str, method: str, code: str, seconds: float, streaming: bool) -> None:
        key = (service, method, code)
        labelled = self._rpcs.get(key)
        if labelled is None:
            labelled = self._rpcs[key] = (
                self.rpcs.labels(service, method, code),
                self.rpc_seconds.labels(service, method, code),
            )
        labelled[0].inc()
        if not streaming:  # a stream's length says how long a worker stayed, not latency
            labelled[1].observe(seconds)

    # -- read when scraped ----------------------------------------------------------

    def watch_streams(self, streams: Callable[[], Iterable[tuple[int, int]]]) -> None:
        """`streams()` gives (window, outstanding tasks) of each open WorkTasks stream."""

        def gauge(name: str, text: str, pick: Callable[[tuple[int, int]], int]) -> None:
            Gauge(name, text, registry=self.registry).set_function(
                lambda: sum(pick(stream) for stream in streams())
            )

        gauge("asyncflow_streams_open", "Open WorkTasks streams.", lambda _: 1)
        gauge("asyncflow_streams_window", "Sum of the open streams' windows.", lambda s: s[0])
        gauge("asyncflow_streams_outstanding_tasks",
              "Tasks pushed on open streams and not reported yet.", lambda s: s[1])  # fmt: skip

    def watch_pool(self, usage: Callable[[], PoolUsage]) -> None:
        def gauge(name: str, text: str, pick: Callable[[PoolUsage], int]) -> None:
            Gauge(name, text, registry=self.registry).set_function(lambda: pick(usage()))

        gauge("asyncflow_db_connections_in_use", "Store connections running an operation.",
              lambda u: u.in_use)  # fmt: skip
        gauge("asyncflow_db_connections_open", "Store connections open (busy or idle).",
              lambda u: u.open)  # fmt: skip
        gauge("asyncflow_db_connections_max", "Most connections the store opens.",
              lambda u: u.limit)  # fmt: skip

    def set_depth(self, counts: dict[str, dict[TaskStatus, int]], at: float, took: float) -> None:
        """Replace every depth series at once (types gone since are dropped); nothing
        awaits in between, so a scrape never sees half of it."""
        self.depth.clear()
        for task_type, by_status in counts.items():
            for status, count in by_status.items():
                self.depth.labels(task_type, STATUS_NAMES[status]).set(count)
        self.depth_time.set(at)
        self.depth_seconds.set(took)

    def depth_failed(self) -> None:
        self.depth_errors.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
