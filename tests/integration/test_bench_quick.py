"""`python -m bench --quick` runs every benchmark of issue 9 end to end, so they cannot rot.

No figure is judged (timings on a shared machine prove nothing): the run must
succeed, which means every benchmark found its work done in the store (tasks
counted, SUCCESS counted, /metrics showing the idle streams), and must give
figures for all seven items.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.mysql, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_runs_and_gives_figures(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    figures = json.loads(out.read_text())
    assert {f["item"] for f in figures} == set(range(1, 8))
    for figure in figures:
        assert math.isfinite(figure["value"]), figure
        assert figure["value"] > 0, figure
    for item in range(1, 6):
        assert {f["backend"] for f in figures if f["item"] == item} == {"mysql", "sqlite"}
