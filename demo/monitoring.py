"""Prometheus for the demo, configured as a cluster's Prometheus would be.

It discovers pods through the apiserver (kubernetes_sd, role pod): the worker pods by the
`prometheus.io/*` annotations the operator sets, and the chart's operator pod at its `metrics`
port (what the chart's ServiceMonitor asks for); each series is labelled with its `namespace` and
`pod`, which the operator's query `sum by (pod) (agent_worker_active_sessions{namespace="<ns>"})`
reads. It evaluates the chart's rules (charts/agent-worker/files/alerts.yaml, what its
PrometheusRule holds) and listens on the node address, where the operator pod reaches it.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.integration.harness import network
from tests.integration.harness.control_plane import ControlPlane
from tests.integration.harness.fleet import operator_scrape_config, pod_scrape_config
from tests.integration.harness.processes import REPO_ROOT, Process, binary, free_port, start, wait_for_http

RULES = REPO_ROOT / "charts" / "agent-worker" / "files" / "alerts.yaml"
SCRAPE_INTERVAL = "2s"  # as the operator's resync: a busy worker may take over a second to answer


def config(plane: ControlPlane, workers_namespace: str, operator_namespace: str) -> dict[str, Any]:
    """prometheus.yml: the worker pods of `workers_namespace` and the operator pods of
    `operator_namespace`, found through `plane`'s apiserver, and the chart's rules."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(RULES)],
        "scrape_configs": [pod_scrape_config(plane, workers_namespace), operator_scrape_config(plane, operator_namespace)],
    }


@dataclass(frozen=True, order=True)
class Target:
    job: str
    pod: str
    address: str
    health: str  # "up", "down" or "unknown" (not scraped yet)


class Prometheus:
    """Prometheus with `settings` (see config()) on the node address; `.stop()`."""

    def __init__(self, settings: dict[str, Any], workdir: Path, log_dir: Path) -> None:
        directory = workdir / "prometheus"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "prometheus.yml").write_text(yaml.safe_dump(settings))
        port = free_port(network.NODE_IP)
        self.url = f"http://{network.NODE_IP}:{port}"
        self.process: Process = start("prometheus", [
            binary("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address={network.NODE_IP}:{port}",
        ], log_dir)
        wait_for_http(f"{self.url}/-/ready", self.process, timeout=60)

    def stop(self) -> None:
        self.process.stop()

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            return json.load(response)["data"]

    def targets(self) -> list[Target]:
        """The targets discovery found, with their last scrape's health."""
        return sorted(Target(t["labels"]["job"], t["labels"].get("pod", ""), t["labels"]["instance"], t["health"])
                      for t in self._get("/api/v1/targets", state="active")["activeTargets"])

    def rules(self) -> list[str]:
        """The names of the rules Prometheus evaluates."""
        return [rule["name"] for group in self._get("/api/v1/rules")["groups"] for rule in group["rules"]]

    def value(self, expr: str) -> float:
        """An instant query's single value (0 when it has no series)."""
        result = self._get("/api/v1/query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else 0.0
