"""Names, labels and ownership shared by every child of a VoiceAgent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_worker.config import Settings

from .spec import API_VERSION, KIND

FIELD_MANAGER = "voiceagent-operator"
PART_OF = "agent-worker"
WORKER = "worker"
OLLAMA = "ollama"
OLLAMA_PORT = 11434
HEALTH_PORT: int = Settings.model_fields["health_port"].default  # livekit's health check (GET /)
CONFIG_HASH_ANNOTATION = "agentworker.io/config-hash"
APPLIED_HASH_ANNOTATION = "agentworker.io/applied-hash"  # on each child: a digest of what was last applied
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


@dataclass(frozen=True)
class Owner:
    """The VoiceAgent whose children are being built."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""))

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    # Child names.
    @property
    def worker(self) -> str:
        return f"{self.name}-worker"

    @property
    def worker_config(self) -> str:
        return f"{self.name}-worker-config"

    @property
    def ollama(self) -> str:
        return f"{self.name}-ollama"

    @property
    def ollama_models(self) -> str:
        return f"{self.name}-ollama-models"

    def ollama_url(self) -> str:
        """The managed Ollama's OpenAI-compatible endpoint, as the worker pods reach it."""
        return f"http://{self.ollama}.{self.namespace}.svc:{OLLAMA_PORT}/v1"


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """The immutable labels a Deployment selects its pods by."""
    return {
        "app.kubernetes.io/name": "agent-worker" if component == WORKER else "ollama",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
    }


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        **selector_labels(owner, component),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
    }


def selector_string(owner: Owner) -> str:
    """The worker pods' selector as `kubectl` and the scale subresource write it."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(owner, WORKER).items())


def metadata(owner: Owner, name: str, component: str, *, owned: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": owner.namespace, "labels": labels(owner, component)}
    if owned:
        meta["ownerReferences"] = [owner.reference()]
    return meta


# The worker image runs as its own numeric non-root user; runAsNonRoot makes the kubelet check it.
RESTRICTED_POD_SECURITY: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}

RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def present(**values: Any) -> dict[str, Any]:
    """Only the optional fields that are set (the apiserver drops empty ones, so never send them)."""
    return {key: value for key, value in values.items() if value}


def deployment(
    owner: Owner,
    name: str,
    component: str,
    *,
    replicas: int,
    strategy: dict[str, Any],
    pod_spec: dict[str, Any],
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    template_meta: dict[str, Any] = {"labels": labels(owner, component), **present(annotations=pod_annotations)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, name, component),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(owner, component)},
            "strategy": strategy,
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }
