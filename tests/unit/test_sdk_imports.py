"""The SDK installs and imports without the server (issue 7: install what you use)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SDK_ALONE = Path(__file__).parents[1] / "sdk" / "sdk_alone.py"
SERVER_MODULES = (
    "asyncflow.core", "asyncflow.store", "asyncflow.server", "asyncflow.cache",
    "asyncflow.lock", "asyncflow.config", "aiomysql", "pymysql", "redis", "grpc_health",
    "grpc_reflection",
)  # fmt: skip


def python(code: str, *, sdk_alone: bool = False) -> subprocess.CompletedProcess[str]:
    if sdk_alone:  # the server's dependencies made unimportable first
        code = f"import runpy; runpy.run_path({str(SDK_ALONE)!r})\n{code}"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_client_and_worker_import_nothing_of_the_server() -> None:
    done = python(
        "import sys\n"
        "import grpc  # it probes for grpc_health and grpc_reflection itself\n"
        "before = set(sys.modules)\n"
        "import asyncflow.client, asyncflow.worker\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    assert done.returncode == 0, done.stderr
    imported = done.stdout.split()
    assert "asyncflow.worker" in imported
    leaked = [m for m in imported if any(m == s or m.startswith(s + ".") for s in SERVER_MODULES)]
    assert leaked == []


def test_the_sdk_and_the_cli_work_without_the_server_dependencies() -> None:
    done = python(
        "import asyncflow.client, asyncflow.worker, asyncflow.cli\nprint('ok')", sdk_alone=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_server_parts_name_the_extra_to_install() -> None:
    kit = python("import asyncflow.testing", sdk_alone=True)
    assert kit.returncode != 0
    assert "ImportError: asyncflow.testing needs the asyncflow server" in kit.stderr
    assert "pip install 'asyncflow[server]'" in kit.stderr

    serve = subprocess.run(
        [sys.executable, str(SDK_ALONE), "serve"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert serve.returncode == 2
    assert serve.stderr.startswith("asyncflow: asyncflow serve needs the asyncflow server")
    assert "pip install 'asyncflow[server]'" in serve.stderr
