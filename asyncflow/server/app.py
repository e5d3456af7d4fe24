"""Wiring: build the store, cache, core and dispatch from config, and run the gRPC server.

The server also serves grpc.health.v1 and server reflection (v1 and v1alpha)
so that `grpcurl -plaintext HOST:PORT list` works with no .proto at hand.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from asyncflow.cache.connection import SharedPool, client, open_pool
from asyncflow.cache.memory import MemoryTaskCache, NoTaskCache
from asyncflow.cache.redis import RedisTaskCache
from asyncflow.clock import AlarmClock, SystemClock
from asyncflow.config import CacheConfig, Config, StoreConfig, check_security
from asyncflow.core.control import TaskControl
from asyncflow.core.governance import Governance
from asyncflow.core.ports import TaskCache, TaskStore
from asyncflow.core.schedules import ScheduleCore
from asyncflow.core.service import TaskCore
from asyncflow.errors import ConfigError
from asyncflow.http.metrics import PrometheusMetrics
from asyncflow.http.server import HttpSide
from asyncflow.lock import LocalLock, LockBackend, RedisLock
from asyncflow.logs import ClientErrorLog
from asyncflow.server.auth.guard import Guard, GuardWrapper
from asyncflow.server.auth.limits import Quotas
from asyncflow.server.auth.tls import ServerTls
from asyncflow.server.auth.tokens import Credentials
from asyncflow.server.cancels import CancelNotices
from asyncflow.server.decoding import guarded_handlers, register
from asyncflow.server.dispatch import Dispatcher
from asyncflow.server.governor import Governor
from asyncflow.server.interception import HandlerWrapper
from asyncflow.server.reflection import V1_SERVICE, V1ALPHA_SERVICE, enable_reflection
from asyncflow.server.relay import RedisRelay
from asyncflow.server.rpc_metrics import RpcMetrics
from asyncflow.server.servicer import TaskServicer
from asyncflow.server.wakeup import RedisWakeRelay, WakeHub, WakeRelay
from asyncflow.store.mysql import MysqlStore
from asyncflow.store.sqlite import SqliteStore
from asyncflow.v1 import task_service_pb2 as pb

log = logging.getLogger(__name__)

TASK_SERVICE = pb.DESCRIPTOR.services_by_name["TaskService"]
SERVICE_NAME = TASK_SERVICE.full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1 as grpcio-health-checking serves it, plus a List that answers.

    Its asyncio servicer inherits the generated, synchronous List stub, which
    raises NotImplementedError: grpc logs an ERROR with a traceback per call.
    """

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Health.List is not served: use Check")
        raise AssertionError("unreachable: abort raises")


def mysql_tls(config: StoreConfig) -> ssl.SSLContext | None:
    """TLS to MySQL when its CA is configured: the server's certificate and name checked."""
    if not config.mysql_tls_ca_file:
        return None
    try:
        context = ssl.create_default_context(cafile=config.mysql_tls_ca_file)
        if config.mysql_tls_cert_file:
            context.load_cert_chain(config.mysql_tls_cert_file, config.mysql_tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"store.mysql_tls_*: cannot load the TLS files: {exc}") from None
    return context


async def open_store(config: StoreConfig) -> TaskStore:
    if config.backend == "mysql":
        return await MysqlStore.open(
            host=config.mysql_host,
            port=config.mysql_port,
            user=config.mysql_user,
            password=config.mysql_password,
            database=config.mysql_database,
            pool_min=config.mysql_pool_min,
            pool_max=config.mysql_pool_max,
            tls=mysql_tls(config),
        )
    return await SqliteStore.open(
        config.sqlite_path,
        synchronous=config.sqlite_synchronous,
        busy_timeout_ms=config.sqlite_busy_timeout_ms,
    )


async def open_cache(config: CacheConfig, pool: SharedPool | None) -> TaskCache:
    if pool is not None:
        cache = RedisTaskCache(
            pool,
            key_prefix=config.key_prefix,
            ttl_seconds=config.ttl_seconds,
            lease_seconds=config.redis_lease_seconds,
            probe_seconds=config.redis_probe_seconds,
        )
        await cache.start()
        return cache
    if config.backend == "memory":
        return MemoryTaskCache(config.memory_max_entries)
    return NoTaskCache()


def open_relay(pool: SharedPool | None) -> RedisRelay | None:
    """Wake-ups and cancel notices cross replicas through the Redis they share (one
    subscription for both); alone, none is needed."""
    return RedisRelay(client(pool)) if pool is not None else None


def wake_relay(relay: RedisRelay | None, config: CacheConfig) -> WakeRelay | None:
    return RedisWakeRelay(relay, config.key_prefix + "wake") if relay is not None else None


