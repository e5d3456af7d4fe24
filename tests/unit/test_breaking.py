"""`make breaking` (buf breaking against the shipped contract) catches what would break
an old client, and lets additions through: run on scratch copies of proto/."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = Path(sys.executable).with_name("buf")
BASELINE = ROOT / "proto" / "baseline" / "asyncflow-v1-0.1.binpb"
PROTO = Path("proto/asyncflow/v1/task_service.proto")


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the module (buf.yaml and proto/) to damage."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    return tmp_path


def breaking(module: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(BASELINE)],
        cwd=module,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def edit(module: Path, old: str, new: str) -> None:
    path = module / PROTO
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in the proto exactly once"
    path.write_text(text.replace(old, new))


def test_the_current_contract_only_adds_to_the_baseline(scratch: Path) -> None:
    result = breaking(scratch)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_removed_field_fails(scratch: Path) -> None:
    edit(scratch, "  string user_id = 3;\n  // Opaque stage name", "  // Opaque stage name")
    result = breaking(scratch)
    assert result.returncode != 0
    assert re.search(r'Previously present field "3" with name "user_id" on message "Task"',
                     result.stdout), result.stdout  # fmt: skip


def test_a_renumbered_enum_value_fails(scratch: Path) -> None:
    edit(scratch, "TASK_STATUS_FAILED = 4;", "TASK_STATUS_FAILED = 6;")
    result = breaking(scratch)
    assert result.returncode != 0
    assert 'Previously present enum value "4" on enum "TaskStatus"' in result.stdout, result.stdout


def test_an_added_field_passes(scratch: Path) -> None:
    edit(scratch, "  int64 run_at = 7;\n}", "  int64 run_at = 7;\n  string note = 8;\n}")
    result = breaking(scratch)
    assert result.returncode == 0, result.stdout + result.stderr
