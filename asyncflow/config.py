"""Configuration: one TOML file, every key overridable by ASYNCFLOW_<SECTION>_<KEY>.

Validated once at start; every error names the key (and the variable or file it
came from). The shipped config.toml runs on SQLite with an in-process cache.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncflow.core.governance import GovernanceSettings
from asyncflow.core.validate import Limits
from asyncflow.errors import ConfigError

ENV_PREFIX = "ASYNCFLOW_"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 for every interface."""
    port: int = 50051
    """0 picks a free port (printed at start)."""
    shutdown_delay_seconds: float = 5.0
    """On SIGTERM/SIGINT: how long health shows NOT_SERVING, while everything is
    still served, before streams end (so that load balancers stop routing here)."""
    grace_seconds: float = 10.0
    """Then: how long streams may take to end, and in-flight calls to finish."""
    processes: int = 1
    """Server processes sharing the gRPC port (SO_REUSEPORT, Linux), each a full
    replica under one supervising parent; more than 1 needs MySQL and Redis."""
    max_message_bytes: int = 32 * 1024 * 1024
    """Largest request/reply; a full HoldTasks batch (2000 tasks of 8 KiB) needs ~20 MiB."""
    tls_cert_file: str = ""
    """PEM certificate chain of the server: when set (with tls_key_file), the gRPC
    port serves TLS only. Reloaded on SIGHUP (new connections get the new one)."""
    tls_key_file: str = ""
    """PEM private key of tls_cert_file."""
    tls_client_ca_file: str = ""
    """PEM CA certificates: when set, clients must present a certificate signed by
    one of them (mutual TLS); its CN (else its first SAN) is the caller's identity."""


@dataclass(frozen=True)
class StoreConfig:
    backend: str = "sqlite"
    """"sqlite" (embedded, one process) or "mysql" (MySQL 8 / MariaDB 10.6+)."""
    sqlite_path: str = "data/asyncflow.db"
    sqlite_synchronous: str = "full"
    """"full": every commit is synced, so an acknowledged write survives a power
    loss. "normal": synced at WAL checkpoints only (faster; the last commits may
    be lost on power loss, never on a process crash)."""
    sqlite_busy_timeout_ms: int = 5000
    """How long a write waits for another process's lock on the file before the
    call fails with UNAVAILABLE."""
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: str = ""
    mysql_database: str = "asyncflow"
    """Created if missing."""
    mysql_pool_min: int = 1
    mysql_pool_max: int = 20
    mysql_tls_ca_file: str = ""
    """PEM CA of the MySQL server's certificate: when set, every connection uses TLS
    and checks the server's certificate and name (no plaintext fallback)."""
    mysql_tls_cert_file: str = ""
    """PEM client certificate, for a MySQL user that REQUIRE X509."""
    mysql_tls_key_file: str = ""


