"""Wiring: build the store, cache and core from config, and run the gRPC server.

The server also serves grpc.health.v1 and server reflection so that
`grpcurl -plaintext HOST:PORT list` works with no .proto at hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from asyncflow.cache import TaskCache
from asyncflow.cache.connection import SharedPool, client, open_pool
from asyncflow.cache.memory import MemoryTaskCache, NoTaskCache
from asyncflow.cache.redis import RedisTaskCache
from asyncflow.clock import Clock, SystemClock
from asyncflow.config import CacheConfig, Config, StoreConfig
from asyncflow.core.governance import Governance
from asyncflow.core.service import TaskCore
from asyncflow.errors import ConfigError
from asyncflow.lock import LocalLock, LockBackend, RedisLock
from asyncflow.server.governor import Governor
from asyncflow.server.servicer import TaskServicer
from asyncflow.server.session import Dispatcher
from asyncflow.server.wakeup import RedisWakeRelay, WakeHub
from asyncflow.store.base import TaskStore
from asyncflow.store.mysql import MysqlStore
from asyncflow.store.sqlite import SqliteStore
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TaskService"].full_name


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
        )
    return await SqliteStore.open(config.sqlite_path)


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


def open_locks(config: Config, pool: SharedPool | None) -> LockBackend:
    backend = config.governance.lock_backend
    if pool is not None and backend in ("redis", "auto"):
        return RedisLock(client(pool))
    return LocalLock()


@dataclass
class AsyncflowServer:
    """A running server and everything it owns; stop() releases it all."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    core: TaskCore
    port: int
    dispatcher: Dispatcher
    governor: Governor | None = None
    redis_pool: SharedPool | None = None
    """The Redis connections shared by the cache, the locks and the wake-up relay."""
    stopped: bool = False

    @classmethod
    async def start(cls, config: Config, clock: Clock | None = None) -> AsyncflowServer:
        store = await open_store(config.store)
        applied = await store.migrate()
        if applied:
            log.info("applied migrations %s", ", ".join(applied))
        pool = open_pool(config.cache) if config.cache.backend == "redis" else None
        core = TaskCore(
            store, await open_cache(config.cache, pool), clock or SystemClock(), config.limits
        )
        size = config.server.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                # Two servers must never share a port silently.
                ("grpc.so_reuseport", 0),
            ]
        )
        hub = WakeHub(core.clock)
        core.on_due = hub
        if pool is not None:
            relay = RedisWakeRelay(client(pool), config.cache.key_prefix + "wake", hub)
            relay.start()
            hub.relay = relay
        dispatcher = Dispatcher(core, hub)
        pb_grpc.add_TaskServiceServicer_to_server(TaskServicer(core, dispatcher), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            [
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        address = f"{config.server.host}:{config.server.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:
            await hub.close()
            await core.cache.close()
            await core.store.close()
            if pool is not None:
                await pool.disconnect()
            raise ConfigError(f"server.port: cannot listen on {address}: {exc}") from None
        await server.start()
        for service in ("", SERVICE_NAME):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        governor = None
        if config.governance.enabled:
            governor = Governor(
                Governance(core, config.governance),
                open_locks(config, pool),
                config.cache.key_prefix,
            )
            governor.start()
        log.info(
            "asyncflow serving on %s:%d (store=%s, cache=%s)",
            config.server.host,
            port,
            config.store.backend,
            config.cache.backend,
        )
        return cls(
            server=server,
            health=health_servicer,
            core=core,
            port=port,
            dispatcher=dispatcher,
            governor=governor,
            redis_pool=pool,
        )

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: health turns NOT_SERVING, new calls are refused, in-flight
        calls get `grace` seconds to finish, then the store and cache close.
        Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        await self.health.enter_graceful_shutdown()
        if self.governor is not None:
            await self.governor.stop()
        # Streams end first (their un-started tasks released) so that workers
        # reconnect elsewhere; unary calls in flight get the grace period.
        await self.dispatcher.shutdown(grace=5.0 if grace is None else grace)
        await self.server.stop(grace)
        await self.dispatcher.hub.close()
        await self.core.cache.close()
        await self.core.store.close()
        if self.redis_pool is not None:
            await self.redis_pool.disconnect()
        log.info("asyncflow stopped")
