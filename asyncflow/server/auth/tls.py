"""The gRPC port's TLS credentials, reloadable: rotation without downtime.

gRPC asks the fetcher for a new certificate configuration at each new
connection's handshake; reload() reads the files again and hands the result to
the next handshake. Open connections (and the streams on them) keep the keys
they were made with until they close.
"""

from __future__ import annotations

import logging
import ssl
import threading
from pathlib import Path

import grpc

from asyncflow.config import ServerConfig
from asyncflow.errors import ConfigError

log = logging.getLogger(__name__)


class ServerTls:
    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._initial = self._read()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        # The fetcher runs on gRPC's threads, reload() on the event loop.
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: ServerConfig) -> ServerTls | None:
        return cls(config) if config.tls_cert_file else None

    @property
    def mutual(self) -> bool:
        return bool(self._config.tls_client_ca_file)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self._fetch,  # type: ignore[arg-type]  # None means "no change" (grpc's docs)
            require_client_authentication=self.mutual,
        )

    def reload(self) -> None:
        """Read the files again for new connections; ConfigError keeps the old ones."""
        fresh = self._read()
        with self._lock:
            self._pending = fresh
        log.info("TLS certificates reloaded from %s", self._config.tls_cert_file)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            fresh, self._pending = self._pending, None
        return fresh  # None: keep the current one

    def _read(self) -> grpc.ServerCertificateConfiguration:
        config = self._config
        key = _read(config.tls_key_file, "server.tls_key_file")
        chain = _read(config.tls_cert_file, "server.tls_cert_file")
        roots = (
            _read(config.tls_client_ca_file, "server.tls_client_ca_file")
            if config.tls_client_ca_file else None
        )  # fmt: skip
        for name, pem in (("tls_key_file", key), ("tls_cert_file", chain),
                          ("tls_client_ca_file", roots)):  # fmt: skip
            if pem is not None and b"-----BEGIN " not in pem:
                raise ConfigError(f"server.{name}: not a PEM file")
        try:  # gRPC would only fail at the first handshake
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                config.tls_cert_file, config.tls_key_file
            )
        except ssl.SSLError as exc:
            raise ConfigError(
                f"server.tls_key_file: does not match server.tls_cert_file ({exc.reason})"
            ) from None
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
