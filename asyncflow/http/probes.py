"""For orchestrators and Prometheus: /healthz, /readyz, /metrics.

/healthz answers while the process serves HTTP at all (liveness: restart it
when this fails). /readyz answers 200 only while the store answers a cheap
query with every migration applied and the server is not shutting down
(readiness: route calls here only then).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from asyncflow.core.ports import TaskStore
from asyncflow.errors import Unavailable
from asyncflow.http.metrics import PrometheusMetrics

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0
"""Seconds the store gets to answer /readyz: a store that hangs is not ready."""


class Probes:
    def __init__(self, store: TaskStore, metrics: PrometheusMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self.shutting_down = False
        self._probe: asyncio.Future[bool] | None = None
        """The store query in flight: concurrent /readyz calls share it."""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.prometheus),
        ]

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        reason = await self.not_ready()
        if reason:
            return web.json_response({"ready": False, "reason": reason}, status=503)
        return web.json_response({"ready": True})

    async def not_ready(self) -> str:
        """Why this server should get no calls now; "" when it should."""
        if self.shutting_down:
            return "shutting down"
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self.store.schema_ready())
        # Waited for, never cancelled: a query cancelled inside the driver could
        # leave its connection in a bad state. A slow one is shared by the next
        # probes until it ends.
        done, _ = await asyncio.wait({self._probe}, timeout=READY_TIMEOUT)
        if not done:
            return f"the store did not answer within {READY_TIMEOUT:g}s"
        try:
            current = self._probe.result()
        except Unavailable as exc:
            return f"the store is unavailable: {exc}"
        return "" if current else "the database schema is not migrated (asyncflow migrate)"

    async def settle(self) -> None:
        """Let a probe in flight end (at most READY_TIMEOUT) before the store closes."""
        if self._probe is not None and not self._probe.done():
            await asyncio.wait({self._probe}, timeout=READY_TIMEOUT)

    async def prometheus(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
