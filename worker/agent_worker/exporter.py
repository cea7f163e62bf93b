"""The worker's Prometheus endpoint, multiprocess-safe.

livekit runs every job in its own process, so metrics are written to per-process files in
PROMETHEUS_MULTIPROC_DIR and summed at scrape time. livekit's own `lk_agents_*` metrics are
written there too, so one endpoint (`:AGENT_METRICS_PORT/metrics`) serves both.

When a job process dies without cleaning up (killed, OOM), its live gauge files would keep
counting its sessions. Before every scrape we therefore call prometheus_client's
`mark_process_dead` for each pid that owns live-gauge files and is no longer running. Only
those dead pids' live-gauge files are removed; no other file is ever deleted.

`prepare_multiproc_dir` must run before anything imports prometheus_client (it reads the
variable at import time), which is why the CLI calls it first.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .metric_names import ACTIVE_SESSIONS, CATALOGUE

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_ACTIVE_SESSIONS_HELP = next(metric.help for metric in CATALOGUE if metric.name == ACTIVE_SESSIONS)
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def prepare_multiproc_dir() -> Path:
    """Use PROMETHEUS_MULTIPROC_DIR, or create a private one for this worker and export it."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        path = tempfile.mkdtemp(prefix="agent-worker-metrics-")
        os.environ[MULTIPROC_ENV] = path
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def process_is_running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def reap_dead_processes(path: Path) -> list[int]:
    """mark_process_dead for every pid whose live-gauge files outlived it; returns those pids."""
    from prometheus_client import multiprocess

    owners = {int(m.group(1)) for f in os.listdir(path) if (m := _LIVE_GAUGE_FILE.match(f))}
    dead = sorted(pid for pid in owners if not process_is_running(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))
    return dead


class LiveMultiProcessCollector:
    """MultiProcessCollector that first drops the live gauges of dead processes."""

    def __init__(self, path: Path) -> None:
        from prometheus_client import multiprocess

        self._path = path
        self._inner = multiprocess.MultiProcessCollector(None, path=str(path))

    def collect(self) -> Iterator[Any]:
        reap_dead_processes(self._path)
        active_sessions_seen = False
        for family in self._inner.collect():
            if family.name == ACTIVE_SESSIONS:
                if not family.samples:
                    continue
                active_sessions_seen = True
            yield family
        if not active_sessions_seen:
            # No live process holds the gauge (every job process has exited): that is 0 sessions,
            # and it must be said, or a Prometheus-fed autoscaler reads the pod as unknown.
            from prometheus_client.core import GaugeMetricFamily

            yield GaugeMetricFamily(ACTIVE_SESSIONS, _ACTIVE_SESSIONS_HELP, value=0)


class Readiness:
    """Whether this worker can take a call now: registered with livekit-server and not draining.

    Kubernetes asks it through the readiness probe (GET /ready on the metrics port): livekit's own
    health endpoint answers 200 before the worker has registered, so a rollout would stop an old pod
    for a new one that livekit-server cannot yet dispatch a room to, and a caller would wait.
    """

    def __init__(self) -> None:
        self._check: Callable[[], bool] | None = None

    def track(self, check: Callable[[], bool]) -> None:
        self._check = check

    def __call__(self) -> bool:
        return bool(self._check and self._check())


READINESS = Readiness()


def serve_metrics(port: int, *, host: str = "0.0.0.0", path: Path | None = None) -> Any:
    """Start the HTTP server for /metrics and /ready in a background thread; returns the server."""
    from prometheus_client import CollectorRegistry, make_wsgi_app

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveMultiProcessCollector(path or prepare_multiproc_dir()))  # type: ignore[arg-type]
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") != "/ready":
            return metrics(environ, start_response)
        ready = READINESS()
        start_response("200 OK" if ready else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"ready\n" if ready else b"not registered with livekit-server, or draining\n"]

    server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Scrapes and probes are not worth a log line each."""
