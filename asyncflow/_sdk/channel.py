"""Every gRPC channel the SDK opens: the target, the service config, keepalive, sizes.

Client, SyncClient and Worker all open their channels here, so that they take
the same address forms and settings (and, later, the same credentials):

- `host:port`, or any gRPC target string (`dns:///name:port`, `ipv4:a:p,b:p`,
  `ipv6:[::1]:p`, `unix:/path`): given to gRPC as it is;
- `host1:port,host2:port` (a list without a scheme): a static list of
  replicas, as an `ipv4:` (or `ipv6:`) target. Names in it are looked up once,
  when the channel opens; for names whose addresses change, give one DNS name
  instead (`dns:///name:port`), which gRPC looks up again when connections fail.

Each channel spreads its calls over every address with gRPC's `round_robin`
policy. What a channel retries is in its service config, chosen by its Route:
calls safe to repeat go on a channel that retries UNAVAILABLE with jittered
exponential back-off within the call's deadline; a create without an
idempotency key goes on a channel that never repeats a call the server may have
received (gRPC's transparent retry of a call that never left the client still
applies). A service config is per method, not per call, hence two channels.

Credentials (TLS, a token) are set here too (asyncflow._sdk.credentials):
open_sync/open_aio are the only places that make a channel. Each setting comes
from its argument, else from its ASYNCFLOW_* environment variable (ENV below),
read when the settings are made.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import grpc

from asyncflow._sdk.credentials import channel_credentials
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["TaskService"].full_name

SERVER_MIN_PING_INTERVAL = 10.0
"""The most frequent keepalive ping the server accepts (asyncflow/server/app.py):
pings sent more often than that get the connection closed (too_many_pings)."""

MAX_ATTEMPTS = 5
"""gRPC caps a retry policy's attempts at 5."""

SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


@dataclass(frozen=True)
class ChannelSettings:
    """How the SDK's channels connect, keep connections alive and retry."""

    keepalive_time: float = 30.0
    """Seconds between HTTP/2 pings on each connection, also while no call is
    active: load balancers and NATs see traffic on an idle WorkTasks stream or an
    idle producer connection and keep it open, and a dead peer is noticed. At
    least SERVER_MIN_PING_INTERVAL (10 s), or the server closes the connection."""
    keepalive_timeout: float = 10.0
    """Seconds a ping may go unanswered before the connection counts as dead."""
    idle_timeout: float = 1800.0
    """Seconds without any call after which a channel lets its connections go
    (the next call connects again)."""
    max_message_bytes: int = 32 * 1024 * 1024
    """Largest message sent or received (the server's default limit)."""
    wait_for_ready: bool = True
    """Producer calls wait, within their deadline, for a replica to be reachable
    (one restarting, say) instead of failing at once. Safe for every call: a call
    that waits has not been sent. Workers never wait: they reconnect by themselves."""
    retry_attempts: int = MAX_ATTEMPTS
    """Most attempts of a call safe to repeat (1 turns retries off; gRPC allows 5)."""
    retry_initial_backoff: float = 0.1
    """Seconds; the n-th retry waits min(initial * multiplier**(n-1), max), give
    or take 20 % (gRPC's jitter), unless the server pushes back with a delay."""
    retry_max_backoff: float = 5.0
    retry_backoff_multiplier: float = 2.0
    token: str | None = field(default=None, repr=False)
    """Sent as `authorization: Bearer <token>` on every call (the server's [auth]);
    None: $ASYNCFLOW_TOKEN. Sent only over TLS, or to a server on this machine."""
    tls: bool | None = None
    """TLS to the server. None: on when any tls_* setting (or $ASYNCFLOW_TLS=1) is
    given (see `secure`)."""
    tls_ca_file: str | None = None
    """PEM CA certificates that signed the server's certificate; None:
    $ASYNCFLOW_TLS_CA_FILE, else the system's roots."""
    tls_cert_file: str | None = None
    """PEM client certificate for mutual TLS; None: $ASYNCFLOW_TLS_CERT_FILE."""
    tls_key_file: str | None = None
    """PEM key of tls_cert_file; None: $ASYNCFLOW_TLS_KEY_FILE."""
    tls_server_name: str | None = None
    """The name to expect in the server's certificate, when the address does not
    carry it (an IP address, a list); None: $ASYNCFLOW_TLS_SERVER_NAME."""

    _tls_from_env: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def secure(self) -> bool:
        """Whether the channels use TLS."""
        if self.tls is not None:
            return self.tls
        files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file, self.tls_server_name)
        return self._tls_from_env or any(files)

    def __post_init__(self) -> None:
        for name, variable in ENV.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, os.environ.get(variable) or None)
        flag = os.environ.get("ASYNCFLOW_TLS", "").lower() in ("1", "true")
        object.__setattr__(self, "_tls_from_env", flag)
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together (mutual TLS)")
        if self.keepalive_time < SERVER_MIN_PING_INTERVAL:
            raise ValueError(
                f"keepalive_time must be at least {SERVER_MIN_PING_INTERVAL:g} seconds"
                f" (the server refuses more frequent pings), got {self.keepalive_time!r}"
            )
        if not 1 <= self.retry_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"retry_attempts must be in [1, {MAX_ATTEMPTS}]")
        positive = ("keepalive_timeout", "idle_timeout", "retry_initial_backoff",
                    "retry_max_backoff")  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.retry_backoff_multiplier < 1 or self.max_message_bytes < 1024:
            raise ValueError("retry_backoff_multiplier must be >= 1, max_message_bytes >= 1024")