@dataclass(frozen=True)
class CacheConfig:
    backend: str = "memory"
    """"memory" (in-process), "redis" (shared by replicas) or "none"."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "asyncflow:"
    ttl_seconds: int = 3 * 86_400
    memory_max_entries: int = 100_000
    redis_max_connections: int = 64
    """Connections to Redis per process, shared by the cache, locks and wake-ups
    (whose subscription keeps one); beyond them a call waits for a free one."""
    redis_wait_seconds: float = 1.0
    """Longest wait for a free connection before the call fails."""
    redis_timeout_seconds: float = 0.5
    """Connect and read timeout of one Redis call."""
    redis_lease_seconds: float = 2.0
    """A replica's presence lease in Redis (see docs/semantics.md, Cache): a write
    whose cache update failed returns at most this long after the failure."""
    redis_probe_seconds: float = 1.0
    """While Redis is unreachable, how often it is tried again."""


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP side: /healthz, /readyz, /metrics, the original's /v1 routes, /ui."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """Interface to listen on. Plain HTTP: with [auth] on it asks for tokens, but
    keep it on loopback or behind a TLS proxy (docs/security.md)."""
    port: int = 8080
    """0 picks a free port (printed at start)."""
    queue_depth_interval_seconds: float = 30.0
    """How often this process counts tasks by type and status (asyncflow_queue_depth
    and the dashboard's counts): they are at most this much (plus one count) old."""


@dataclass(frozen=True)
class AuthConfig:
    """Who may call what: tokens (or client certificates) with roles (docs/security.md)."""

    enabled: bool = False
    """Every TaskService call needs a known token (`authorization: Bearer ...`) or
    a client certificate listed in tokens_file; its roles decide what it may call."""
    tokens_file: str = ""
    """TOML file of token hashes and certificate subjects with their roles
    (`asyncflow token create` prints entries). Reloaded on SIGHUP."""
    reflection: str = "authenticated"
    """Server reflection: "open" to anyone, "authenticated" (any known caller), "off"."""
    metrics_open: bool = False
    """The HTTP /metrics without a token (for a Prometheus that sends none)."""


@dataclass(frozen=True)
class QuotaConfig:
    """Limits per caller (token name, certificate subject, else peer address), counted
    by each replica on its own; 0 turns a limit off."""

    calls_per_second: float = 0.0
    """Sustained TaskService calls per second per caller (a token bucket); a stream
    counts once, when it opens. Over it: RESOURCE_EXHAUSTED with a retry delay."""
    burst: int = 0
    """Calls a caller may make at once after a quiet spell (0: calls_per_second,
    at least 1)."""
    streams: int = 0
    """Open WorkTasks streams per caller."""


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    format: str = "text"
    """"text" for people, "json" for log collectors."""


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    limits: Limits = field(default_factory=Limits)
    governance: GovernanceSettings = field(default_factory=GovernanceSettings)
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    quota: QuotaConfig = field(default_factory=QuotaConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "store.backend": ("sqlite", "mysql"),
    "store.sqlite_synchronous": ("full", "normal"),
    "cache.backend": ("memory", "redis", "none"),
    "log.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "log.format": ("text", "json"),
    "governance.lock_backend": ("auto", "redis", "local"),
    "auth.reflection": ("open", "authenticated", "off"),
}
RANGES: dict[str, tuple[float, float]] = {
    "server.port": (0, 65535),
    "server.shutdown_delay_seconds": (0, 3600),
    "server.grace_seconds": (0, 3600),
    "server.processes": (1, 256),
    "server.max_message_bytes": (1024, 1 << 30),
    "http.port": (0, 65535),
    "http.queue_depth_interval_seconds": (1, 86_400),
    "store.sqlite_busy_timeout_ms": (0, 600_000),
    "store.mysql_port": (1, 65535),
    "store.mysql_pool_min": (1, 1000),
    "store.mysql_pool_max": (1, 1000),
    "cache.ttl_seconds": (1, 365 * 86_400),
    "cache.memory_max_entries": (1, 1 << 30),
    "cache.redis_max_connections": (2, 10_000),
    "cache.redis_wait_seconds": (0.001, 60),
    "cache.redis_timeout_seconds": (0.001, 60),
    "cache.redis_lease_seconds": (0.1, 600),
    "cache.redis_probe_seconds": (0.01, 600),
    "limits.max_hold_limit": (1, 100_000),
    "limits.max_context_bytes": (1, 16 * 1024 * 1024),
    "limits.max_page_size": (1, 100_000),
    "limits.default_page_size": (1, 100_000),
    "limits.max_reply_bytes": (4096, 1 << 30),
    "governance.long_process_interval": (0.001, 86_400),
    "governance.split_interval": (0.001, 86_400),
    "governance.move_interval": (0.001, 86_400),
    "governance.retention_interval": (0.001, 86_400),
    "governance.table_max_rows": (1, 1_000_000_000),
    "governance.recover_batch": (1, 100_000),
    "governance.retention_days": (0, 36_500),
    "governance.lock_ttl_seconds": (0.1, 3600),
    "governance.cron_interval": (0.001, 3600),
    "governance.cron_misfire_seconds": (1, 86_400),
    "quota.calls_per_second": (0, 1_000_000),
    "quota.burst": (0, 1_000_000),
    "quota.streams": (0, 1_000_000),
}


def _coerce(key: str, value: Any, default: Any, source: str, *, text: bool = False) -> Any:
    """Check `value` against the type of the default; `text` values (from the
    environment) are parsed, TOML values must already have the right type."""
    kind = type(default)
    if text and kind is not str:
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                return value.lower() in ("true", "1")
            return kind(value)
        except ValueError:
            raise ConfigError(
                f"{key} ({source}): expected {kind.__name__}, got {value!r}"
            ) from None
    if kind is float and type(value) is int:
        return float(value)
    if type(value) is not kind:
        raise ConfigError(
            f"{key} ({source}): expected {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _check(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key}: must be one of {', '.join(CHOICES[key])}, got {value!r}")
    if key in RANGES:
        low, high = RANGES[key]
        if not low <= value <= high:
            raise ConfigError(f"{key}: must be in [{low:g}, {high:g}], got {value!r}")


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file (if any), then ASYNCFLOW_* variables."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for name in data:
        if name not in sections or not isinstance(data[name], dict):
            raise ConfigError(f"{name}: unknown section in {source}")
    built: dict[str, Any] = {}
    defaults = Config()
    for name in sections:
        section_type = getattr(defaults, name)
        given = data.get(name, {})
        values: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(section_type)}
        for key in given:
            if key not in known:
                raise ConfigError(f"{name}.{key}: unknown key in {source}")
        for key in known:
            full = f"{name}.{key}"
            default = getattr(section_type, key)
            value = default
            if key in given:
                value = _coerce(full, given[key], default, source)
            env_name = f"{ENV_PREFIX}{name}_{key}".upper()
            if env_name in environ:
                value = _coerce(full, environ[env_name], default, env_name, text=True)
            _check(full, value)
            values[key] = value
        built[name] = type(section_type)(**values)
    prefixes = tuple(f"{ENV_PREFIX}{name}_".upper() for name in sections)
    known_env = {f"{ENV_PREFIX}{n}_{f.name}".upper() for n in sections
                 for f in dataclasses.fields(getattr(defaults, n))}  # fmt: skip
    for env_name in environ:
        if env_name.startswith(prefixes) and env_name not in known_env:
            raise ConfigError(f"{env_name}: unknown configuration variable (misspelt key?)")
    config = Config(**built)
    if config.governance.lock_backend == "redis" and config.cache.backend != "redis":
        raise ConfigError("governance.lock_backend: redis locks need cache.backend = redis")
    if config.cache.redis_lease_seconds < 3 * config.cache.redis_timeout_seconds:
        raise ConfigError(
            "cache.redis_lease_seconds: must be at least 3 x cache.redis_timeout_seconds"
        )
    if config.store.mysql_pool_min > config.store.mysql_pool_max:
        raise ConfigError("store.mysql_pool_min: must not exceed store.mysql_pool_max")
    check_security(config)
    check_processes(config)
    return config


