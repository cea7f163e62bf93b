"""Prometheus for the demo, scraping the worker as a ServiceMonitor would in a real cluster.

The operator's query is `sum by (pod) (agent_worker_active_sessions{namespace="<ns>"})`, matched
against the VoiceAgent's ready pods. In a cluster, the Prometheus Operator turns a ServiceMonitor
into kubernetes_sd discovery plus relabelling of `__meta_kubernetes_namespace` and
`__meta_kubernetes_pod_name` into `namespace` and `pod`. Here the pods are kwok's (no containers),
so `PodTargets` plays discovery: it writes a file_sd file with the same meta labels, naming the
real worker process as the oldest ready pod, and a stand-in endpoint at each other pod's IP that
reports no rooms (those pods run no worker). The relabelling is the ServiceMonitor's.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import yaml
from kubernetes import client as k8s

from voiceagent_operator.scaling.observe import is_ready

from tests.integration.harness.control_plane import ControlPlane
from tests.integration.harness.metrics_endpoint import MetricsEndpoint
from tests.integration.harness.processes import LOOPBACK, Process, binary, free_port, start, wait_for_http

from agent_worker.metric_names import ACTIVE_SESSIONS

JOB = "agent-worker"
RELABEL = [
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
]


def config(targets_file: Path) -> dict:
    return {
        # Every 2 s, as the operator's resync: a busy worker may take over a second to answer.
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [{
            "job_name": JOB,
            "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
            "relabel_configs": RELABEL,
        }],
    }


def target_groups(namespace: str, targets: dict[str, str]) -> list[dict]:
    """file_sd groups: pod name -> host:port, labelled as kubernetes_sd labels a pod."""
    for address in targets.values():
        if not address.startswith("127."):
            raise ValueError(f"Prometheus target {address!r} is not on loopback (127.0.0.0/8)")
    return [{"targets": [address], "labels": {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": pod}}
            for pod, address in sorted(targets.items())]


class Prometheus:
    def __init__(self, workdir: Path, log_dir: Path) -> None:
        self.directory = workdir / "prometheus"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.targets_file = self.directory / "targets.json"
        self.targets_file.write_text("[]")
        (self.directory / "prometheus.yml").write_text(yaml.safe_dump(config(self.targets_file)))
        port = free_port()
        self.url = f"http://{LOOPBACK}:{port}"
        self.process: Process = start("prometheus", [
            binary("prometheus"), f"--config.file={self.directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.directory / 'data'}", f"--web.listen-address={LOOPBACK}:{port}",
        ], log_dir)

    def wait_ready(self) -> None:
        wait_for_http(f"{self.url}/-/ready", self.process, timeout=60)

    def write_targets(self, namespace: str, targets: dict[str, str]) -> None:
        staged = self.targets_file.with_suffix(".tmp")
        staged.write_text(json.dumps(target_groups(namespace, targets)))
        staged.replace(self.targets_file)  # atomic: Prometheus never reads half a file


class PodTargets:
    """Keeps Prometheus's targets in step with the VoiceAgent's ready worker pods, every second."""

    def __init__(self, plane: ControlPlane, prometheus: Prometheus, namespace: str, selector: str,
                 worker_address: str) -> None:
        self._plane, self._prometheus = plane, prometheus
        self._namespace, self._selector = namespace, selector
        self._worker_address = worker_address
        self.worker_pod: str | None = None
        self._stand_ins: dict[str, MetricsEndpoint] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-targets", daemon=True)

    def start(self) -> None:
        self.sync()
        self._thread.start()

    def sync(self) -> None:
        with self._plane.api_client() as api:
            response = k8s.CoreV1Api(api).list_namespaced_pod(
                self._namespace, label_selector=self._selector, _preload_content=False)
            pods = json.loads(response.data)["items"]
        ready = sorted((p for p in pods if is_ready(p)), key=lambda p: p["metadata"]["creationTimestamp"])
        names = {p["metadata"]["name"]: p["status"]["podIP"] for p in ready}
        if self.worker_pod is None and names:
            self.worker_pod = next(iter(names))
        targets = {}
        for name, ip in names.items():
            if name == self.worker_pod:
                targets[name] = self._worker_address
                continue
            if name not in self._stand_ins:
                endpoint = MetricsEndpoint(ip)
                endpoint.set({ACTIVE_SESSIONS: 0})
                self._stand_ins[name] = endpoint
            targets[name] = self._stand_ins[name].address
        for gone in set(self._stand_ins) - set(names):
            self._stand_ins.pop(gone).close()
        self._prometheus.write_targets(self._namespace, targets)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.sync()
            except Exception as error:  # the apiserver may be stopping; keep the last targets
                print(f"(pod targets not refreshed: {error})", flush=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for endpoint in self._stand_ins.values():
            endpoint.close()
