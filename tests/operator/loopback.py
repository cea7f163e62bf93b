"""Worker pods' metrics endpoints, served on loopback addresses (127.0.0.0/8) as pod IPs."""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from aiohttp import web

from agent_worker.metric_names import ACTIVE_SESSIONS


def exposition(*rooms_per_process: int) -> str:
    """A worker's /metrics text: one active-sessions sample per job process label."""
    lines = [f"# HELP {ACTIVE_SESSIONS} Active sessions", f"# TYPE {ACTIVE_SESSIONS} gauge"]
    lines += [f'{ACTIVE_SESSIONS}{{process="{i}"}} {n}' for i, n in enumerate(rooms_per_process)]
    lines += ["# TYPE other_metric gauge", "other_metric 42"]
    return "\n".join(lines) + "\n"


def free_port(hosts: list[str]) -> int:
    """A port free on every one of the loopback hosts."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        try:
            for host in hosts:
                with socket.socket() as other:
                    other.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no common free port on the loopback hosts")


@asynccontextmanager
async def metrics_endpoints(bodies: dict[str, str | int], port: int | None = None) -> AsyncIterator[int]:
    """Serve GET /metrics on each IP: a str is the exposition, an int an HTTP error status. Yields the port.

    `bodies` is read at each request, so a test can change what a pod reports while it runs.
    """
    port = port or free_port(list(bodies))
    runners = []
    try:
        for ip in list(bodies):

            async def handler(request: web.Request, ip: str = ip) -> web.Response:
                body = bodies[ip]
                if isinstance(body, int):
                    return web.Response(status=body)
                return web.Response(text=body, content_type="text/plain")

            app = web.Application()
            app.router.add_get("/metrics", handler)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, ip, port).start()
            runners.append(runner)
        yield port
    finally:
        for runner in runners:
            await runner.cleanup()


def pod(name: str, ip: str | None, ready: bool = True, labels: dict[str, str] | None = None, **annotations: str) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    meta = {"name": name, "annotations": dict(annotations), "labels": dict(labels or {}), "resourceVersion": "1"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": status}
