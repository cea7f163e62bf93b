"""What a process tree costs, read from /proc: CPU seconds, memory, and how busy each core was.

  tree(pid)            the process and all its descendants (livekit runs one job process per call)
  cpu_seconds(pids)    utime + stime of each, plus cutime + cstime (descendants already reaped)
  memory(pid)          /proc/<pid>/smaps_rollup: RSS, PSS and unique (Private_*) memory in MiB
  CoreClock            /proc/stat per core, so a window's busy share of each core can be told
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str]:
    text = (PROC / str(pid) / "stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    return text[text.rindex(")") + 2:].split()


def tree(root: int) -> list[int]:
    """`root` and its live descendants (empty when `root` has exited)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        children.setdefault(parent, []).append(int(entry.name))
    if not (PROC / str(root)).exists():
        return []
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending += children.get(pid, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of `pids` and of their reaped children, in seconds.

    A descendant that exits and is reaped between two readings moves its time into its parent's
    cutime/cstime, so the difference of two readings over the same tree counts it."""
    total = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # After the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14), 0-based here.
        total += sum(int(fields[index]) for index in (11, 12, 13, 14))
    return total / TICKS


def thread_cpu(pids: list[int]) -> dict[str, float]:
    """CPU seconds by thread name (comm) over the threads of `pids`: the Python main thread
    ("python", or the program's name), livekit's native FFI runtime ("tokio-runtime-w"),
    onnxruntime's workers, ... Threads that exited are not counted."""
    by_name: dict[str, float] = {}
    for pid in pids:
        try:
            tasks = list((PROC / str(pid) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                text = (task / "stat").read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text[text.rindex(")") + 2:].split()
            by_name[name] = by_name.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return by_name


def parent(pid: int) -> int | None:
    try:
        return int(_stat_fields(pid)[1])
    except (OSError, ValueError, IndexError):
        return None


def is_job_process(pid: int) -> bool:
    """A child of livekit's forkserver: a job process (running a call, or idle and prewarmed)."""
    parent_pid = parent(pid)
    return parent_pid is not None and "forkserver" in cmdline(pid) and "forkserver" in cmdline(parent_pid)


def cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Memory:
    rss_mib: float
    pss_mib: float
    unique_mib: float  # Private_Clean + Private_Dirty: freed when the process exits


def memory(pid: int) -> Memory | None:
    try:
        lines = (PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    kib: dict[str, int] = {}
    for line in lines[1:]:
        key, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            kib[key] = int(value[0])
    return Memory(kib.get("Rss", 0) / 1024, kib.get("Pss", 0) / 1024,
                  (kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)) / 1024)


def affinity(pid: int) -> list[int]:
    return sorted(os.sched_getaffinity(pid))


class CoreClock:
    """Busy share of each core between `start()` and `busy()` (all programs, not only ours)."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> dict[int, tuple[int, int]]:
        out = {}
        for line in (PROC / "stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values]
                idle = ticks[3] + ticks[4]  # idle + iowait
                out[int(name[3:])] = (sum(ticks[:8]), idle)
        return out

    def busy(self) -> dict[int, float]:
        now = self._read()
        shares = {}
        for core, (total, idle) in now.items():
            total0, idle0 = self._start.get(core, (total, idle))
            elapsed = total - total0
            shares[core] = round(1 - (idle - idle0) / elapsed, 3) if elapsed else 0.0
        return shares


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]
