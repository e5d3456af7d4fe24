"""The auth pieces on their own: the role table, the tokens file, the limits, and
the SDK's choice of channel credentials."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from asyncflow._sdk.channel import ChannelSettings
from asyncflow._sdk.credentials import channel_credentials, is_loopback
from asyncflow.config import load_config
from asyncflow.errors import ConfigError, RateLimited, TooManyStreams
from asyncflow.server.auth.limits import CallRate, OpenStreams
from asyncflow.server.auth.roles import ADMIN_ACTIONS, ALLOWED, ROLES, TYPE_SCOPED, allows
from asyncflow.server.auth.tokens import Credentials, new_token, token_entry
from asyncflow.v1 import task_service_pb2 as pb

METHODS = {m.name for m in pb.DESCRIPTOR.services_by_name["TaskService"].methods}


def test_the_role_table_names_every_rpc_and_nothing_else() -> None:
    """A new RPC must be given its roles: until then it is refused to everyone."""
    assert set(ALLOWED) == METHODS
    assert all(roles <= set(ROLES) and "admin" in roles for roles in ALLOWED.values())
    assert not allows(frozenset(ROLES), "NoSuchMethod")
    assert {m for m, roles in ALLOWED.items() if "worker" in roles} >= TYPE_SCOPED
    assert {"RegisterTaskType", "CancelTask", "PauseTaskType", "RetryTasks",
            "CreateSchedule"} <= ADMIN_ACTIONS  # fmt: skip


def test_roles_as_the_issue_lists_them() -> None:
    can = {role: {m for m in METHODS if allows(frozenset({role}), m)} for role in ROLES}
    assert can["admin"] == METHODS
    assert {"CreateTask", "GetTask", "ListTasks", "CountTasks"} <= can["producer"]
    assert {"HoldTasks", "SetTask", "ExtendLease", "WorkTasks"} <= can["worker"]
    assert {"GetTask", "ListTasks", "CountTasks", "ListTaskTypes"} <= can["reader"]
    for role in ("producer", "worker", "reader"):
        assert not can[role] & ADMIN_ACTIONS
    assert not can["reader"] & {"CreateTask", "HoldTasks", "SetTask"}
    assert not can["worker"] & {"CreateTask", "GetTask", "ListTasks"}


def test_tokens_are_found_by_their_hash_only(tmp_path: Path) -> None:
    token = new_token()
    path = tmp_path / "tokens.toml"
    path.write_text(token_entry("billing", token, ["worker"], ["billing"]))
    assert token not in path.read_text()
    credentials = Credentials.load(str(path))
    caller = credentials.by_token(token)
    assert caller is not None
    assert (caller.name, caller.roles, caller.types) == (
        "billing",
        frozenset({"worker"}),
        frozenset({"billing"}),
    )
    assert credentials.by_token(token[:-1]) is None
    assert credentials.by_token(new_token()) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[token]]\nname = "x"\nsha256 = "00"\nroles = ["worker"]\n', "sha256"),
        (f'[[token]]\nname = "x"\nsha256 = "{"0" * 64}"\nroles = ["boss"]\n', "roles"),
        (
            f'[[token]]\nname = "x"\nsha256 = "{"0" * 64}"\nroles = ["reader"]\ntypes = ["a"]\n',
            "worker role",
        ),
        (f'[[token]]\nname = "x y"\nsha256 = "{"0" * 64}"\nroles = ["reader"]\n', "name"),
        (f'[[token]]\nname = "x"\nsha256 = "{"0" * 64}"\nroles = ["reader"]\n' * 2, "twice"),
        ('[[user]]\nname = "x"\n', "unknown section"),
        ("[[token]\n", "not valid TOML"),
    ],
)
def test_a_bad_tokens_file_names_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Credentials.load(str(path))


def test_the_call_rate_refills_with_time() -> None:
    now = [100.0]
    rate = CallRate(rate=2, burst=3, now=lambda: now[0])
    for _ in range(3):
        rate.take("alice")
    with pytest.raises(RateLimited) as limited:
        rate.take("alice")
    assert limited.value.retry_delay == pytest.approx(0.5)
    rate.take("bob")  # a bucket each
    now[0] += 0.5
    rate.take("alice")
    with pytest.raises(RateLimited):
        rate.take("alice")
    now[0] += 60  # never more than the burst
    for _ in range(3):
        rate.take("alice")
    with pytest.raises(RateLimited):
        rate.take("alice")


def test_open_streams_count_per_caller() -> None:
    streams = OpenStreams(limit=2)
    streams.open("a")
    streams.open("a")
    with pytest.raises(TooManyStreams):
        streams.open("a")
    streams.open("b")
    streams.close("a")
    streams.open("a")
    assert (streams.count("a"), streams.count("b")) == (2, 1)


def test_security_keys_that_go_together(tmp_path: Path) -> None:
    for env, message in (
        ({"ASYNCFLOW_SERVER_TLS_CERT_FILE": "c.pem"}, "tls_key_file"),
        ({"ASYNCFLOW_SERVER_TLS_CLIENT_CA_FILE": "ca.pem"}, "tls_cert_file"),
        ({"ASYNCFLOW_AUTH_ENABLED": "true"}, "tokens_file"),
        ({"ASYNCFLOW_AUTH_REFLECTION": "maybe"}, "auth.reflection"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(environ=env)
    config = load_config(environ={"ASYNCFLOW_QUOTA_CALLS_PER_SECOND": "50"})
    assert (config.quota.calls_per_second, config.auth.enabled) == (50.0, False)


@pytest.mark.parametrize(
    ("target", "local"),
    [
        ("localhost:50051", True),
        ("127.0.0.1:50051", True),
        ("[::1]:50051", True),
        ("ipv4:127.0.0.1:1,127.0.0.2:2", True),
        ("dns:///localhost:50051", True),
        ("ipv4:127.0.0.1:1,10.0.0.2:2", False),
        ("tasks.internal:50051", False),
        ("10.1.2.3:50051", False),
    ],
)
def test_loopback_targets(target: str, local: bool) -> None:
    assert is_loopback(target) is local


def test_a_token_is_never_sent_in_clear_to_another_machine(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:  # fmt: skip
    for variable in ("ASYNCFLOW_TOKEN", "ASYNCFLOW_TLS", "ASYNCFLOW_TLS_CA_FILE"):
        monkeypatch.delenv(variable, raising=False)
    assert channel_credentials("tasks.internal:50051", ChannelSettings()) is None
    with pytest.raises(ValueError, match="only over TLS"):
        channel_credentials("tasks.internal:50051", ChannelSettings(token="aft_x"))
    assert channel_credentials("localhost:50051", ChannelSettings(token="aft_x")) is not None
    assert channel_credentials("tasks.internal:50051", ChannelSettings(token="aft_x", tls=True))
    monkeypatch.setenv("ASYNCFLOW_TOKEN", "aft_from_env")
    settings = ChannelSettings()
    assert settings.token == "aft_from_env"
    assert "aft_from_env" not in repr(settings)
    # "" turns the variable off.
    assert channel_credentials("tasks.internal:50051", ChannelSettings(token="")) is None
    with pytest.raises(ValueError, match="go together"):
        ChannelSettings(tls_cert_file="client.pem")
    # TLS follows the settings it is given later (as `asyncflow worker --tls-ca`).
    assert not ChannelSettings().secure
    assert dataclasses.replace(ChannelSettings(), tls_ca_file="ca.pem").secure
    monkeypatch.setenv("ASYNCFLOW_TLS", "1")
    assert ChannelSettings().secure
    assert not ChannelSettings(tls=False).secure
