"""TLS and mutual TLS on the gRPC port: plaintext refused, client certificates
checked, identities from certificates, certificates rotated without dropping streams."""

from __future__ import annotations

import datetime
import logging
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from conftest import StartServer
from rpc import error_reason
from secure import Pki, Tokens, channel, stub
from streams import RawWorker

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def ping(ch: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await stub(ch).Ping(pb.PingRequest(), timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    finally:
        await ch.close()
    return grpc.StatusCode.OK


async def test_tls_only(start_server: StartServer, config: Config, pki: Pki) -> None:
    """The port speaks TLS only: a plaintext client cannot call."""
    server = await start_server(pki.server(config))
    assert await ping(channel(server.server.port, pki)) == grpc.StatusCode.OK
    assert await ping(channel(server.server.port)) == grpc.StatusCode.UNAVAILABLE
    (pki.root / "other").mkdir()  # a client that trusts another CA
    assert await ping(channel(server.server.port, Pki(pki.root / "other"))) == (
        grpc.StatusCode.UNAVAILABLE
    )


async def test_mutual_tls_checks_the_client_certificate(
    start_server: StartServer, config: Config, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(pki.server(config, mutual=True))
    port = server.server.port
    good = pki.issue("good", "worker-1.internal", common_name="worker-1")
    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    expired = pki.issue("expired", "old.internal", common_name="old", not_after=yesterday)
    (pki.root / "other").mkdir()
    stranger = Pki(pki.root / "other").issue("stranger", "stranger.internal")
    assert await ping(channel(port, pki)) == grpc.StatusCode.UNAVAILABLE  # no certificate
    assert await ping(channel(port, pki, cert=stranger)) == grpc.StatusCode.UNAVAILABLE
    assert await ping(channel(port, pki, cert=expired)) == grpc.StatusCode.UNAVAILABLE
    assert await ping(channel(port, pki, cert=good)) == grpc.StatusCode.OK

    # Its identity is in the audit of what it does.
    caplog.set_level(logging.INFO, logger="asyncflow.audit")
    admin = channel(port, pki, cert=good)
    await stub(admin).RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"))
    await admin.close()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "asyncflow.audit"]
    assert line == "RegisterTaskType by worker-1 (certificate): OK task_type=lark"


async def test_certificate_subjects_get_roles(start_server: StartServer, config: Config,
                                              pki: Pki, tmp_path: Path) -> None:  # fmt: skip
    """With auth on, a listed certificate needs no token; an unlisted one is refused."""
    tokens = Tokens(tmp_path / "tokens.toml")
    tokens.certificate("reader.internal", ["reader"])
    server = await start_server(replace(pki.server(config, mutual=True), auth=tokens.auth()))
    port = server.server.port
    listed = pki.issue("listed", "reader.internal")
    unlisted = pki.issue("unlisted", "nobody.internal")
    reader = channel(port, pki, cert=listed)
    try:
        await stub(reader).ListTaskTypes(pb.ListTaskTypesRequest())
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub(reader).RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"))
        assert error_reason(refused.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED,
                                                   "PERMISSION_DENIED")  # fmt: skip
    finally:
        await reader.close()
    assert await ping(channel(port, pki, cert=unlisted)) == grpc.StatusCode.UNAUTHENTICATED
    # A token decides over the certificate it comes with.
    admin = channel(port, pki, cert=unlisted, token=tokens.tokens["admin"])
    try:
        await stub(admin).RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"))
    finally:
        await admin.close()


async def test_rotation_keeps_open_streams(start_server: StartServer, config: Config,
                                           pki: Pki) -> None:  # fmt: skip
    """reload() (SIGHUP) serves the new certificate to new connections; a stream
    opened before goes on working."""
    server = await start_server(pki.server(config))
    port = server.server.port
    before = channel(port, pki)
    await stub(before).RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"))
    stream = RawWorker(stub(before))
    await stream.subscribe("lark", window=1)

    # A new CA signs the new certificate: a client that trusts only the old CA
    # can no longer connect, one that trusts the new CA can.
    (pki.root / "new").mkdir()
    rotated = Pki(pki.root / "new")
    pki.take_server_certificate(rotated)
    server.server.reload()
    assert await ping(channel(port, rotated)) == grpc.StatusCode.OK
    assert await ping(channel(port, pki)) == grpc.StatusCode.UNAVAILABLE

    after = channel(port, rotated)
    await stub(after).CreateTask(pb.CreateTaskRequest(task_type="lark"))
    await after.close()
    await stream.until(tasks=1)
    await stream.report_success(stream.tasks[0])
    await stream.until(answers=1)
    (result,) = stream.answers[0].report_results.results
    assert result.task.status == pb.TASK_STATUS_SUCCESS
    await stream.close()
    await before.close()


async def test_bad_certificate_files_fail_at_start(start_server: StartServer, config: Config,
                                                   pki: Pki) -> None:  # fmt: skip
    from asyncflow.errors import ConfigError

    _, other_key = pki.issue("other", "localhost")
    mismatched = replace(pki.server(config), server=replace(pki.server(config).server,
                                                             tls_key_file=other_key))  # fmt: skip
    with pytest.raises(ConfigError, match="does not match"):
        await start_server(mismatched)
    missing = replace(config, server=replace(config.server, tls_cert_file="/nonexistent.pem",
                                             tls_key_file=pki.key_file))  # fmt: skip
    with pytest.raises(ConfigError, match=r"server\.tls_cert_file: cannot read"):
        await start_server(missing)
