"""The product as users run it, on the test bed's real node: the chart helm-installed with the
operator image, VoiceAgents whose worker pods run the worker image, Prometheus discovering those
pods through the apiserver, and every container's log kept for the test to read.

  running_fleet(...)     context manager: the chart installed onto the real node watching a namespace
                         that holds the livekit Secret, every container's log followed -> Fleet
  in_thread(...)         an async context manager (e.g. slower_model) kept open across tests
  install_chart(...)     `helm install` of charts/agent-worker onto the real node, watching one namespace
  node_spec(...)         a VoiceAgent spec whose workers run on the real node against the test bed
  pod_scrape_config(...) Prometheus `kubernetes_sd` for a namespace's annotated pods
  operator_scrape_config(...)  the same for the chart's operator pods, at their `metrics` port
  PodLogs                follows every container's log in a namespace into files
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch

from . import node as real_node
from .caller import Conversation, joined
from .control_plane import ControlPlane
from .operator import CHART, RESTRICTED, helm
from .processes import wait_until
from .services import LiveKit, ModelServer, SpeechServer
from .voiceagents import GROUP, PLURAL, VERSION, Agents, local_spec

OPERATOR_IMAGE = "ghcr.io/agent-worker/voiceagent-operator"
# The pods hear through the speech server's OpenAI batch endpoint (the worker on the host uses its
# Deepgram streaming one): a non-realtime model, so the plugin posts to /v1/audio/transcriptions.
STT_MODEL = "whisper-1"


@dataclass
class Fleet:
    """The chart's operator on the real node (release `release` in `chart_namespace`) and the
    VoiceAgents of `agents.namespace`, with every container's log (`logs`, `operator_logs`)."""

    plane: ControlPlane
    node: real_node.Node
    release: str
    chart_namespace: str
    agents: Agents
    logs: "PodLogs"
    operator_logs: "PodLogs"
    livekit: LiveKit
    workdir: Path

    def call(self, room: str) -> contextlib.AbstractAsyncContextManager[Conversation]:
        return joined(self.livekit.url, self.livekit.api_key, self.livekit.api_secret, room, join_timeout=60.0)


@contextlib.contextmanager
def running_fleet(plane: ControlPlane, node: real_node.Node, livekit: LiveKit, workdir: Path, *,
                  release: str = "fleet", chart_namespace: str = "fleet", agents_namespace: str = "voice") -> Iterator[Fleet]:
    """Creates `agents_namespace` with the Secret "livekit" (the test bed's keys), helm-installs the
    chart watching it, and on exit deletes every VoiceAgent (while the operator still runs), waits
    for their pods to go, uninstalls the chart and deletes both namespaces."""
    workdir.mkdir(parents=True, exist_ok=True)
    api = plane.api_client()
    core = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": agents_namespace}})
    core.create_namespaced_secret(agents_namespace, {"metadata": {"name": "livekit"}, "stringData": {
        "LIVEKIT_API_KEY": livekit.api_key, "LIVEKIT_API_SECRET": livekit.api_secret}})
    fleet = Fleet(plane, node, release, chart_namespace, Agents(api, agents_namespace),
                  PodLogs(api, agents_namespace, workdir / "pod-logs"),
                  PodLogs(api, chart_namespace, workdir / "operator-logs"), livekit, workdir)
    try:
        install_chart(plane, workdir, release, chart_namespace, watched=agents_namespace)
        yield fleet
    finally:
        custom = k8s.CustomObjectsApi(api)
        for agent in custom.list_namespaced_custom_object(GROUP, VERSION, agents_namespace, PLURAL)["items"]:
            fleet.agents.delete(agent["metadata"]["name"])
        wait_until(lambda: not core.list_namespaced_pod(agents_namespace).items, "the fleet's workers to go", timeout=180)
        helm(plane, workdir, "uninstall", release, "--namespace", chart_namespace, "--wait")
        fleet.logs.close()
        fleet.operator_logs.close()
        core.delete_namespace(agents_namespace)
        core.delete_namespace(chart_namespace)
        api.close()


@contextlib.contextmanager
def in_thread(context: contextlib.AbstractAsyncContextManager[str]) -> Iterator[str]:
    """Enters an async context manager on an event loop of its own, in a thread, so what it serves
    (a proxy, say) outlives each test's own loop; exits it at the end."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="in-thread", daemon=True)
    thread.start()
    try:
        value = asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(60)
        try:
            yield value
        finally:
            asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop).result(60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


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
        # The node is this machine (2 cores), and its pods share them with the test bed's own
        # programs (Ollama, livekit-server, the callers), each of which weighs as much as a 1-CPU
        # request (a request is a pod's cpu.shares): 700m keeps a worker nearly level with them,
        # and two workers (a scale-up, a rollout's surge) and the operator within the node's 2 CPUs.
        resources={"requests": {"cpu": "700m", "memory": "512Mi"}, "limits": {"memory": "3Gi"}},
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
