"""The product as users run it, on the test bed's real node: the chart helm-installed with the
operator image, VoiceAgents whose worker pods run the worker image, Prometheus discovering those
pods through the apiserver, and every container's log kept for the test to read.

  install_chart(...)     `helm install` of charts/agent-worker onto the real node, watching one namespace
  node_spec(...)         a VoiceAgent spec whose workers run on the real node against the test bed
  pod_scrape_config(...) Prometheus `kubernetes_sd` for a namespace's annotated pods
  operator_scrape_config(...)  the same for the chart's operator pods, at their `metrics` port
  PodLogs                follows every container's log in a namespace into files
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch

from . import node as real_node
from .control_plane import ControlPlane
from .operator import CHART, RESTRICTED, helm
from .processes import wait_until
from .services import LiveKit, ModelServer, SpeechServer
from .voiceagents import local_spec
from .worker import STT_MODEL

OPERATOR_IMAGE = "ghcr.io/agent-worker/voiceagent-operator"


def install_chart(plane: ControlPlane, workdir: Path, release: str, namespace: str,
                  watched: str) -> subprocess.CompletedProcess:
    """`helm install RELEASE charts/agent-worker` into `namespace` (restricted Pod Security), its
    operator on the real node watching only `watched`; returns helm's run (its argv and output)
    once the operator pod is Ready."""
    with plane.api_client() as api:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace, "labels": RESTRICTED}})
    placement = real_node.placement()
    values = [
        "--set", "operator.replicas=1", "--set", "operator.verbose=true",
        "--set", f"operator.watchNamespaces={{{watched}}}",
        "--set", "operator.resyncSeconds=2",
        "--set-json", f'operator.nodeSelector={json.dumps(placement["nodeSelector"])}',
        "--set-json", f'operator.tolerations={json.dumps(placement["tolerations"])}',
    ]
    return helm(plane, workdir, "install", release, str(CHART), "--namespace", namespace, *values,
                "--wait", "--timeout=180s")


def node_spec(livekit: LiveKit, model_server: ModelServer, speech_server: SpeechServer, *,
              main_base_url: str | None = None, model: str | None = None, **changes: Any) -> dict[str, Any]:
    """manifests/examples/voiceagent-local.yaml pointed at the test bed's servers as pods see them,
    its workers placed on the real node; `changes` replace top-level keys."""
    placement = real_node.placement()
    model = model or model_server.model
    spec = local_spec(
        livekit={"url": livekit.pod_url, "credentialsSecret": "livekit"},
        llm={"provider": "ollama", "model": model, "baseUrl": main_base_url or model_server.pod_base_url},
        preResponse={"model": model},
        stt={"provider": "openai", "model": STT_MODEL, "baseUrl": speech_server.pod_base_url},
        tts={"provider": "openai", "model": "tts-1", "baseUrl": speech_server.pod_base_url},
        nodeSelector=placement["nodeSelector"], tolerations=placement["tolerations"],
        # Small requests: the node is this machine (2 cores) and runs the callers' side too.
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "3Gi"}},
    )
    spec.update(changes)
    return spec


def pod_scrape_config(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """What a cluster's Prometheus does with the `prometheus.io/*` pod annotations the operator sets:
    discover `namespace`'s pods through the apiserver, scrape the annotated port on the pod IP, and
    label each series with its namespace and pod."""
    meta = "__meta_kubernetes_pod_"
    return {
        "job_name": "agent-worker",
        "kubernetes_sd_configs": [_pod_discovery(plane, namespace)],
        "relabel_configs": [
            {"source_labels": [f"{meta}annotation_prometheus_io_scrape"], "regex": "true", "action": "keep"},
            {"source_labels": [f"{meta}phase"], "regex": "Running", "action": "keep"},
            {"source_labels": [f"{meta}ip", f"{meta}annotation_prometheus_io_port"], "separator": ":",
             "target_label": "__address__"},
            *_namespace_and_pod(),
        ],
    }


def operator_scrape_config(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """The chart's operator pods in `namespace`, scraped at their pod IP's `metrics` port, as the
    chart's ServiceMonitor (serviceMonitor.enabled) has a cluster's Prometheus do it; labelled with
    namespace and pod."""
    meta = "__meta_kubernetes_pod_"
    return {
        "job_name": "voiceagent-operator",
        "kubernetes_sd_configs": [_pod_discovery(plane, namespace)],
        "relabel_configs": [
            {"source_labels": [f"{meta}label_app_kubernetes_io_component"], "regex": "operator", "action": "keep"},
            {"source_labels": [f"{meta}container_port_name"], "regex": "metrics", "action": "keep"},
            {"source_labels": [f"{meta}phase"], "regex": "Running", "action": "keep"},
            *_namespace_and_pod(),
        ],
    }


def _namespace_and_pod() -> list[dict[str, Any]]:
    """Relabelling that names each target's namespace and pod, as the operator's query reads them."""
    return [{"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}]


def _pod_discovery(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """kubernetes_sd of `namespace`'s pods, through the apiserver as cluster admin."""
    cert, key = plane.admin_certificate()
    tls = {"ca_file": str(plane.ca), "cert_file": str(cert), "key_file": str(key)}
    return {"role": "pod", "api_server": plane.server, "tls_config": tls, "namespaces": {"names": [namespace]}}


