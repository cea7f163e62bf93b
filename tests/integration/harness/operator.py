"""The VoiceAgent operator on the test bed: the chart installed with real helm, and operator
processes from this checkout that authenticate with a token of the chart's ServiceAccount, so every
request they make is authorized by the chart's RBAC and nothing else.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client as k8s

from .control_plane import WRITE_VERBS, ControlPlane
from .processes import LOOPBACK, REPO_ROOT, Process, binary, free_port, metric_value, wait_until

CHART = REPO_ROOT / "charts" / "agent-worker"
RELEASE = "agent-worker"
OPERATOR_ACCOUNT = f"{RELEASE}-operator"  # the chart's ServiceAccount for release "agent-worker"
PEERING = f"{RELEASE}-operator"  # the chart's ClusterKopfPeering, passed as --peering as the chart does
OPERATOR_PROGRAM = REPO_ROOT / ".venv" / "bin" / "voiceagent-operator"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}
# Kopf pauses every peer of the highest priority when two share it; each operator started here
# outranks the ones before it, so a restarted operator takes over at once from a killed one.
_priorities = itertools.count(1000)


@dataclass(frozen=True)
class InstalledChart:
    namespace: str
    release: str
    operator_kubeconfig: Path  # a token of the chart's ServiceAccount
    operator_user: str  # "system:serviceaccount:NS:NAME", as the apiserver names it


def helm(plane: ControlPlane, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Real helm with its cache, config and data in `workdir`, as cluster admin."""
    env = {
        **os.environ, "KUBECONFIG": str(plane.kubeconfig),
        "HELM_CACHE_HOME": str(workdir / "helm-cache"), "HELM_CONFIG_HOME": str(workdir / "helm-config"),
        "HELM_DATA_HOME": str(workdir / "helm-data"),
    }
    result = subprocess.run([binary("helm"), *args], env=env, capture_output=True, text=True, timeout=180)
    if result.returncode:
        raise RuntimeError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def install_chart(plane: ControlPlane, workdir: Path, namespace: str,
                  namespace_labels: dict[str, str] | None = None) -> InstalledChart:
    """`helm install agent-worker charts/agent-worker` into `namespace` (created here with
    `namespace_labels`, e.g. RESTRICTED), waiting for the chart's operator pods to be Ready."""
    with plane.api_client() as api:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace, "labels": namespace_labels or {}}})
    helm(plane, workdir, "install", RELEASE, str(CHART), "--namespace", namespace, "--wait", "--timeout=120s")
    with plane.api_client() as api:
        # Until the new resource's watch cache is initialized, lists answer 429 and clients retry
        # after a backoff; an operator replica paused meanwhile would still process that late list.
        custom = k8s.CustomObjectsApi(api)
        wait_until(lambda: custom.list_cluster_custom_object("agentworker.io", "v1alpha1", "voiceagents",
                                                             resource_version="0", limit=1) is not None,
                   "the VoiceAgent watch cache to be ready", timeout=60)
    return InstalledChart(
        namespace, RELEASE, plane.kubeconfig_for_service_account(namespace, OPERATOR_ACCOUNT),
        f"system:serviceaccount:{namespace}:{OPERATOR_ACCOUNT}",
    )


@dataclass(frozen=True)
class OperatorCommand:
    argv: list[str]
    env: dict[str, str]
    metrics_url: str
    health_url: str


# The fleet observation interval (VOICEAGENT_OBSERVE_SECONDS; 5 s by default): 1 s here, so that a change
# of rooms or of pod readiness reaches the status within about a second.
OBSERVE_SECONDS = 1.0


def operator_command(kubeconfig: Path, resync_seconds: float = 1.0, *extra: str) -> OperatorCommand:
    """`voiceagent-operator run --all-namespaces` as the chart runs it (with peering), on free
    loopback ports, reconciling every `resync_seconds` and observing rooms every OBSERVE_SECONDS."""
    metrics_port, health_port = free_port(), free_port()
    health_url = f"http://{LOOPBACK}:{health_port}/healthz"
    return OperatorCommand(
        argv=[str(OPERATOR_PROGRAM), "run", "--all-namespaces", f"--liveness={health_url}",
              f"--priority={next(_priorities)}", f"--peering={PEERING}", *extra],
        env={"KUBECONFIG": str(kubeconfig), "VOICEAGENT_RESYNC_SECONDS": str(resync_seconds),
             "VOICEAGENT_METRICS_PORT": str(metrics_port), "VOICEAGENT_SCRAPE_TIMEOUT_SECONDS": "1",
             "VOICEAGENT_OBSERVE_SECONDS": str(OBSERVE_SECONDS)},
        metrics_url=f"http://{LOOPBACK}:{metrics_port}/metrics",
        health_url=health_url,
    )


@dataclass(frozen=True)
class RunningOperator:
    process: Process
    command: OperatorCommand

    def metric(self, series: str) -> float:
        return metric_value(self.command.metrics_url, series)


def delete_every_voiceagent(api: k8s.ApiClient, operator: Process, timeout: float = 60.0) -> None:
    """Deletes every VoiceAgent in the cluster and waits until the running `operator` has let them go."""
    custom = k8s.CustomObjectsApi(api)
    args = ("agentworker.io", "v1alpha1")
    for agent in custom.list_cluster_custom_object(*args, "voiceagents")["items"]:
        meta = agent["metadata"]
        custom.delete_namespaced_custom_object(*args, meta["namespace"], "voiceagents", meta["name"])
    wait_until(lambda: not custom.list_cluster_custom_object(*args, "voiceagents")["items"],
               "every VoiceAgent to be deleted", operator, timeout)


def writes_of(plane: ControlPlane, user: str, namespace: str) -> list[str]:
    """Every write `user` sent in `namespace` so far, as "verb requestURI"."""
    return [f"{e['verb']} {e['requestURI']}" for e in plane.audit_events(user, WRITE_VERBS, namespace)]


def quiet_for(plane: ControlPlane, user: str, namespace: str, seconds: float) -> bool:
    """True once `user` has written nothing in `namespace` for `seconds` (and has written before)."""
    written = len(plane.audit_events(user, WRITE_VERBS, namespace))
    time.sleep(seconds)
    return written > 0 and len(plane.audit_events(user, WRITE_VERBS, namespace)) == written


def example(name: str) -> dict:
    """A VoiceAgent from manifests/examples/ (the file's first document)."""
    return yaml.safe_load((REPO_ROOT / "manifests" / "examples" / name).read_text())
