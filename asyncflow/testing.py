"""Test kit: a real asyncflow server in-process, on the embedded store, port 0.

    async with EmbeddedServer() as server:
        async with Client(server.address) as client, Worker(server.address, handlers=...):
            ...

No MySQL, no Redis: SQLite in a temporary directory, an in-process cache and
lock, governance loops on (fast), so user handlers can be tested end to end.

It runs the server, so it needs the server's dependencies:
`pip install 'asyncflow[server]'` (the SDK alone does not install them).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from asyncflow._sdk.extras import needs_server

with needs_server("asyncflow.testing"):
    from asyncflow.clock import AlarmClock
    from asyncflow.config import CacheConfig, Config, ServerConfig, StoreConfig
    from asyncflow.core.governance import GovernanceSettings
    from asyncflow.server.app import AsyncflowServer

__all__ = ["EmbeddedServer"]


class EmbeddedServer:
    def __init__(self, config: Config | None = None, clock: AlarmClock | None = None) -> None:
        self._given = config
        self._clock = clock
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: AsyncflowServer | None = None

    @property
    def address(self) -> str:
        assert self._server is not None, "the server is not running"
        return f"127.0.0.1:{self._server.port}"

    @property
    def server(self) -> AsyncflowServer:
        assert self._server is not None, "the server is not running"
        return self._server

    async def __aenter__(self) -> EmbeddedServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="asyncflow-test-")
        config = self._given or Config(
            governance=GovernanceSettings(
                long_process_interval=0.5, split_interval=1.0, move_interval=1.0
            )
        )
        config = replace(
            config,
            server=ServerConfig(host="127.0.0.1", port=0),
            http=replace(config.http, host="127.0.0.1", port=0),
            store=StoreConfig(backend="sqlite", sqlite_path=str(Path(self._tmp.name) / "af.db")),
            cache=CacheConfig(backend="memory"),
        )
        self._server = await AsyncflowServer.start(config, self._clock)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop(1.0)
        if self._tmp is not None:
            self._tmp.cleanup()