class PodLogs:
    """Follows the log of every container that starts in `namespace` into `directory`, so a test
    can read a pod's whole log after the pod is gone."""

    def __init__(self, api: k8s.ApiClient, namespace: str, directory: Path) -> None:
        self.core, self.namespace, self.directory = k8s.CoreV1Api(api), namespace, directory
        directory.mkdir(parents=True, exist_ok=True)
        self._followed: set[tuple[str, str, int]] = set()
        self._stop = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, name=f"pod-logs-{namespace}", daemon=True)
        self._thread.start()

    def path(self, pod: str, container: str) -> Path:
        return self.directory / f"{pod}.{container}.log"

    def text(self, pod: str, container: str) -> str:
        path = self.path(pod, container)
        return path.read_text(errors="replace") if path.exists() else ""

    def pods(self) -> list[str]:
        return sorted({path.name.split(".")[0] for path in self.directory.glob("*.log")})

    def close(self) -> None:
        self._stop.set()
        self._watch.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self._watch.stream(self.core.list_namespaced_pod, self.namespace, timeout_seconds=30):
                    self._follow_new(event["object"])
            except Exception:  # the watch is restarted; a test sees missing logs, not a crash
                if self._stop.wait(1):
                    return

    def _follow_new(self, pod: k8s.V1Pod) -> None:
        for status in pod.status.container_statuses or []:
            if not (status.state and (status.state.running or status.state.terminated)):
                continue
            key = (pod.metadata.name, status.name, status.restart_count)
            if key not in self._followed:
                self._followed.add(key)
                threading.Thread(target=self._copy, args=key, daemon=True).start()

    def _copy(self, pod: str, container: str, _restarts: int) -> None:
        try:
            stream = self.core.read_namespaced_pod_log(pod, self.namespace, container=container, follow=True,
                                                       _preload_content=False)
            with open(self.path(pod, container), "ab") as out:
                for chunk in stream.stream(1024):
                    out.write(chunk)
                    out.flush()
        except Exception as error:  # the pod went away before its log could be opened
            with open(self.path(pod, container), "a") as out:
                out.write(f"\n[PodLogs: could not follow: {error}]\n")


def wait_for_pods(api: k8s.ApiClient, namespace: str, selector: str, count: int, what: str,
                  timeout: float = 180.0) -> list[k8s.V1Pod]:
    """Waits until exactly `count` pods match `selector`, none terminating, all Ready."""
    core = k8s.CoreV1Api(api)
    found: list[list[k8s.V1Pod]] = [[]]

    def ready() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        found[0] = pods
        return len(pods) == count and all(
            p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in pods)

    wait_until(ready, what, timeout=timeout, interval=1.0)
    return found[0]
