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
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                current = await self.store.schema_ready()
        except TimeoutError:
            return f"the store did not answer within {READY_TIMEOUT:g}s"
        except Unavailable as exc:
            return f"the store is unavailable: {exc}"
        return "" if current else "the database schema is not migrated (asyncflow migrate)"

    async def prometheus(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
