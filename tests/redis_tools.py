"""Redis that fails on purpose, without touching the shared one.

PrivateRedis: a redis-server of the test's own on a free port, to kill,
stall (SIGSTOP) or restart. RedisProxy: a TCP proxy in front of any Redis
that a test stalls and resumes, to cut one replica off while the others
still reach Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from asyncflow.cache.connection import SharedPool, open_pool
from asyncflow.cache.redis import RedisTaskCache
from asyncflow.config import CacheConfig

# Short enough for tests to wait out a lease; lease >= 3 x timeout (config rule).
FAST = {
    "redis_timeout_seconds": 0.2,
    "redis_lease_seconds": 0.6,
    "redis_probe_seconds": 0.05,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: object, what: str, timeout: float = 10.0) -> None:
    """Poll a synchronous condition (a process starting) until a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class PrivateRedis:
    """A redis-server of the test's own, so stopping it disturbs no other test.

    With `directory`, it saves its data there (SAVE) and loads it on start, as
    a Redis with persistence does after a restart."""

    def __init__(self, directory: Path | None = None) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        persistence = ["--save", "", "--appendonly", "no"]
        if self.directory is not None:
            persistence += ["--dir", str(self.directory), "--dbfilename", "dump.rdb"]
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, "private redis-server")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stall(self) -> None:
        """Freeze the process: connections stay open, nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None


class RedisProxy:
    """Forwards TCP to a Redis until stalled: then bytes stop flowing both ways
    (new connections are accepted and hang), as in a network partition. What
    was sent meanwhile arrives late after `resume()`, as TCP would deliver it."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        await self._flowing.wait()
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self._target_port)
        for source, sink in ((client_in, server_out), (server_in, client_out)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        for pump in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError):
                await pump


async def open_cache(
    url: str, prefix: str, *, start: bool = True, **settings: float
) -> tuple[RedisTaskCache, SharedPool]:
    """A RedisTaskCache as the server builds one (FAST timings unless overridden)."""
    config = CacheConfig(backend="redis", redis_url=url, key_prefix=prefix, **{**FAST, **settings})  # type: ignore[arg-type]
    pool = open_pool(config)
    cache = RedisTaskCache(
        pool,
        key_prefix=prefix,
        ttl_seconds=60,
        lease_seconds=config.redis_lease_seconds,
        probe_seconds=config.redis_probe_seconds,
    )
    if start:
        await cache.start()
    return cache, pool
