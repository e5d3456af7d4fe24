"""Configuration: TOML + ASYNCFLOW_* overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncflow.config import Config, load_config
from asyncflow.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_is_the_embedded_default() -> None:
    config = load_config(ROOT / "config.toml", environ={})
    assert config == Config()
    assert (config.store.backend, config.cache.backend) == ("sqlite", "memory")


def test_environment_overrides_every_key_type() -> None:
    config = load_config(
        None,
        environ={
            "ASYNCFLOW_SERVER_PORT": "7000",
            "ASYNCFLOW_SERVER_GRACE_SECONDS": "2.5",
            "ASYNCFLOW_STORE_BACKEND": "mysql",
            "ASYNCFLOW_LIMITS_MAX_CONTEXT_BYTES": "100",
        },
    )
    assert config.server.port == 7000
    assert config.server.grace_seconds == 2.5
    assert config.store.backend == "mysql"
    assert config.limits.max_context_bytes == 100


@pytest.mark.parametrize(
    ("toml", "environ", "named"),
    [
        ("[server]\nport = 'x'\n", {}, "server.port"),
        ("[server]\nprot = 1\n", {}, "server.prot"),
        ("[nope]\n", {}, "nope"),
        ("[store]\nbackend = 'oracle'\n", {}, "store.backend"),
        ("", {"ASYNCFLOW_STORE_SQLITE_SYNCHRONOUS": "off"}, "store.sqlite_synchronous"),
        ("[store]\nsqlite_busy_timeout_ms = -1\n", {}, "store.sqlite_busy_timeout_ms"),
        ("", {"ASYNCFLOW_SERVER_PORT": "http"}, "ASYNCFLOW_SERVER_PORT"),
        ("", {"ASYNCFLOW_SERVER_PORT": "70000"}, "server.port"),
        ("", {"ASYNCFLOW_CACHE_TTL_SECONDS": "0"}, "cache.ttl_seconds"),
        ("", {"ASYNCFLOW_LIMITS_MAX_REPLY_BYTES": "1024"}, "limits.max_reply_bytes"),
        ("[store]\nmysql_pool_min = 9\nmysql_pool_max = 2\n", {}, "store.mysql_pool_min"),
        ("[server\n", {}, "not valid TOML"),
        ("[server]\nprocesses = 0\n", {}, "server.processes"),
        # Several processes are replicas: MySQL and Redis, never SQLite or a private cache.
        ("[server]\nprocesses = 2\n", {}, "server.processes"),
        ("[server]\nprocesses = 2\n[store]\nbackend = 'mysql'\n", {}, "server.processes"),
        (
            "[server]\nprocesses = 4\n[store]\nbackend = 'mysql'\n[cache]\nbackend = 'redis'\n",
            {"ASYNCFLOW_HTTP_PORT": "65534"},
            "http.port",
        ),
    ],
)
def test_bad_config_names_the_key(
    tmp_path: Path, toml: str, environ: dict[str, str], named: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(path, environ=environ)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", environ={})


def test_misspelt_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="ASYNCFLOW_SERVER_PROT"):
        load_config(None, environ={"ASYNCFLOW_SERVER_PROT": "1"})
    # Variables outside the config's sections (the tests' own, say) are not ours.
    assert load_config(None, environ={"ASYNCFLOW_TEST_MYSQL_HOST": "x"}) == Config()


def test_several_processes_on_mysql_and_redis() -> None:
    shared = {"ASYNCFLOW_STORE_BACKEND": "mysql", "ASYNCFLOW_CACHE_BACKEND": "redis"}
    config = load_config(None, environ=shared | {"ASYNCFLOW_SERVER_PROCESSES": "4"})
    assert config.server.processes == 4
