"""The HTTP listener and its probes: /healthz, /readyz, started and drained with the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from conftest import Running, StartServer
from outage import Outage, database_outage
from waiting import eventually
from webclient import Web

from asyncflow.config import Config
from asyncflow.core.ports import NoMetrics
from asyncflow.errors import ConfigError


@pytest.fixture
async def outage(backend: str, config: Config) -> AsyncIterator[tuple[Config, Outage]]:
    async with database_outage(backend, config) as prepared:
        yield prepared


async def test_healthz_and_readyz_answer_while_serving(web: Web) -> None:
    assert await web.get_json("/healthz") == {"status": "alive"}
    assert await web.get_json("/readyz") == {"ready": True}


async def test_readyz_turns_false_while_the_database_is_unreachable(
    start_server: StartServer, outage: tuple[Config, Outage]
) -> None:
    config, database_down = outage
    running = await start_server(config)
    assert running.server.http is not None
    async with aiohttp.ClientSession() as session:
        web = Web(running.server.http.url, session)
        assert await web.get_json("/readyz") == {"ready": True}
        async with database_down():
            status, body = await web.get("/readyz")
            assert status == 503
            assert "the store is unavailable" in body
            # Liveness is not readiness: the process itself is fine.
            assert await web.get_json("/healthz") == {"status": "alive"}

        async def ready() -> bool:
            return (await web.get("/readyz"))[0] == 200

        await eventually(ready, what="/readyz ready again after the outage")


async def test_readyz_is_false_once_shutdown_is_announced(server: Running, web: Web) -> None:
    await server.server.announce_shutdown()
    status, body = await web.get("/readyz")
    assert (status, "shutting down" in body) == (503, True)
    assert await web.get_json("/healthz") == {"status": "alive"}  # still served until stop()


async def test_stop_closes_the_listener(start_server: StartServer, config: Config) -> None:
    running = await start_server(config)
    assert running.server.http is not None
    url = running.server.http.url
    await running.server.stop(None)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url + "/healthz")


async def test_a_taken_port_is_a_config_error_naming_the_key(
    start_server: StartServer, config: Config
) -> None:
    first = await start_server(config)
    assert first.server.http is not None
    port = int(first.server.http.url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match=r"http\.port"):
        await start_server(replace(config, http=replace(config.http, port=port)))


async def test_http_off_serves_grpc_alone(start_server: StartServer, config: Config) -> None:
    running = await start_server(replace(config, http=replace(config.http, enabled=False)))
    assert running.server.http is None
    assert isinstance(running.server.core.metrics, NoMetrics)
