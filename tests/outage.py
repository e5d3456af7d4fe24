"""A database that cannot serve, for one test.

SQLite: another connection holds the file's write lock (BEGIN EXCLUSIVE) past
the server's short busy_timeout. MariaDB: the server reaches the real MariaDB
through a TCP proxy that the test cuts (open connections dropped, new ones
refused), then restores; the shared MariaDB itself is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace

from conftest import MYSQL

from asyncflow.config import Config


class CuttableProxy:
    """Forwards TCP connections to an upstream server until cut."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        """Listen (on the same port again after a cut)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers |= {writer, up_writer}
        pipes = [asyncio.create_task(_pipe(reader, up_writer)),
                 asyncio.create_task(_pipe(up_reader, writer))]  # fmt: skip
        self._pipes.update(pipes)
        for pipe in pipes:
            pipe.add_done_callback(self._pipes.discard)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


Outage = Callable[[], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def database_outage(backend: str, config: Config) -> AsyncIterator[tuple[Config, Outage]]:
    """The server's config, and a context in which its database cannot serve
    (a test's `outage` fixture enters this)."""
    if backend == "sqlite":
        path = config.store.sqlite_path

        @asynccontextmanager
        async def locked() -> AsyncIterator[None]:
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("PRAGMA busy_timeout = 50")
                other.execute("BEGIN EXCLUSIVE")
                yield
                other.execute("ROLLBACK")
            finally:
                other.close()

        yield replace(config, store=replace(config.store, sqlite_busy_timeout_ms=50)), locked
        return
    proxy = CuttableProxy(MYSQL["host"], MYSQL["port"])
    await proxy.start()

    @asynccontextmanager
    async def cut() -> AsyncIterator[None]:
        await proxy.cut()
        yield
        await proxy.start()

    try:
        yield replace(config, store=replace(config.store, mysql_port=proxy.port)), cut
    finally:
        await proxy.close()
