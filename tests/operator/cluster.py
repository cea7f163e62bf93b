"""An in-memory Kubernetes API (kmock) with just enough apiserver behaviour for the operator, and Kopf on it."""

from __future__ import annotations

import asyncio
import copy
import itertools
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import kmock
import yaml

from voiceagent_operator.kube import APPLY_PATCH
from voiceagent_operator.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION

NAMESPACE = "voice"
VOICEAGENTS = f"{GROUP}/{VERSION}/{PLURAL}"
SERVICE_MONITORS = "monitoring.coreos.com/v1/servicemonitors"
# Kopf waits to discover namespaces even when it runs cluster-wide (it then does not list them,
# which matters: kmock 0.8 cannot parse GET /api/v1/namespaces).
CORE = {
    "v1/namespaces": ("Namespace", False),
    "v1/events": ("Event", True),
    "v1/pods": ("Pod", True),
    "v1/services": ("Service", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "apps/v1/deployments": ("Deployment", True),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True),
    "batch/v1/jobs": ("Job", True),
}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class ApplyingEmulator(kmock.KubernetesEmulator):
    """kmock plus two apiserver behaviours the operator and Kopf rely on.

    Applying a missing object creates it (server-side apply), every write gets a fresh
    resourceVersion (Kopf waits for the version its own patch produced before going on), and
    `generateName` gets a name (Kopf's Events use it).
    """

    _versions = itertools.count(100)

    async def _handle(self, request: Any) -> Any:
        if request.action == kmock.action.UPDATE and isinstance(request.data, list):
            self._check_json_patch_tests(request)
        version = str(next(self._versions))
        if request.action == kmock.action.UPDATE and isinstance(request.data, list):  # a JSON patch
            request.data.append({"op": "replace", "path": "/metadata/resourceVersion", "value": version})
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE) and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta["resourceVersion"] = version
            if request.action == kmock.action.CREATE and meta.get("generateName") and not meta.get("name"):
                meta["name"] = f"{meta['generateName']}{meta['resourceVersion']}"
        if request.action == kmock.action.UPDATE and request.headers.get("Content-Type") == APPLY_PATCH:
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self._objects or self._objects[key].deleted:
                    if key in self._objects:
                        self._objects[key].create(request.data)
                    else:
                        self._objects[key] = request.data
                    await self._buses[request.resource].put({"type": "ADDED", "object": self._objects[key].raw})
        return await super()._handle(request)

    def _check_json_patch_tests(self, request: Any) -> None:
        """A failed `test` op is 422 Unprocessable Entity (Kopf re-reads and retries); kmock says 500."""
        key = (request.resource, request.namespace, request.name)
        live = self._objects[key].raw if key in self._objects and not self._objects[key].deleted else {}
        for op in request.data:
            if op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion":
                if live.get("metadata", {}).get("resourceVersion") != op.get("value"):
                    raise kmock.KubernetesError(status=422, reason="Invalid", message="the test operation failed")


def declare_resources(api: kmock.KubernetesEmulator, *, monitoring: bool) -> None:
    for resource, (kind, namespaced) in CORE.items():
        api.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs={"get", "list", "watch", "create", "patch", "delete"})
    api.resources[VOICEAGENTS] = kmock.ResourceInfo(
        kind=KIND, singular="voiceagent", namespaced=True, shortnames={"va"},
        verbs={"get", "list", "watch", "patch"}, subresources={"status", "scale"},
    )
    if monitoring:
        api.resources[SERVICE_MONITORS] = kmock.ResourceInfo(kind="ServiceMonitor", namespaced=True, verbs={"get", "patch"})


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "operator", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "operator", "namespace": NAMESPACE}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def voiceagent(name: str, spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "generation": generation,
            "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": copy.deepcopy(spec),
    }


def writes(api: kmock.KubernetesEmulator, since: int = 0) -> list[str]:
    """Every write request after the first `since` requests, as 'METHOD path'."""
    return [f"{r.method.value} {r.url.path}" for r in list(api)[since:] if r.method.value in WRITES]


def obj(api: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any] | None:
    key = (kmock.resource(resource), NAMESPACE, name)
    if key not in api.objects or api.objects[key].deleted:
        return None
    return copy.deepcopy(api.objects[key].raw)


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait until check() returns something truthy (or raises no AssertionError), and return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await asyncio.sleep(0.05)


async def serve(api_cls: type[kmock.KubernetesEmulator] = ApplyingEmulator) -> AsyncIterator[kmock.KubernetesEmulator]:
    async with api_cls() as api, kmock.Server(api):
        yield api
