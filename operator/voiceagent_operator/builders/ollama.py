"""The managed Ollama: a GPU Deployment, its Service and its model volume.

The pod template holds no model: it changes only with the image, resources, GPUs or node placement,
so a change of models never restarts Ollama (the models come by the pull Job, `ollama_pull`)."""

from __future__ import annotations

from typing import Any

from ..naming import (
    OLLAMA,
    OLLAMA_PORT,
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    Owner,
    deployment,
    metadata,
    present,
    selector_labels,
)
from ..spec import VoiceAgentSpec

MODELS_PATH = "/models"
# The Ollama image runs as root unless told otherwise; any non-root id works, fsGroup makes the volume writable.
OLLAMA_POD_SECURITY = {**RESTRICTED_POD_SECURITY, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}


def _resources(spec: VoiceAgentSpec) -> dict[str, Any]:
    resources = {key: dict(value) for key, value in (spec.ollama.resources or {}).items()}
    gpu = spec.ollama.gpu
    if gpu.count > 0:
        resources.setdefault("limits", {})[gpu.resource_name] = gpu.count
    return resources


def ollama_deployment(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    # Read-only root filesystem: models on the volume, keys in HOME, runner scratch files in /tmp.
    mounts = [
        {"name": "models", "mountPath": MODELS_PATH},
        {"name": "home", "mountPath": "/home/ollama"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    serve = {
        "name": "ollama",
        "image": spec.ollama.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": ["serve"],
        "env": [
            {"name": "OLLAMA_HOST", "value": f"0.0.0.0:{OLLAMA_PORT}"},
            {"name": "OLLAMA_MODELS", "value": MODELS_PATH},
            {"name": "HOME", "value": "/home/ollama"},
        ],
        "ports": [{"name": "http", "containerPort": OLLAMA_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/api/tags", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 20, "failureThreshold": 6},
        "resources": _resources(spec),
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    tolerations = spec.ollama.tolerations
    if tolerations is None and spec.ollama.gpu.count > 0:
        # GPU nodes are commonly tainted with their resource name; tolerate that unless told otherwise.
        tolerations = [{"key": spec.ollama.gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"}]
    pod_spec: dict[str, Any] = {
        "securityContext": OLLAMA_POD_SECURITY,
        "containers": [serve],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": owner.ollama_models}},
            {"name": "home", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    pod_spec.update(present(nodeSelector=spec.ollama.node_selector, tolerations=tolerations, imagePullSecrets=spec.image_pull_secrets))
    # Recreate: the model volume is ReadWriteOnce, so a second pod elsewhere could not mount it. No
    # PodDisruptionBudget: with one replica it would block every node drain (docs/operator.md).
    return deployment(owner, owner.ollama, OLLAMA, replicas=1, strategy={"type": "Recreate"}, pod_spec=pod_spec)


def ollama_service(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, owner.ollama, OLLAMA),
        "spec": {
            "selector": selector_labels(owner, OLLAMA),
            "ports": [{"name": "http", "port": OLLAMA_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ollama_pvc(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    """Owned (and so garbage-collected with the VoiceAgent) only under retentionPolicy Delete."""
    storage = spec.ollama.storage
    pvc_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage.size}}}
    if storage.storage_class_name:
        pvc_spec["storageClassName"] = storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(owner, owner.ollama_models, OLLAMA, owned=storage.retention_policy == "Delete"),
        "spec": pvc_spec,
    }
