"""Keepalive pings keep idle connections open, and the server accepts them: without
its keepalive settings (asyncflow/server/app.py) it would answer the third ping on
a connection without calls with GOAWAY too_many_pings, and drop it."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import Running

from asyncflow._sdk.channel import Route, channel_options
from asyncflow.client import ChannelSettings
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

OFTEN = ChannelSettings(keepalive_time=10)
"""The most frequent pings the SDK allows."""
QUIET = 35.0
"""Seconds without a call: three pings and some."""


@pytest.mark.parametrize("backend", ["sqlite"])  # the store plays no part
async def test_an_idle_connection_outlives_three_pings(server: Running) -> None:
    """A producer's channel (a SyncClient's, as its options are the SDK's own)."""
    states: list[grpc.ChannelConnectivity] = []
    idle = grpc.insecure_channel(server.address, options=channel_options(Route.REPEATABLE, OFTEN))
    idle.subscribe(states.append)
    try:
        ping = pb_grpc.TaskServiceStub(idle).Ping
        await asyncio.to_thread(ping, pb.PingRequest(), timeout=10)
        # The scenario is time passing without a call: nothing to synchronise with.
        await asyncio.sleep(QUIET)
        ready = grpc.ChannelConnectivity.READY
        assert states[states.index(ready) :] == [ready]  # connected once, never dropped
        await asyncio.to_thread(ping, pb.PingRequest(), timeout=10)
    finally:
        idle.close()