ENV = {
    "token": "ASYNCFLOW_TOKEN",
    "tls_ca_file": "ASYNCFLOW_TLS_CA_FILE",
    "tls_cert_file": "ASYNCFLOW_TLS_CERT_FILE",
    "tls_key_file": "ASYNCFLOW_TLS_KEY_FILE",
    "tls_server_name": "ASYNCFLOW_TLS_SERVER_NAME",
}
"""The environment variable of each credential setting left to None."""


class Route(enum.Enum):
    """Which channel a call goes on: what its service config lets gRPC do with it."""

    REPEATABLE = "repeatable"
    """A producer call safe to repeat: retried on UNAVAILABLE."""
    ONCE = "once"
    """A create without an idempotency key: never repeated once it may have been sent."""
    WORKER = "worker"
    """A worker's calls and streams: the worker retries by itself, within a lease."""
    STREAM = "stream"
    """Like WORKER, but connected to the first reachable replica of its list (one
    stream per replica: see stream_targets)."""


REPEATABLE_METHODS = (
    "RegisterTaskType", "CreateTask", "CreateTasks", "GetTask", "ListTasks",
    "ListTaskTypes", "CountTasks", "Ping", "CancelTask", "CancelTasks", "PauseTaskType",
    "ResumeTaskType", "UpdateSchedule", "ListSchedules", "PauseSchedule", "ResumeSchedule",
)  # fmt: skip
"""Methods the REPEATABLE channel retries. Creates go on it only with a key on
every task (a repeat then returns the first task); RegisterTaskType sets the
same values again; a repeated cancel finds the task cancelled and returns it,
a repeated pause, resume or schedule update changes nothing more; the rest only
read. RetryTask, CreateSchedule and DeleteSchedule go on ONCE: a repeat would
be refused."""


