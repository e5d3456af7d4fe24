"""`asyncflow serve` with TLS and tokens, as a subprocess: the README's grpcurl
lines work, and SIGHUP reloads the tokens file and the certificate."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from secure import Pki, Tokens
from test_cli import GRPCURL, SERVICE, START_TIMEOUT, Process, serving

from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc


@pytest.fixture
def served(tmp_path: Path, pki: Pki, tokens: Tokens) -> Iterator[tuple[Process, str]]:
    with serving(
        tmp_path,
        ASYNCFLOW_SERVER_TLS_CERT_FILE=pki.cert_file,
        ASYNCFLOW_SERVER_TLS_KEY_FILE=pki.key_file,
        ASYNCFLOW_AUTH_ENABLED="true",
        ASYNCFLOW_AUTH_TOKENS_FILE=str(tokens.path),
    ) as started:
        yield started


def grpcurl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GRPCURL), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=START_TIMEOUT, check=False)  # fmt: skip


def ping(address: str, ca_file: str, token: str) -> grpc.StatusCode:
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(Path(ca_file).read_bytes()),
        grpc.access_token_call_credentials(token),
    )
    port = address.rpartition(":")[2]
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        try:
            pb_grpc.TaskServiceStub(channel).Ping(pb.PingRequest(), timeout=10)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Poll (a subprocess's reload is not observable otherwise) until true."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not reloaded in time"
        time.sleep(0.05)


def test_grpcurl_as_the_readme_shows(served: tuple[Process, str], pki: Pki, tokens: Tokens,
                                     tmp_path: Path) -> None:  # fmt: skip
    _, address = served
    port = address.rpartition(":")[2]
    target = f"localhost:{port}"
    bearer = f"authorization: Bearer {tokens.tokens['reader']}"
    listed = grpcurl(tmp_path, "-cacert", pki.ca_file, "-H", bearer, target, "list")
    assert SERVICE in listed.stdout.split(), listed.stderr
    types = grpcurl(tmp_path, "-cacert", pki.ca_file, "-H", bearer, target,
                    f"{SERVICE}/ListTaskTypes")  # fmt: skip
    assert types.returncode == 0, types.stderr
    anonymous = grpcurl(tmp_path, "-cacert", pki.ca_file, target, f"{SERVICE}/ListTaskTypes")
    assert anonymous.returncode != 0
    assert "Unauthenticated" in anonymous.stderr
    plaintext = grpcurl(tmp_path, "-plaintext", target, f"{SERVICE}/ListTaskTypes")
    assert plaintext.returncode != 0


def test_sighup_reloads_tokens_and_certificates(served: tuple[Process, str], pki: Pki,
                                                tokens: Tokens) -> None:  # fmt: skip
    process, address = served
    late = tokens.add("late", ["reader"])
    assert ping(address, pki.ca_file, late) == grpc.StatusCode.UNAUTHENTICATED
    (pki.root / "new").mkdir()
    rotated = Pki(pki.root / "new")
    pki.take_server_certificate(rotated)
    process.proc.send_signal(signal.SIGHUP)
    until(lambda: ping(address, rotated.ca_file, late) == grpc.StatusCode.OK)
    assert ping(address, pki.ca_file, late) == grpc.StatusCode.UNAVAILABLE  # the old CA
    assert any("TLS certificates reloaded" in line for line in process.lines["stderr"])
