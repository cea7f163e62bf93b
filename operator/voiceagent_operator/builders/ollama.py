"""The managed Ollama: a GPU Deployment whose init container pulls the models, its Service and PVC."""

from __future__ import annotations

from typing import Any

from agent_worker.config import DEFAULT_MODELS

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
from .worker_config import fast_llm, main_llm

MODELS_PATH = "/models"
# The Ollama image runs as root unless told otherwise; any non-root id works, fsGroup makes the volume writable.
OLLAMA_POD_SECURITY = {**RESTRICTED_POD_SECURITY, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}

# Starts a private server, pulls every model into the volume, stops. The serving container starts
# only afterwards, so "Ollama ready" implies "models present".
PULL_SCRIPT = """set -eu
ollama serve &
server=$!
until ollama list >/dev/null 2>&1; do sleep 1; done
for model in $OLLAMA_PULL_MODELS; do
  echo "pulling $model"
  ollama pull "$model"
done
kill "$server"
wait "$server" || true
"""


def pulled_models(owner: Owner, spec: VoiceAgentSpec) -> list[str]:
    """ollama.models plus whatever model the main and fast LLM ask the managed Ollama for."""
    models = list(spec.ollama.models)
    roles = [(main_llm(owner, spec), "main")]
    if spec.pre_response.enabled:
        roles.append((fast_llm(owner, spec), "fast"))
    for wiring, role in roles:
        if wiring.provider == "ollama" and wiring.base_url == owner.ollama_url():
            models.append(wiring.model or DEFAULT_MODELS[("ollama", role)])
    return list(dict.fromkeys(models))


def _resources(spec: VoiceAgentSpec) -> dict[str, Any]:
    resources = {key: dict(value) for key, value in (spec.ollama.resources or {}).items()}
    gpu = spec.ollama.gpu
    if gpu.count > 0:
        resources.setdefault("limits", {})[gpu.resource_name] = gpu.count
    return resources


def _env(models: list[str], host: str) -> list[dict[str, str]]:
    return [
        {"name": "OLLAMA_HOST", "value": host},
        {"name": "OLLAMA_MODELS", "value": MODELS_PATH},
        {"name": "OLLAMA_PULL_MODELS", "value": " ".join(models)},
        {"name": "HOME", "value": "/home/ollama"},
    ]


def ollama_deployment(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    models = pulled_models(owner, spec)
    # Read-only root filesystem: models on the volume, keys in HOME, runner scratch files in /tmp.
    mounts = [
        {"name": "models", "mountPath": MODELS_PATH},
        {"name": "home", "mountPath": "/home/ollama"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    common = {"image": spec.ollama.image, "imagePullPolicy": spec.image_pull_policy, "securityContext": RESTRICTED_CONTAINER_SECURITY}
    pull = {
        **common,
        "name": "pull-models",
        "command": ["/bin/sh", "-c", PULL_SCRIPT],
        "env": _env(models, f"127.0.0.1:{OLLAMA_PORT}"),
        "volumeMounts": mounts,
    }
    serve = {
        **common,
        "name": "ollama",
        "args": ["serve"],
        "env": _env(models, f"0.0.0.0:{OLLAMA_PORT}"),
        "ports": [{"name": "http", "containerPort": OLLAMA_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/api/tags", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 20, "failureThreshold": 6},
        "resources": _resources(spec),
        "volumeMounts": mounts,
    }
    tolerations = spec.ollama.tolerations
    if tolerations is None and spec.ollama.gpu.count > 0:
        # GPU nodes are commonly tainted with their resource name; tolerate that unless told otherwise.
        tolerations = [{"key": spec.ollama.gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"}]
    pod_spec: dict[str, Any] = {
        "securityContext": OLLAMA_POD_SECURITY,
        "initContainers": [pull],
        "containers": [serve],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": owner.ollama_models}},
            {"name": "home", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    pod_spec.update(present(nodeSelector=spec.ollama.node_selector, tolerations=tolerations, imagePullSecrets=spec.image_pull_secrets))
    # Recreate: the model volume is ReadWriteOnce.
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