def check_processes(config: Config) -> None:
    """Several processes are replicas of one another: they must share the store,
    the cache, the locks and the wake-ups, which only MySQL and Redis can."""
    processes = config.server.processes
    _check("server.processes", processes)
    if processes == 1:
        return
    if config.store.backend != "mysql" or config.cache.backend != "redis":
        raise ConfigError(
            f"server.processes: {processes} processes need store.backend = mysql and"
            f" cache.backend = redis (they are replicas sharing the store, the cache and"
            f" the wake-ups); got store.backend = {config.store.backend}, cache.backend ="
            f" {config.cache.backend}"
        )
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        # Elsewhere SO_REUSEPORT does not spread connections over the processes.
        raise ConfigError("server.processes: several processes need Linux (SO_REUSEPORT)")
    if config.http.enabled and config.http.port and config.http.port + processes - 1 > 65535:
        raise ConfigError(
            f"http.port: process i serves HTTP on http.port + i, and {config.http.port}"
            f" + {processes - 1} is past 65535"
        )


def check_security(config: Config) -> None:
    """The TLS and auth keys that only make sense together."""
    server = config.server
    if bool(server.tls_cert_file) != bool(server.tls_key_file):
        raise ConfigError("server.tls_cert_file: set it together with server.tls_key_file")
    store = config.store
    if bool(store.mysql_tls_cert_file) != bool(store.mysql_tls_key_file):
        raise ConfigError("store.mysql_tls_cert_file: set it together with mysql_tls_key_file")
    if store.mysql_tls_cert_file and not store.mysql_tls_ca_file:
        raise ConfigError("store.mysql_tls_cert_file: TLS to MySQL needs mysql_tls_ca_file")
    if server.tls_client_ca_file and not server.tls_cert_file:
        raise ConfigError("server.tls_client_ca_file: mutual TLS needs server.tls_cert_file")
    if config.auth.enabled and not config.auth.tokens_file:
        raise ConfigError("auth.tokens_file: auth.enabled needs a tokens file")
