"""A Prometheus text endpoint whose values the test sets, bound to any loopback address —
typically a kwok pod's 127.1.x.y IP, so whatever scrapes that pod reaches the test."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsEndpoint:
    """Serves `GET /metrics` (and any path) with the samples last given to `set()`."""

    def __init__(self, host: str, port: int = 0) -> None:
        if not host.startswith("127."):
            raise ValueError(f"{host} is not a loopback address (127.0.0.0/8)")
        self._lock = threading.Lock()
        self._body = b""
        self.scrapes = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with endpoint._lock:
                    body = endpoint._body
                    endpoint.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def set(self, samples: dict[str, float], help_text: dict[str, str] | None = None) -> None:
        """Replaces what is served: gauge name (optionally with {labels}) -> value."""
        by_name: dict[str, list[str]] = {}
        for series, value in samples.items():
            by_name.setdefault(series.split("{", 1)[0], []).append(f"{series} {value}")
        lines = []
        for name, series_lines in by_name.items():
            if help_text and name in help_text:
                lines.append(f"# HELP {name} {help_text[name]}")
            lines += [f"# TYPE {name} gauge", *series_lines]
        with self._lock:
            self._body = ("\n".join(lines) + "\n").encode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
