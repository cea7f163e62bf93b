"""Start, watch and always stop the test bed's programs.

Every program started through `start()` is remembered while it runs, so a failing test can show
the end of each one's log (see `running_logs()` and the report hook in conftest.py).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
TESTBED_DIR = Path(os.environ.get("TESTBED_DIR", REPO_ROOT / ".testbed"))
TESTBED_BIN = TESTBED_DIR / "bin"
LOOPBACK = "127.0.0.1"

_running: dict[str, "Process"] = {}


class NotReady(RuntimeError):
    """A program did not become ready in time, or exited while starting."""


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the test process dies without stopping it."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def binary(name: str) -> str:
    """Path of a test bed program; says how to get it when it is missing."""
    path = TESTBED_BIN / name
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} is missing: run `make testbed` first")
    return str(path)


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    """One running program, its log file, and how to stop it."""

    name: str
    argv: Sequence[str]
    log_path: Path
    popen: subprocess.Popen = field(repr=False)
    log_start: int = field(default=0, repr=False)  # where its lines begin (a program's log is appended to)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        """What this run of the program has written (its log file also holds earlier runs')."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_start)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        """The last `lines` lines this run of the program wrote."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the program's process group, then SIGKILL after `timeout`."""
        _running.pop(self.name, None)
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=timeout)
        except ProcessLookupError:
            pass


def start(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Process:
    """Starts `argv` in its own process group, output to `log_dir/name.log`."""
    if name in _running:
        raise RuntimeError(f"a program named {name!r} is already running")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        log_start = log.tell()
        popen = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    process = Process(name, list(argv), log_path, popen, log_start)
    _running[name] = process
    return process


def running_logs(lines: int = 60) -> dict[str, str]:
    """The last lines of every program still running, by name."""
    return {name: process.log_tail(lines) for name, process in sorted(_running.items())}


def wait_until(
    check: Callable[[], bool],
    what: str,
    process: Process | None = None,
    timeout: float = 60.0,
    interval: float = 0.2,
) -> None:
    """Polls `check` until it is true; fails early, with the log, if `process` exits."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise NotReady(
                f"{process.name} exited with {process.popen.returncode} while waiting for {what}; "
                f"its log ({process.log_path}) ends:\n{process.log_tail()}"
            )
        try:
            if check():
                return
        except Exception as error:  # the program may not be listening yet
            last_error = error
        time.sleep(interval)
    log = f"; {process.name}'s log ends:\n{process.log_tail()}" if process else ""
    raise NotReady(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error}){log}")


def http_status(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def metric_value(metrics_url: str, series: str) -> float:
    """The sum of a Prometheus metric's samples whose line starts with `series` (name{labels...)."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(series) and not line.startswith("#"))


def wait_for_http(url: str, process: Process, context: ssl.SSLContext | None = None,
                  timeout: float = 60.0) -> None:
    wait_until(lambda: http_status(url, context) == 200, f"{url} to answer 200", process, timeout)
