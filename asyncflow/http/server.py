"""The HTTP side of `asyncflow serve`: one aiohttp listener in the gRPC server's loop.

It serves the probes and /metrics (asyncflow.http.probes), the original's /v1
routes (asyncflow.http.v1) and the dashboard (asyncflow.http.dashboard, its
POSTs behind the CSRF guard), all on the same TaskCore and TaskControl as the
gRPC service. AsyncflowServer starts it after the
gRPC server and stops it last, so probes and metrics answer while calls drain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from aiohttp import web

from asyncflow.config import HttpConfig
from asyncflow.core.control import TaskControl
from asyncflow.core.ports import TaskStore
from asyncflow.core.service import TaskCore
from asyncflow.errors import ConfigError
from asyncflow.http.auth import HttpAuth
from asyncflow.http.dashboard import Dashboard
from asyncflow.http.depth import QueueDepth
from asyncflow.http.metrics import PrometheusMetrics
from asyncflow.http.probes import Probes
from asyncflow.http.v1 import V1Routes
from asyncflow.server.auth.guard import Guard

log = logging.getLogger(__name__)


class HttpSide:
    def __init__(self, runner: web.AppRunner, url: str, probes: Probes, depth: QueueDepth
                 ) -> None:  # fmt: skip
        self.runner = runner
        self.url = url
        """Where it listens, e.g. http://127.0.0.1:8080 (no trailing slash)."""
        self.probes = probes
        self.depth = depth

    @classmethod
    async def start(
        cls,
        config: HttpConfig,
        *,
        core: TaskCore,
        control: TaskControl,
        store: TaskStore,
        metrics: PrometheusMetrics,
        streams: Callable[[], Iterable[tuple[int, int]]],
        grace: float,
        guard: Guard | None = None,
    ) -> HttpSide:
        """Listen on config.host:config.port; `streams()` gives (window, outstanding)
        of each open WorkTasks stream, `grace` bounds the requests' drain at stop."""
        metrics.watch_streams(streams)
        metrics.watch_pool(store.pool_usage)
        depth = QueueDepth(core, metrics, config.queue_depth_interval_seconds)
        probes = Probes(store, metrics)
        # With [auth] on, every route asks for a token (or a dashboard login) first;
        # then the CSRF guard checks the forms, bound to the login session.
        auth = HttpAuth(guard) if guard is not None and guard.auth.enabled else None
        dashboard = Dashboard(control, depth, auth.session_key if auth else None)
        middlewares = [*([auth.middleware] if auth else []), dashboard.csrf.middleware]
        app = web.Application(middlewares=middlewares)
        if auth is not None:
            app.add_routes(auth.routes(dashboard.render))
        app.add_routes(probes.routes())
        app.add_routes(V1Routes(core).routes())
        app.add_routes(dashboard.routes())
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"http.port: cannot listen on {config.host}:{config.port}: {exc.strerror}"
            ) from None
        port = runner.addresses[0][1]
        shown = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
        shown = f"[{shown}]" if ":" in shown else shown  # an IPv6 address
        depth.start()
        return cls(runner, f"http://{shown}:{port}", probes, depth)

    def announce_shutdown(self) -> None:
        """/readyz turns 503; everything is still served until stop()."""
        self.probes.shutting_down = True

    async def stop(self) -> None:
        self.announce_shutdown()
        await self.depth.stop()
        await self.runner.cleanup()
        await self.probes.settle()
