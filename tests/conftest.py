"""Shared fixtures: the real MariaDB, the real Redis, real gRPC servers on port 0.

MariaDB: one fresh database per test session (dropped at the end), emptied
before each test. Redis: one key prefix per test, deleted afterwards. The
DSNs come from ASYNCFLOW_TEST_* variables with defaults for the local services.
These tests fail (they are never skipped) when a service is unreachable.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pymysql
import pytest
import redis.asyncio as aioredis
from fakes import FakeStore
from redis_tools import PrivateRedis, RedisProxy
from secure import Pki, Tokens
from webclient import Web

from asyncflow.clock import AlarmClock, ManualClock
from asyncflow.config import CacheConfig, Config, HttpConfig, ServerConfig, StoreConfig
from asyncflow.core.governance import GovernanceSettings
from asyncflow.core.ports import TaskStore
from asyncflow.server.app import AsyncflowServer
from asyncflow.store.mysql import MysqlStore
from asyncflow.store.sqlite import SqliteStore
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

MYSQL: dict[str, Any] = {
    "host": os.environ.get("ASYNCFLOW_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("ASYNCFLOW_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("ASYNCFLOW_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("ASYNCFLOW_TEST_MYSQL_PASSWORD", ""),
}
REDIS_URL = os.environ.get("ASYNCFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Test servers run no governance loops unless a test turns them on.
NO_GOVERNANCE = GovernanceSettings(enabled=False)
# Their HTTP side listens on a free port, counting the queue depth every second.
HTTP = HttpConfig(port=0, queue_depth_interval_seconds=1.0)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mysql", id="mysql", marks=[pytest.mark.mysql, pytest.mark.redis]),
]


@pytest.fixture(scope="session")
def mysql_database() -> Iterator[str]:
    name = f"asyncflow_test_{uuid.uuid4().hex[:10]}"
    yield name
    conn = pymysql.connect(**MYSQL)
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def mysql_store_config(database: str, **settings: Any) -> StoreConfig:
    """The test MariaDB as a server's [store] section, with more `settings`."""
    return StoreConfig(
        backend="mysql",
        mysql_host=MYSQL["host"],
        mysql_port=MYSQL["port"],
        mysql_user=MYSQL["user"],
        mysql_password=MYSQL["password"],
        mysql_database=database,
        **settings,
    )


def reset_mysql(database: str) -> None:
    """Empty the test database between tests (schema migrations stay applied)."""
    conn = pymysql.connect(**MYSQL, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (database,),
        )
        for (table,) in cur.fetchall():
            if table.startswith("t_") and "_task_" in table and table != "t_task_key":
                cur.execute(f"DROP TABLE `{database}`.`{table}`")
            elif table in ("t_schedule_cfg", "t_schedule_pos", "t_task_key", "t_cron_schedule"):
                cur.execute(f"DELETE FROM `{database}`.`{table}`")
    finally:
        conn.close()