def service_config(route: Route, settings: ChannelSettings) -> dict[str, Any]:
    policy = "pick_first" if route is Route.STREAM else "round_robin"
    config: dict[str, Any] = {"loadBalancingConfig": [{policy: {}}]}
    if route in (Route.WORKER, Route.STREAM):
        return config
    methods: dict[str, Any] = {
        "name": [{"service": SERVICE, "method": name} for name in REPEATABLE_METHODS]
        if route is Route.REPEATABLE
        else [{"service": SERVICE}],
        "waitForReady": settings.wait_for_ready,
    }
    if route is Route.REPEATABLE and settings.retry_attempts > 1:
        methods["retryPolicy"] = {
            "maxAttempts": settings.retry_attempts,
            "initialBackoff": f"{settings.retry_initial_backoff:.3f}s",
            "maxBackoff": f"{settings.retry_max_backoff:.3f}s",
            "backoffMultiplier": settings.retry_backoff_multiplier,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    config["methodConfig"] = [methods]
    return config


def channel_options(route: Route, settings: ChannelSettings) -> list[tuple[str, Any]]:
    return [
        ("grpc.service_config", json.dumps(service_config(route, settings))),
        # Ours, never one published in DNS TXT records.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", round(settings.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", round(settings.keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # By default gRPC stops pinging after 2 pings without data: an idle stream
        # would then go quiet, and a load balancer would cut it.
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.client_idle_timeout_ms", round(settings.idle_timeout * 1000)),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # A call is retried only while its request is still buffered (256 KiB by
        # default): keep a whole create_many.
        ("grpc.per_rpc_retry_buffer_size", settings.max_message_bytes),
        # Connections are this channel's own, never shared through gRPC's global
        # subchannel pool: a process forked after using the client then opens
        # fresh connections instead of writing on its parent's sockets.
        ("grpc.use_local_subchannel_pool", 1),
        *([("grpc.ssl_target_name_override", settings.tls_server_name)]
          if settings.tls_server_name else []),
    ]  # fmt: skip


def is_list(address: str) -> bool:
    """A comma-separated list of replicas without a scheme (`a:1,b:2`)."""
    return "," in address and not address.startswith(SCHEMES)


def replica_count(address: str) -> int:
    """How many replicas an address names (1 unless it is a list)."""
    return len(_entries(address)) if is_list(address) else 1


def grpc_target(address: str) -> str:
    """The gRPC target for an address; a list's names are looked up (blocking)."""
    address = address.strip()
    if not is_list(address):
        return address
    families: list[dict[int, list[str]]] = [_lookup(host, port) for host, port in _entries(address)]
    for family, scheme in ((socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")):
        if all(found.get(family) for found in families):
            ordered = dict.fromkeys(a for found in families for a in found[family])
            return f"{scheme}:{','.join(ordered)}"
    raise ValueError(
        f"address {address!r}: the replicas have no address family in common (some only"
        " IPv4, some only IPv6); give IP addresses of one family, or a dns:/// name"
    )


def stream_targets(target: str, streams: int, *, first: int) -> list[str] | None:
    """For a static list of replicas (`ipv4:`/`ipv6:`, as a list address becomes):
    one target per stream, the list rotated so that stream i goes to replica
    first + i (modulo their number) and, while that one is down, to the next.
    None for other targets: gRPC alone knows their addresses, so the streams share
    one round_robin channel (each new stream goes to the next connected replica)."""
    scheme, colon, addresses = target.partition(":")
    replicas = addresses.split(",")
    if not colon or scheme not in ("ipv4", "ipv6") or len(replicas) < 2:
        return None
    targets = []
    for stream in range(streams):
        start = (first + stream) % len(replicas)
        targets.append(f"{scheme}:{','.join(replicas[start:] + replicas[:start])}")
    return targets


def _entries(address: str) -> list[tuple[str, int]]:
    entries = []
    for entry in (part.strip() for part in address.split(",")):
        if not entry:
            continue
        host, colon, port = entry.rpartition(":")
        if not colon or not port.isdigit() or not host:
            raise ValueError(f"address {address!r}: expected host:port, got {entry!r}")
        entries.append((host.removeprefix("[").removesuffix("]"), int(port)))
    return entries


def _lookup(host: str, port: int) -> dict[int, list[str]]:
    """The host's addresses by family, as `ipv4:`/`ipv6:` targets write them."""
    try:
        ips = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise ValueError(f"cannot look up replica {host!r}: {error.strerror}") from None
        ips = [ipaddress.ip_address(info[4][0]) for info in found]
    by_family: dict[int, list[str]] = {}
    for ip in ips:
        if ip.version == 4:
            by_family.setdefault(socket.AF_INET, []).append(f"{ip}:{port}")
        else:
            by_family.setdefault(socket.AF_INET6, []).append(f"[{ip}]:{port}")
    return by_family


def open_sync(
    target: str, route: Route, settings: ChannelSettings
) -> tuple[grpc.Channel, pb_grpc.TaskServiceStub]:
    """A blocking channel (thread-safe) and its stub."""
    options = channel_options(route, settings)
    credentials = channel_credentials(target, settings)
    channel = (
        grpc.secure_channel(target, credentials, options=options) if credentials
        else grpc.insecure_channel(target, options=options)
    )  # fmt: skip
    return channel, pb_grpc.TaskServiceStub(channel)


def open_aio(
    target: str, route: Route, settings: ChannelSettings
) -> tuple[grpc.aio.Channel, pb_grpc.TaskServiceAsyncStub]:
    """A grpc.aio channel (bound to the running event loop) and its stub."""
    options = channel_options(route, settings)
    credentials = channel_credentials(target, settings)
    _AIO_PROCESSES.add(os.getpid())
    channel = (
        grpc.aio.secure_channel(target, credentials, options=options) if credentials
        else grpc.aio.insecure_channel(target, options=options)
    )  # fmt: skip
    return channel, pb_grpc.TaskServiceStub(channel)


_AIO_PROCESSES: set[int] = set()
"""The processes (this one, and the ones it was forked from) that opened a grpc.aio
channel: a forked child inherits the set."""


def aio_works_here() -> bool:
    """False in a process forked from one that used grpc.aio. Its engine (one poller
    thread per process, started with the first channel) is not re-created in a
    forked child, whose grpc.aio calls would then never complete."""
    return _AIO_PROCESSES.issubset({os.getpid()})