def open_locks(config: Config, pool: SharedPool | None) -> LockBackend:
    backend = config.governance.lock_backend
    if pool is not None and backend in ("redis", "auto"):
        return RedisLock(client(pool))
    return LocalLock()


def security_guard(
    config: Config, credentials: Credentials, tls: ServerTls | None, client_log: ClientErrorLog
) -> Guard | None:
    """The guard, when anything needs one: auth, limits, or callers named by certificate."""
    quotas = Quotas.from_config(config.quota)
    if not (config.auth.enabled or quotas.any or (tls is not None and tls.mutual)):
        return None
    if config.auth.enabled and tls is None:
        log.warning(
            "auth is enabled but the gRPC port is plaintext: tokens cross the network in"
            " clear unless a TLS proxy is in front (set server.tls_cert_file)"
        )
    return Guard(
        config.auth, credentials, quotas, client_log,
        task_service=SERVICE_NAME, reflection=frozenset({V1_SERVICE, V1ALPHA_SERVICE}),
        mutual_tls=tls is not None and tls.mutual,
    )  # fmt: skip


def security_summary(config: Config, credentials: Credentials) -> str:
    tls = "plaintext"
    if config.server.tls_cert_file:
        tls = "mutual TLS" if config.server.tls_client_ca_file else "TLS"
    auth = f"auth on ({len(credentials)} entries)" if config.auth.enabled else "auth off"
    return f"{tls}, {auth}"


