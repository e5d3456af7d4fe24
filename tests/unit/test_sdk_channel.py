"""How the SDK's channels are configured: targets, service configs, settings."""

from __future__ import annotations

import json

import pytest

from asyncflow._sdk import calls
from asyncflow._sdk.channel import (
    MAX_ATTEMPTS,
    REPEATABLE_METHODS,
    SERVICE,
    ChannelSettings,
    Route,
    channel_options,
    grpc_target,
    replica_count,
    service_config,
    stream_targets,
)
from asyncflow.client import TaskSpec
from asyncflow.v1 import task_service_pb2 as pb


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("localhost:50051", "localhost:50051"),
        ("dns:///asyncflow.internal:50051", "dns:///asyncflow.internal:50051"),
        ("ipv4:10.0.0.1:1,10.0.0.2:2", "ipv4:10.0.0.1:1,10.0.0.2:2"),
        ("unix:/run/asyncflow.sock", "unix:/run/asyncflow.sock"),
        ("10.0.0.1:50051,10.0.0.2:50051", "ipv4:10.0.0.1:50051,10.0.0.2:50051"),
        (" 10.0.0.1:1 , 10.0.0.2:2 ,", "ipv4:10.0.0.1:1,10.0.0.2:2"),
        ("[::1]:1,[fd00::2]:2", "ipv6:[::1]:1,[fd00::2]:2"),
        ("localhost:1,127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2"),  # names are looked up
        ("127.0.0.1:1,127.0.0.1:1", "ipv4:127.0.0.1:1"),
    ],
)
def test_address_forms_become_grpc_targets(address: str, target: str) -> None:
    assert grpc_target(address) == target


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("10.0.0.1:1,[::1]:2", "no address family in common"),
        ("10.0.0.1:1,10.0.0.2", "expected host:port"),
        ("10.0.0.1:1,:2", "expected host:port"),
        ("10.0.0.1:1,no-such-host.invalid:2", "cannot look up replica 'no-such-host.invalid'"),
    ],
)
def test_a_bad_list_is_refused_with_its_reason(address: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        grpc_target(address)


def test_replica_count() -> None:
    assert replica_count("localhost:50051") == 1
    assert replica_count("dns:///a:1") == 1
    assert replica_count("a:1,b:2,c:3") == 3


def test_streams_of_a_static_list_start_at_successive_replicas() -> None:
    assert stream_targets("ipv4:a:1,b:2,c:3", 4, first=1) == [
        "ipv4:b:2,c:3,a:1",
        "ipv4:c:3,a:1,b:2",
        "ipv4:a:1,b:2,c:3",
        "ipv4:b:2,c:3,a:1",
    ]
    # gRPC resolves these itself: the streams share one round_robin channel.
    for target in ("dns:///a:1", "localhost:1", "ipv4:a:1"):
        assert stream_targets(target, 2, first=0) is None


def test_every_channel_spreads_calls_with_round_robin_except_streams() -> None:
    settings = ChannelSettings()
    for route in Route:
        policy = "pick_first" if route is Route.STREAM else "round_robin"
        assert service_config(route, settings)["loadBalancingConfig"] == [{policy: {}}]


def test_only_calls_safe_to_repeat_are_retried_on_unavailable() -> None:
    settings = ChannelSettings()
    (repeatable,) = service_config(Route.REPEATABLE, settings)["methodConfig"]
    assert repeatable["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert repeatable["retryPolicy"]["maxAttempts"] == MAX_ATTEMPTS
    assert repeatable["waitForReady"] is True
    names = {name["method"] for name in repeatable["name"]}
    assert names == set(REPEATABLE_METHODS)
    service = pb.DESCRIPTOR.services_by_name["TaskService"]
    assert names <= {method.name for method in service.methods}
    assert {"HoldTasks", "SetTask", "ExtendLease", "WorkTasks"}.isdisjoint(names)
    (once,) = service_config(Route.ONCE, settings)["methodConfig"]
    assert once == {"name": [{"service": SERVICE}], "waitForReady": True}
    for route in (Route.WORKER, Route.STREAM):
        assert "methodConfig" not in service_config(route, settings)
    no_retries = service_config(Route.REPEATABLE, ChannelSettings(retry_attempts=1))
    assert "retryPolicy" not in no_retries["methodConfig"][0]


def test_creates_are_repeatable_only_with_a_key_on_every_task() -> None:
    assert calls.create("t").route is Route.ONCE
    assert calls.create("t", idempotency_key="k").route is Route.REPEATABLE
    assert calls.create_many([TaskSpec("t", idempotency_key="a")]).route is Route.REPEATABLE
    mixed = [TaskSpec("t", idempotency_key="a"), TaskSpec("t")]
    assert calls.create_many(mixed).route is Route.ONCE
    for call in (
        calls.register_type("t"), calls.list_types(), calls.get("x"), calls.count("t"),
        calls.ping(), calls.list_tasks("t").page(""),
    ):  # fmt: skip
        assert call.route is Route.REPEATABLE
        assert call.method in REPEATABLE_METHODS


def test_settings_become_channel_options() -> None:
    settings = ChannelSettings(keepalive_time=45, keepalive_timeout=5, idle_timeout=60,
                               max_message_bytes=4096)  # fmt: skip
    options = dict(channel_options(Route.REPEATABLE, settings))
    assert json.loads(options["grpc.service_config"]) == service_config(Route.REPEATABLE, settings)
    assert options["grpc.keepalive_time_ms"] == 45_000
    assert options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.client_idle_timeout_ms"] == 60_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert options["grpc.max_send_message_length"] == 4096
    assert options["grpc.per_rpc_retry_buffer_size"] == 4096
    assert options["grpc.use_local_subchannel_pool"] == 1


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"keepalive_time": 5}, "keepalive_time must be at least 10"),
        ({"retry_attempts": 6}, "retry_attempts"),
        ({"retry_attempts": 0}, "retry_attempts"),
        ({"keepalive_timeout": 0}, "keepalive_timeout must be positive"),
        ({"retry_backoff_multiplier": 0.5}, "retry_backoff_multiplier"),
    ],
)
def test_settings_are_checked(changes: dict[str, float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ChannelSettings(**changes)  # type: ignore[arg-type]
