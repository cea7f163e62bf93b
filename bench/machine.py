"""The machine a benchmark ran on, for its results file."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine(**parts: str) -> dict:
    """CPU, cores, memory, kernel and Python, plus `parts` (the programs' versions)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(), "python": platform.python_version(), **parts,
    }
