"""Certificates, tokens and secure channels for the security tests.

Certificates are made by trustme in each test's tmp_path (no key in the
repository); tokens by the same functions as `asyncflow token create`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import trustme

from asyncflow.config import AuthConfig, Config, ServerConfig
from asyncflow.server.auth.tokens import new_token, token_entry
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

ROLES = ("producer", "worker", "reader", "admin")


@dataclass
class Pki:
    """A CA, the server's certificate and key, written to files."""

    root: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.ca_file = self.write("ca.pem", self.ca.cert_pem.bytes())
        self.cert_file, self.key_file = self.issue("server", "localhost", "127.0.0.1")

    def write(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        return str(path)

    def issue(self, name: str, *identities: str, common_name: str | None = None,
              not_after: datetime.datetime | None = None) -> tuple[str, str]:  # fmt: skip
        """A certificate for `identities` (SANs) signed by this CA: (cert file, key file)."""
        cert = self.ca.issue_cert(*identities, common_name=common_name, not_after=not_after)
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return (
            self.write(f"{name}.pem", chain),
            self.write(f"{name}-key.pem", cert.private_key_pem.bytes()),
        )

    def take_server_certificate(self, other: Pki) -> None:
        """Write `other`'s server certificate and key over ours (a rotation)."""
        Path(self.cert_file).write_bytes(Path(other.cert_file).read_bytes())
        Path(self.key_file).write_bytes(Path(other.key_file).read_bytes())

    def server(self, config: Config, *, mutual: bool = False) -> Config:
        tls = ServerConfig(
            port=0,
            tls_cert_file=self.cert_file,
            tls_key_file=self.key_file,
            tls_client_ca_file=self.ca_file if mutual else "",
        )
        return replace(config, server=tls)


@dataclass
class Tokens:
    """A tokens file with one token per role (and more added by tests)."""

    path: Path
    tokens: dict[str, str] = field(default_factory=dict)
    entries: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for role in ROLES:
            self.add(role, [role])

    def add(self, name: str, roles: list[str], types: list[str] = ()) -> str:  # type: ignore[assignment]
        token = new_token()
        self.tokens[name] = token
        self.entries.append(token_entry(name, token, roles, types))
        self.save()
        return token

    def certificate(self, subject: str, roles: list[str]) -> None:
        roles_list = ", ".join(f'"{r}"' for r in roles)
        self.entries.append(f'[[certificate]]\nsubject = "{subject}"\nroles = [{roles_list}]\n')
        self.save()

    def save(self) -> None:
        self.path.write_text("\n".join(self.entries))

    def auth(self, **settings: object) -> AuthConfig:
        return AuthConfig(enabled=True, tokens_file=str(self.path), **settings)  # type: ignore[arg-type]


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def channel(port: int, pki: Pki | None = None, *, cert: tuple[str, str] | None = None,
            token: str | None = None) -> grpc.aio.Channel:  # fmt: skip
    """A raw channel to a test server: plaintext, or TLS with `pki`'s CA (and a client
    certificate), with a token sent on every call."""
    calls = grpc.access_token_call_credentials(token) if token else None
    if pki is None:
        if calls is None:
            return grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        transport = grpc.local_channel_credentials()
    else:
        key = Path(cert[1]).read_bytes() if cert else None
        chain = Path(cert[0]).read_bytes() if cert else None
        transport = grpc.ssl_channel_credentials(Path(pki.ca_file).read_bytes(), key, chain)
    credentials = grpc.composite_channel_credentials(transport, calls) if calls else transport
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials)


def stub(channel: grpc.aio.Channel) -> pb_grpc.TaskServiceStub:
    return pb_grpc.TaskServiceStub(channel)
