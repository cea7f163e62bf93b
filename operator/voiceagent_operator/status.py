"""The VoiceAgent's status: conditions (with observedGeneration) and replica/room counts.

Conditions keep their lastTransitionTime unless their status flips, so an unchanged world
produces an identical status and no write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def ollama_condition(enabled: bool, deployment: dict[str, Any] | None) -> Condition:
    if not enabled:
        return Condition("OllamaReady", False, "Disabled", "spec.ollama.enabled is false")
    if ready_replicas(deployment) >= 1:
        return Condition("OllamaReady", True, "ModelsServed", "Ollama is serving its pulled models")
    return Condition("OllamaReady", False, "PullingModels", "waiting for Ollama to pull its models and become ready")


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


def degraded_condition(problem: str | None, reason: str = "") -> Condition:
    if problem is None:
        return Condition("Degraded", False, "AsExpected", "")
    return Condition("Degraded", True, reason, problem)


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
