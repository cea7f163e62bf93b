"""What the benchmarks share: the machine they ran on, and percentiles."""

from __future__ import annotations

import os
import platform
import statistics
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


def percentiles(values: list[float], scale: float = 1.0) -> dict[str, float | None]:
    """p50 and p95 of `values` times `scale` (1000: seconds to ms), rounded to 0.1; None if empty."""
    ordered = sorted(value * scale for value in values)
    if not ordered:
        return {"p50": None, "p95": None}
    cut = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {"p50": round(statistics.median(ordered), 1), "p95": round(cut[94], 1)}
