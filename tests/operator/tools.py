"""The cluster tools `make tools` installs into .testbed/bin (helm, promtool)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".testbed" / "bin"


def tool(name: str) -> Path:
    path = BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make tools` first")
    return path


def run(name: str, *args: str, cwd: Path = ROOT, home: Path | None = None) -> str:
    env = dict(os.environ)
    if home is not None:  # helm keeps its cache/config/data out of $HOME
        env.update(HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home / "config"), HELM_DATA_HOME=str(home / "data"))
    result = subprocess.run([str(tool(name)), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{name} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr
