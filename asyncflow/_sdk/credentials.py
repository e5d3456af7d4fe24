"""A channel's credentials from its settings: TLS (and mutual TLS), and a token.

The token goes as gRPC call credentials (`authorization: Bearer <token>`),
which gRPC sends only on a channel that protects it: TLS, or a connection that
never leaves the machine (local credentials: loopback TCP or a Unix socket). To
a remote plaintext address a token is refused here, rather than sent in clear.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from asyncflow._sdk.channel import ChannelSettings

LOCAL_NAMES = ("localhost", "localhost.localdomain")


def channel_credentials(target: str, settings: ChannelSettings) -> grpc.ChannelCredentials | None:
    """None: a plaintext channel without a token (the default)."""
    token = grpc.access_token_call_credentials(settings.token) if settings.token else None
    if settings.secure:
        transport = grpc.ssl_channel_credentials(
            root_certificates=_read(settings.tls_ca_file, "tls_ca_file"),
            private_key=_read(settings.tls_key_file, "tls_key_file"),
            certificate_chain=_read(settings.tls_cert_file, "tls_cert_file"),
        )
    elif token is None:
        return None
    elif target.startswith(("unix:", "unix-abstract:")):
        transport = grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
    elif is_loopback(target):
        transport = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        raise ValueError(
            f"a token is sent only over TLS (or to this machine), and {target!r} is a"
            " plaintext address: give tls_ca_file ($ASYNCFLOW_TLS_CA_FILE) or tls=True"
            " ($ASYNCFLOW_TLS=1)"
        )
    return grpc.composite_channel_credentials(transport, token) if token else transport


def is_loopback(target: str) -> bool:
    """Whether every address of a target is this machine (localhost, 127.x, ::1)."""
    scheme, colon, rest = target.partition(":")
    if colon and scheme in ("ipv4", "ipv6"):
        entries = rest.split(",")
    elif colon and scheme == "dns":
        entries = [rest.removeprefix("//").partition("/")[2] or rest.removeprefix("//")]
    else:
        entries = [target]
    return all(_loopback_host(entry.strip()) for entry in entries)


def _loopback_host(entry: str) -> bool:
    host = entry.rpartition(":")[0] if entry.count(":") == 1 or "]" in entry else entry
    host = host.removeprefix("[").removesuffix("]")
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: str | None, setting: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror}") from None