async def open_store(backend: str, tmp_path: Path, database: str) -> TaskStore:
    if backend == "sqlite":
        return await SqliteStore.open(str(tmp_path / "asyncflow.db"))
    reset_mysql(database)
    return await MysqlStore.open(**MYSQL, database=database, pool_max=40)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[*BACKENDS, pytest.param("fake", id="fake")])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, mysql_database: str
) -> AsyncIterator[TaskStore]:
    """Each real backend, and the unit tier's fake (so the fake keeps the contract too)."""
    opened: TaskStore = (
        FakeStore() if request.param == "fake"
        else await open_store(request.param, tmp_path, mysql_database)
    )  # fmt: skip
    await opened.migrate()
    yield opened
    await opened.close()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix owned by one test; its keys are deleted afterwards."""
    prefix = f"asyncflow-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> ManualClock:
    """Starts at the real time; tests move it instead of sleeping."""
    return ManualClock(start=int(time.time()))


@pytest.fixture
def config(backend: str, tmp_path: Path, mysql_database: str, redis_prefix: str) -> Config:
    """Server config for the backend: MariaDB goes with Redis, SQLite with memory."""
    if backend == "sqlite":
        return Config(
            server=ServerConfig(port=0),
            store=StoreConfig(backend="sqlite", sqlite_path=str(tmp_path / "asyncflow.db")),
            cache=CacheConfig(backend="memory"),
            governance=NO_GOVERNANCE,
            http=HTTP,
        )
    reset_mysql(mysql_database)
    return Config(
        server=ServerConfig(port=0),
        store=mysql_store_config(mysql_database, mysql_pool_max=40),
        cache=CacheConfig(backend="redis", redis_url=REDIS_URL, key_prefix=redis_prefix),
        governance=NO_GOVERNANCE,
        http=HTTP,
    )


def serve_env(config: Config, **settings: str) -> dict[str, str]:
    """The environment of an `asyncflow serve` subprocess on the MariaDB database and
    Redis prefix of `config` (the `config` fixture's, mysql backend), its HTTP side
    on a free port, plus `settings` (ASYNCFLOW_* variables). None of this
    process's own ASYNCFLOW_* variables leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    env.update(
        {
            "ASYNCFLOW_HTTP_PORT": "0",  # several may run at once
            "ASYNCFLOW_STORE_BACKEND": "mysql",
            "ASYNCFLOW_STORE_MYSQL_HOST": MYSQL["host"],
            "ASYNCFLOW_STORE_MYSQL_PORT": str(MYSQL["port"]),
            "ASYNCFLOW_STORE_MYSQL_USER": MYSQL["user"],
            "ASYNCFLOW_STORE_MYSQL_PASSWORD": MYSQL["password"],
            "ASYNCFLOW_STORE_MYSQL_DATABASE": config.store.mysql_database,
            "ASYNCFLOW_CACHE_BACKEND": "redis",
            "ASYNCFLOW_CACHE_REDIS_URL": REDIS_URL,
            "ASYNCFLOW_CACHE_KEY_PREFIX": config.cache.key_prefix,
            **settings,
        }
    )
    return env


@dataclass
class Running:
    """A server started by a test, with a channel and stub connected to it."""

    server: AsyncflowServer
    channel: grpc.aio.Channel
    stub: pb_grpc.TaskServiceStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


StartServer = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_server(clock: ManualClock) -> AsyncIterator[StartServer]:
    """Start servers on port 0 (the test's clock by default); all stopped at the end."""
    running: list[Running] = []

    async def start(config: Config, clock_: AlarmClock | None = None, **overrides: Any) -> Running:
        server = await AsyncflowServer.start(
            replace(config, **overrides) if overrides else config,
            clock=clock_ or clock,
        )
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        started = Running(server, channel, pb_grpc.TaskServiceStub(channel))
        running.append(started)
        return started

    yield start
    for started in running:
        await started.channel.close()
        await started.server.stop(None)


@pytest.fixture
async def server(start_server: StartServer, config: Config) -> Running:
    return await start_server(config)


@pytest.fixture
def stub(server: Running) -> pb_grpc.TaskServiceStub:
    return server.stub


@pytest.fixture
async def web(server: Running) -> AsyncIterator[Web]:
    """A client of the test server's HTTP side."""
    assert server.server.http is not None
    async with aiohttp.ClientSession() as session:
        yield Web(server.server.http.url, session)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, to stall or kill (never the shared one)."""
    redis = PrivateRedis()
    redis.start()
    yield redis
    if redis.process is not None:
        redis.resume()
        redis.kill()


@pytest.fixture
async def proxy() -> AsyncIterator[RedisProxy]:
    """A proxy to the shared Redis that the test can stall, cutting off one replica."""
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    cut = RedisProxy(port)
    await cut.start()
    yield cut
    cut.resume()
    await cut.close()


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    """A tokens file of the test's own, with one token per role (tests/secure.py)."""
    return Tokens(tmp_path / "tokens.toml")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA of the test's own and the certificates it signs (tests/secure.py)."""
    return Pki(tmp_path)


@pytest.fixture
async def secured(start_server: StartServer, config: Config, tokens: Tokens) -> Running:
    """A server with [auth] on, reading `tokens`."""
    return await start_server(replace(config, auth=tokens.auth()))