@dataclass
class AsyncflowServer:
    """A running server and everything it owns; stop() releases it all."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    store: TaskStore
    cache: TaskCache
    core: TaskCore
    port: int
    hub: WakeHub
    dispatcher: Dispatcher
    notices: CancelNotices
    control: TaskControl
    """Cancel, retry, pause, resume (for the HTTP side too)."""
    schedules: ScheduleCore
    governor: Governor | None = None
    http: HttpSide | None = None
    """/healthz, /readyz, /metrics, /v1 and /ui, when [http] is enabled."""
    redis_pool: SharedPool | None = None
    """The Redis connections shared by the cache, the locks and the relay."""
    relay: RedisRelay | None = None
    """Wake-ups and cancel notices between replicas (one pub/sub subscription)."""
    guard: Guard | None = None
    """Who may call what ([auth], [quota], mutual TLS identities), when any is on."""
    tls: ServerTls | None = None
    stopped: bool = False

    @classmethod
    async def start(
        cls, config: Config, clock: AlarmClock | None = None, *, reuse_port: bool = False
    ) -> AsyncflowServer:
        """Build every part once, in dependency order, then serve.

        `reuse_port`: listen with SO_REUSEPORT, beside the other processes of
        `serve --processes N` (asyncflow/server/processes.py); never otherwise.

        The one place where adapters meet the core: the store, cache and clock
        are the core's ports, the wake hub its due listener (with the Redis relay
        when replicas share a Redis), and the dispatcher, servicer and governance
        are built on the core.
        """
        clock = clock or SystemClock()
        # Security settings fail before anything is opened.
        check_security(config)
        tls = ServerTls.from_config(config.server)
        credentials = (
            Credentials.load(config.auth.tokens_file) if config.auth.enabled
            else Credentials.empty()
        )  # fmt: skip
        store = await open_store(config.store)
        applied = await store.migrate()
        if applied:
            log.info("applied migrations %s", ", ".join(applied))
        pool = open_pool(config.cache) if config.cache.backend == "redis" else None
        cache = await open_cache(config.cache, pool)
        relay = open_relay(pool)
        hub = WakeHub(clock, wake_relay(relay, config.cache))
        metrics = PrometheusMetrics() if config.http.enabled else None
        core = TaskCore(
            store, cache, clock, config.limits, on_due=hub, metrics=metrics, handoff=hub
        )
        dispatcher = Dispatcher(core, hub)
        notices = CancelNotices(dispatcher, relay, config.cache.key_prefix + "cancel")
        control = TaskControl(core, on_cancel=notices)
        schedules = ScheduleCore(core, config.governance.cron_misfire_seconds)
        client_log = ClientErrorLog(logging.getLogger("asyncflow.server.clients"), clock)
        guard = security_guard(config, credentials, tls, client_log)
        # Around every call, wrapped once per method (not grpc.aio interceptors,
        # which cost a coroutine chain per call: asyncflow/server/interception.py).
        wrappers: list[HandlerWrapper] = []
        if metrics is not None:  # outermost: refused calls are counted too
            wrappers.append(RpcMetrics(metrics))
        if guard is not None:
            wrappers.append(GuardWrapper(guard))
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.server.max_message_bytes),
                ("grpc.max_send_message_length", config.server.max_message_bytes),
                # Two servers must never share a port silently: only the processes
                # of one `serve --processes N` do, on purpose.
                ("grpc.so_reuseport", int(reuse_port)),
                # Accept the SDK's keepalive pings (every 30 s by default, 10 s at the
                # most often, on idle streams and idle connections too; see
                # asyncflow/_sdk/channel.py), which keep them open through load
                # balancers. gRPC's defaults (a ping per 5 min, none without a call)
                # would answer them with GOAWAY too_many_pings.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ],
        )
        health_servicer = HealthServicer()
        for service, servicer in (
            (TASK_SERVICE, TaskServicer(core, dispatcher, control, schedules)),
            (HEALTH_SERVICE, health_servicer),
        ):
            register(
                server, service.full_name, guarded_handlers(service, servicer, client_log), wrappers
            )
        if config.auth.reflection != "off":
            enable_reflection(
                server, [SERVICE_NAME, HEALTH_SERVICE.full_name], client_log, wrappers
            )
        address = f"{config.server.host}:{config.server.port}"

        async def release() -> None:
            """What a start that fails must not leave open."""
            await hub.close()
            if relay is not None:
                await relay.close()
            await cache.close()
            await store.close()
            if pool is not None:
                await pool.disconnect()

        try:
            port = (
                server.add_secure_port(address, tls.credentials()) if tls is not None
                else server.add_insecure_port(address)
            )  # fmt: skip
        except RuntimeError as exc:
            await release()
            raise ConfigError(f"server.port: cannot listen on {address}: {exc}") from None
        hub.start()
        notices.start()
        if relay is not None:
            relay.start()  # once every channel listens
        await server.start()
        for service in ("", SERVICE_NAME):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        http = None
        if metrics is not None:
            try:
                http = await HttpSide.start(
                    config.http, core=core, control=control, store=store, metrics=metrics,
                    streams=lambda: [(s.window, len(s.outstanding))
                                     for s in dispatcher.sessions.values()],
                    grace=config.server.grace_seconds, guard=guard,
                )  # fmt: skip
            except ConfigError:  # its port is taken
                await server.stop(None)
                await release()
                raise
        governor = None
        if config.governance.enabled:
            governance = Governance(store, clock, core.recover_stuck, config.governance)
            locks = open_locks(config, pool)
            cron = (config.governance.cron_interval, schedules.fire_due)
            governor = Governor(governance, locks, config.cache.key_prefix, metrics, {"cron": cron})
            governor.start()
        log.info(
            "asyncflow serving on %s:%d (store=%s, cache=%s, %s)%s",
            config.server.host,
            port,
            config.store.backend,
            config.cache.backend,
            security_summary(config, credentials),
            f"; dashboard at {http.url}/ui" if http else "",
        )
        return cls(
            server=server,
            health=health_servicer,
            store=store,
            cache=cache,
            core=core,
            port=port,
            hub=hub,
            dispatcher=dispatcher,
            notices=notices,
            control=control,
            schedules=schedules,
            governor=governor,
            http=http,
            redis_pool=pool,
            relay=relay,
            guard=guard,
            tls=tls,
        )

    def reload(self) -> None:
        """SIGHUP: read the TLS certificates (for new connections; open streams keep
        theirs) and the tokens file again. A file that cannot be read or checked
        is logged and the current one stays in force."""
        for what, reload in (("TLS certificates", self.tls and self.tls.reload),
                             ("tokens file", self.guard and self.guard.reload)):  # fmt: skip
            if not reload:
                continue
            try:
                reload()
            except ConfigError as exc:
                log.error("%s not reloaded, the current ones stay: %s", what, exc)

    async def announce_shutdown(self) -> None:
        """Health turns NOT_SERVING, so that probes and load balancers stop sending
        new calls here; everything is still served until stop()."""
        await self.health.enter_graceful_shutdown()
        if self.http is not None:
            self.http.announce_shutdown()

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: health turns NOT_SERVING (if announce_shutdown did not already),
        governance stops, streams end (waiting up to `grace` seconds for them to
        release their un-started tasks), then new calls are refused and in-flight
        calls get `grace` seconds to finish; then the store and cache close.
        Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        await self.announce_shutdown()
        if self.governor is not None:
            await self.governor.stop()
        # Streams end first (their un-started tasks released) so that workers
        # reconnect elsewhere; unary calls in flight get the grace period.
        await self.dispatcher.shutdown(grace=5.0 if grace is None else grace)
        await self.server.stop(grace)
        if self.http is not None:  # last: probes and metrics answer while calls drain
            await self.http.stop()
        await self.hub.close()
        await self.notices.close()
        if self.relay is not None:
            await self.relay.close()
        await self.cache.close()
        await self.store.close()
        if self.redis_pool is not None:
            await self.redis_pool.disconnect()
        log.info("asyncflow stopped")
