"""The VoiceAgent's status: conditions (with observedGeneration) and replica/room counts.

Conditions keep their lastTransitionTime unless their status flips, so an unchanged world
produces an identical status and no write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .builders.ollama_pull import ModelsState
from .crd import CONDITION_TYPES


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""


def ready_replicas(deployment: dict[str, Any] | None) -> int:
    return int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)


def existing_replicas(deployment: dict[str, Any] | None) -> int:
    return int(((deployment or {}).get("status") or {}).get("replicas") or 0)


def worker_conditions(deployment: dict[str, Any] | None, desired: int) -> tuple[Condition, Condition]:
    """(Ready, Progressing) from the worker Deployment as last read."""
    ready, existing = ready_replicas(deployment), existing_replicas(deployment)
    updated = int(((deployment or {}).get("status") or {}).get("updatedReplicas") or 0)
    if ready >= 1:
        ready_condition = Condition("Ready", True, "WorkersReady", f"{ready} of {desired} workers ready")
    else:
        ready_condition = Condition("Ready", False, "NoWorkerReady", f"0 of {desired} workers ready")
    if deployment is None:
        progressing = Condition("Progressing", True, "Creating", "creating the worker Deployment")
    elif ready < desired or existing != desired or updated < desired:
        progressing = Condition("Progressing", True, "RollingOut", f"{ready} ready, {existing} existing, {desired} desired")
    else:
        progressing = Condition("Progressing", False, "Stable", f"{desired} workers up to date")
    return ready_condition, progressing


# The kubelet's waiting reasons for a container that will not start until the spec or the cluster changes.
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CONTAINER_CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
CRASH_LOOP_REASON = "CrashLoopBackOff"
# The Degraded reasons they map to.
IMAGE_PULL_FAILED = "ImagePullFailed"
CONTAINER_CONFIG_INVALID = "ContainerConfigInvalid"
WORKER_CRASHING = "WorkerCrashing"

MAX_DETAIL_CHARS = 300
# `NAME=value` or `"name": "value"` where the name says key, secret, token or password: the value is masked.
_SECRET_ASSIGNMENT = re.compile(
    r"""(?i)(\b[\w.-]*(?:key|secret|token|password)[\w.-]*(?:\s*=\s*["']?|["']\s*:\s*["']?))[^\s"',}]+"""
)


@dataclass(frozen=True)
class WorkerFailure:
    """Worker pods that cannot start, in the kubelet's words: the first failing pod by name, and how many fail."""

    reason: str  # IMAGE_PULL_FAILED, CONTAINER_CONFIG_INVALID or WORKER_CRASHING
    pod: str
    container: str
    image: str
    kubelet_reason: str  # e.g. ImagePullBackOff, CrashLoopBackOff
    detail: str  # the kubelet's message (or the last line the container wrote), secrets masked
    failing_pods: int

    @property
    def message(self) -> str:
        text = f"pod {self.pod}: container {self.container} image {self.image}: {self.kubelet_reason}"
        text += f": {self.detail}" if self.detail else ""
        others = self.failing_pods - 1
        return text + (f" (and {others} more failing pod{'s' if others > 1 else ''})" if others else "")

    @property
    def event_key(self) -> tuple[str, str, str]:
        """One Warning event per (reason, container, image): not again as the kubelet retries or pods come and go."""
        return (self.reason, self.container, self.image)

    def condition(self) -> Condition:
        return Condition("Degraded", True, self.reason, self.message)


def worker_failure(pods: list[dict[str, Any]]) -> WorkerFailure | None:
    """The worker pods' start-up failure, or None when every container is running or on its way.

    A container fails when the kubelet holds it waiting for a reason that a retry will not fix (image
    pull, container config), or when it is not ready and has exited before (a crash loop: a worker
    restarts even after exit code 0). A container that restarted and is ready again is not a failure;
    terminating and finished pods are ignored.
    """
    found: list[WorkerFailure] = []
    for pod in sorted(pods, key=lambda p: p.get("metadata", {}).get("name", "")):
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            failure = _container_failure(meta.get("name", ""), container)
            if failure is not None:
                found.append(failure)
                break
    if not found:
        return None
    first = found[0]
    return WorkerFailure(
        first.reason, first.pod, first.container, first.image, first.kubelet_reason, first.detail, len(found)
    )


def _container_failure(pod: str, container: dict[str, Any]) -> WorkerFailure | None:
    state, last = container.get("state") or {}, container.get("lastState") or {}
    waiting = state.get("waiting") or {}
    waiting_reason = waiting.get("reason") or ""
    name, image = container.get("name", ""), container.get("image", "")
    if waiting_reason in IMAGE_PULL_REASONS or waiting_reason in CONTAINER_CONFIG_REASONS:
        reason = IMAGE_PULL_FAILED if waiting_reason in IMAGE_PULL_REASONS else CONTAINER_CONFIG_INVALID
        return WorkerFailure(reason, pod, name, image, waiting_reason, _clean(waiting.get("message")), 1)
    if container.get("ready"):
        return None
    exited_now, exited_before = state.get("terminated") or {}, last.get("terminated") or {}
    if waiting_reason != CRASH_LOOP_REASON and not exited_now.get("exitCode") and not exited_before:
        return None
    exited = exited_now or exited_before
    kubelet_reason = waiting_reason or ("Terminated" if state.get("terminated") else "Restarted")
    detail = f"last exit code {exited.get('exitCode', '?')}"
    detail += f" ({exited['reason']})" if exited.get("reason") else ""
    said = _clean(exited.get("message"))
    return WorkerFailure(WORKER_CRASHING, pod, name, image, kubelet_reason, f"{detail}: {said}" if said else detail, 1)


