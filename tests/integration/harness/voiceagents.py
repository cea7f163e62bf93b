"""VoiceAgents on the test bed's apiserver: create, patch, read, and wait for their status."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .operator import example
from .processes import Process, wait_until

GROUP, VERSION, PLURAL = "agentworker.io", "v1alpha1", "voiceagents"
WORKER_SELECTOR = "app.kubernetes.io/component=worker,app.kubernetes.io/instance={name}"
LIVEKIT_SECRET = {"LIVEKIT_API_KEY": "testbed", "LIVEKIT_API_SECRET": "testbed-secret"}


def local_spec(**changes: Any) -> dict[str, Any]:
    """The spec of manifests/examples/voiceagent-local.yaml (no provider keys), top-level keys replaced."""
    spec = copy.deepcopy(example("voiceagent-local.yaml")["spec"])
    spec.update(copy.deepcopy(changes))
    return spec


def body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent", "metadata": {"name": name}, "spec": spec}


class Agents:
    """VoiceAgents of one namespace, through an admin client."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.custom = k8s.CustomObjectsApi(api)
        self.apps, self.core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)

    def create_livekit_secret(self, name: str = "livekit") -> None:
        self.core.create_namespaced_secret(self.namespace, {"metadata": {"name": name}, "stringData": LIVEKIT_SECRET})

    def create(self, name: str, spec: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body(name, spec),
            dry_run="All" if dry_run else None, field_validation="Strict")

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch)

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        conditions = (self.get(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == kind), None)

    def wait_for_condition(self, name: str, kind: str, status: str, process: Process | None = None,
                           timeout: float = 60.0, reason: str | None = None) -> dict[str, Any]:
        last: list[dict[str, Any] | None] = [None]

        def reached() -> bool:
            found = last[0] = self.condition(name, kind)
            return bool(found and found["status"] == status and (reason is None or found.get("reason") == reason))
        try:
            wait_until(reached, f"VoiceAgent {name} {kind}={status} {reason or ''}", process, timeout)
        except Exception as error:
            raise AssertionError(f"VoiceAgent {name}: {kind} is {last[0]}, expected {status} {reason or ''}") from error
        return last[0]

    def worker_pods(self, name: str, ready_only: bool = True) -> list[k8s.V1Pod]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=WORKER_SELECTOR.format(name=name)).items
        pods = [p for p in pods if p.metadata.deletion_timestamp is None]
        if ready_only:
            pods = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        return sorted(pods, key=lambda p: p.metadata.name)
