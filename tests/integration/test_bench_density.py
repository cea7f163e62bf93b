"""`make bench-density` end to end at its smallest (one call, two questions), so that a change to the
test bed cannot quietly break the benchmark: its worker must reach every stand-in provider and the
caller must hear each answer (a rig whose STT answered 404 lost every turn and still wrote a result)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]


def test_the_density_benchmark_holds_one_call_without_losing_a_turn(tmp_path: Path) -> None:
    out = tmp_path / "density.json"
    argv = [sys.executable, str(ROOT / "bench" / "density.py"), "--sizes", "1", "--baseline-turns", "2",
            "--variants", "ours", "--profile-n", "0", "--out", str(out), "--keep", str(tmp_path / "rig")]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    ours = json.loads(out.read_text())["variants"]["ours"]
    [step] = ours["steps"]
    assert (step["n"], step["turns"], step["lost"], step["errors"]) == (1, 2, 0, []), run.stdout[-3000:]
    assert step["first_audio_ms"]["n"] == 2 and 0 < step["first_audio_ms"]["p50"] < 5000
    assert step["cpu_seconds"] > 0 and step["memory"]["job_processes"] >= 1
    assert ours["calls_at_budget"] == 1