def _clean(text: str | None) -> str:
    """One line of the kubelet's (or the container's) message: the last non-empty line, secrets masked, capped."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = _SECRET_ASSIGNMENT.sub(r"\1***", lines[-1]) if lines else ""
    return line if len(line) <= MAX_DETAIL_CHARS else line[: MAX_DETAIL_CHARS - 3] + "..."


def failure_conditions(failure: WorkerFailure, ready: Condition, desired: int, ready_count: int) -> tuple[Condition, Condition]:
    """(Ready, Progressing) while workers cannot start: ready workers keep serving, the rollout waits for a fix."""
    if not ready.status:
        ready = Condition("Ready", False, failure.reason, failure.message)
    progressing = Condition(
        "Progressing",
        False,
        failure.reason,
        f"{ready_count} of {desired} workers ready; new workers cannot start until the cause in Degraded is fixed, "
        "and the ready ones keep serving",
    )
    return ready, progressing


def ollama_condition(enabled: bool, deployment: dict[str, Any] | None, models: ModelsState | None) -> Condition:
    """Whether the managed Ollama serves the spec's models: its pod ready, and the current list's pull Job complete."""
    if not enabled or models is None:
        return Condition("OllamaReady", False, "Disabled", "spec.ollama.enabled is false")
    serving = ready_replicas(deployment) >= 1
    if not models.pulled:
        waiting = "" if serving else "; the Ollama pod is not ready yet"
        return Condition("OllamaReady", False, models.reason, models.message + waiting)
    if not serving:
        return Condition("OllamaReady", False, "OllamaNotReady", f"{models.message}; waiting for the Ollama pod to become ready")
    return Condition("OllamaReady", True, models.reason, models.message)


def ollama_ready(enabled: bool, deployment: dict[str, Any] | None, models: ModelsState | None) -> Condition | None:
    """Ready False while the managed Ollama cannot answer with the spec's models (None: it can, or is not used)."""
    if not enabled or models is None:
        return None
    if not models.pulled:
        return Condition("Ready", False, "ModelsNotPulled", models.message)
    if ready_replicas(deployment) < 1:
        return Condition("Ready", False, "OllamaNotReady", "waiting for the managed Ollama pod to become ready")
    return None


def monitoring_condition(enabled: bool, api_served: bool) -> Condition:
    if not enabled:
        return Condition("MonitoringReady", False, "Disabled", "spec.monitoring.serviceMonitor.enabled is false")
    if not api_served:
        return Condition(
            "MonitoringReady",
            False,
            "ServiceMonitorAPIMissing",
            "monitoring.coreos.com/v1 ServiceMonitor is not served: install the Prometheus Operator CRDs, "
            "or set spec.monitoring.serviceMonitor.enabled to false",
        )
    return Condition("MonitoringReady", True, "ServiceMonitorApplied", "the worker ServiceMonitor is in place")


@dataclass(frozen=True)
class Problem:
    """Something the operator could not do: `reason` is the Degraded reason, `message` names the object or field."""

    reason: str  # InvalidSpec, ChildNotOwned, ApplyFailed, ScaleFailed
    message: str


def degraded_condition(problems: list[Problem]) -> Condition:
    """Degraded names every current problem, one a line (the first one's reason)."""
    if not problems:
        return Condition("Degraded", False, "AsExpected", "")
    return Condition("Degraded", True, problems[0].reason, "\n".join(p.message for p in problems))


MAX_NAMED_PODS = 5


def rooms_condition(unreadable: tuple[str, ...]) -> Condition:
    """Whether every ready worker pod told its active rooms (an unreadable one blocks every scale-down)."""
    if not unreadable:
        return Condition("RoomsObserved", True, "AllPodsAnswered", "every ready worker pod reported its active rooms")
    named = ", ".join(unreadable[:MAX_NAMED_PODS]) + (f" and {len(unreadable) - MAX_NAMED_PODS} more" if len(unreadable) > MAX_NAMED_PODS else "")
    return Condition(
        "RoomsObserved", False, "PodsUnreadable",
        f"cannot read active rooms from {named}; no scale-down until they answer "
        "(check the pods' metrics port and spec.metricsPort, or spec.scaling.prometheusUrl)",
    )


def render_conditions(
    conditions: list[Condition], previous: list[dict[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    """Conditions in CRD order; a condition not given keeps its previous entry."""
    old = {c.get("type"): c for c in previous}
    new = {c.type: c for c in conditions}
    out = []
    for kind in CONDITION_TYPES:
        if kind not in new:
            if kind in old:
                out.append(old[kind])
            continue
        c = new[kind]
        status = "True" if c.status else "False"
        before = old.get(kind, {})
        since = before.get("lastTransitionTime") if before.get("status") == status else None
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "observedGeneration": generation,
                "lastTransitionTime": since or now,
            }
        )
    return out


def status_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch for the fields that differ, or None when the status is already as desired."""
    changed = {key: value for key, value in desired.items() if current.get(key) != value}
    return changed or None
