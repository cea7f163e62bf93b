"""`python -m demo` end to end (`make demo`): it exits 0 and writes its table and its waterfall.

The demo enters its own loopback-only network namespace, like the test bed's fixtures, and stops
everything it started; this test only runs it as a user would and reads what it leaves behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .harness.processes import REPO_ROOT

pytestmark = pytest.mark.testbed


def test_the_demo_shows_a_filler_before_the_answer_a_cost_and_a_scale_up(tmp_path: Path):
    out = tmp_path / "demo-output"
    # One question and a short window: the whole demo's path in about two minutes.
    result = subprocess.run([sys.executable, "-m", "demo", "--out", str(out), "--questions", "1",
                             "--scale-down-seconds", "5"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-4000:]
    table = (out / "turns.txt").read_text()
    assert len([line for line in table.splitlines() if line.lstrip().startswith("heard:")]) == 1
    assert (out / "turns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ScaledUp" in result.stdout and "demo: OK" in result.stdout
