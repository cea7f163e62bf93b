"""Pure functions from a VoiceAgent spec to the manifests of its children, one module per concern."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..naming import Owner
from ..spec import VoiceAgentSpec
from .monitoring import service_monitor
from .ollama import ollama_deployment, ollama_pvc, ollama_service
from .ollama_pull import ollama_pull_job
from .worker import worker_deployment, worker_pdb, worker_service
from .worker_config import worker_configmap


@dataclass(frozen=True)
class Children:
    """Every child a spec asks for, and the optional ones it asks to be absent."""

    present: list[dict[str, Any]]
    absent: list[dict[str, Any]]


def desired_children(owner: Owner, spec: VoiceAgentSpec, replicas: int, *, monitoring_api: bool) -> Children:
    """The whole desired state; `absent` holds optional children to remove if they exist."""
    present = [
        worker_configmap(owner, spec),
        worker_service(owner, spec),
        worker_pdb(owner, spec),
        worker_deployment(owner, spec, replicas),
    ]
    absent: list[dict[str, Any]] = []
    ollama = [ollama_pvc(owner, spec), ollama_service(owner, spec), ollama_deployment(owner, spec), ollama_pull_job(owner, spec)]
    if spec.ollama.enabled:
        present[:0] = ollama
    else:
        absent += ollama  # a retained model volume carries no ownerReference, so it is never deleted
    monitor = service_monitor(owner, spec)
    if spec.monitoring.service_monitor.enabled and monitoring_api:
        present.append(monitor)
    elif monitoring_api:
        absent.append(monitor)
    return Children(present=present, absent=absent)
