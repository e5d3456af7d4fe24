"""Limits per caller: call rate and open streams answer RESOURCE_EXHAUSTED (with a
retry delay) and let the caller in again once the window has passed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from conftest import StartServer
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rpc import error_reason
from secure import Tokens, bearer
from streams import RawWorker
from waiting import eventually

from asyncflow.config import Config, QuotaConfig
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert [detail.Unpack(retry) for detail in status.details] == [False, True]
    return retry.retry_delay.ToNanoseconds() / 1e9


async def test_call_rate_per_caller(start_server: StartServer, config: Config,
                                    tmp_path: Path) -> None:  # fmt: skip
    tokens = Tokens(tmp_path / "tokens.toml")
    quota = QuotaConfig(calls_per_second=20, burst=2)
    server = await start_server(replace(config, auth=tokens.auth(), quota=quota))
    reader, producer = bearer(tokens.tokens["reader"]), bearer(tokens.tokens["producer"])
    stub = server.stub
    # Over plaintext loopback: the raw stub sends the metadata itself.
    for _ in range(2):
        await stub.Ping(pb.PingRequest(), metadata=reader)
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await stub.Ping(pb.PingRequest(), metadata=reader)
    assert error_reason(limited.value) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", "")
    assert 0 < retry_delay(limited.value) <= 1 / 20
    await stub.Ping(pb.PingRequest(), metadata=producer)  # another caller: its own bucket

    async def let_in() -> bool:
        try:
            await stub.Ping(pb.PingRequest(), metadata=reader)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            return False
        return True

    await eventually(let_in, within=10, what="the reader let in again")


async def test_open_streams_per_caller(start_server: StartServer, config: Config) -> None:
    """Without auth, callers are told apart by address (all of these are one)."""
    server = await start_server(replace(config, quota=QuotaConfig(streams=1)))
    stub: pb_grpc.TaskServiceStub = server.stub
    await stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"))
    first = RawWorker(stub)
    await first.subscribe("lark", window=1)
    second = RawWorker(stub)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await second.subscribe("lark", window=1)
    assert error_reason(refused.value) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_STREAMS",
        "",
    )
    second.cancel()
    await first.close()
    assert await first.ended() is None

    async def opens() -> bool:
        stream = RawWorker(stub)
        try:
            await stream.subscribe("lark", window=1)
        except grpc.aio.AioRpcError as error:
            stream.cancel()
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            return False
        await stream.close()
        return True

    await eventually(opens, within=10, what="a stream once the first one closed")
