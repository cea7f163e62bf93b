"""Children and worker pods from the operator's watches (Kopf indexes), so a no-op resync reads nothing.

Kopf watches each child kind and the worker pods with a server-side label selector (ours only) and
keeps each object here as compact JSON (a few KB each; decoded when a reconciliation needs it), so the
memory grows with the objects that exist, never with time. Kopf fills every index before any handler
runs, so a child missing here does not exist with our labels: an optional child the spec no longer
wants needs no read; one to create is read once first (an object of that name that is not ours must
be refused, not applied over). The answer to each of our own applies is kept until the watch catches
up with it (by resourceVersion), so the next reconciliation never acts on an older copy.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .kube import Kube
from .naming import FIELD_MANAGER, WORKER, Owner
from .scaling.observe import ReadyPod, is_ready

MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
CHILDREN_SELECTOR = f"{MANAGED_BY}={FIELD_MANAGER}"
WORKER_PODS_SELECTOR = f"{CHILDREN_SELECTOR},{COMPONENT}={WORKER}"
# (group, version, plural, kind) of every child kind; each is one watch and one index.
CHILD_KINDS = (
    ("apps", "v1", "deployments", "Deployment"),
    ("", "v1", "configmaps", "ConfigMap"),
    ("", "v1", "services", "Service"),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ("batch", "v1", "jobs", "Job"),
)
# Kinds read, not watched: a ServiceMonitor's CRD may come and go, and Kopf stops altogether when a
# watch of a kind whose CRD was just deleted answers 404. What was last read or applied is trusted
# for UNWATCHED_TTL_SECONDS (one read per object per period).
UNWATCHED_TTL_SECONDS = 300.0
INDEX_PREFIX = "children_"
# How long the answer to "is the ServiceMonitor API served" is kept, for the whole operator: a yes for
# long, a no shortly (the Prometheus Operator may be installed any time).
MONITORING_API_TTL_SECONDS = 300.0
MONITORING_API_MISSING_TTL_SECONDS = 20.0


def index_name(plural: str) -> str:
    return f"{INDEX_PREFIX}{plural}"


def _version(meta: Mapping[str, Any]) -> int:
    try:
        return int(meta.get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class Cached:
    """One object as compact JSON; `version` its resourceVersion (0 if not a number)."""

    version: int
    raw: bytes

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Cached:
        return cls(_version(body.get("metadata") or {}), json.dumps(_trimmed(body), separators=(",", ":")).encode())

    def load(self) -> dict[str, Any]:
        return json.loads(self.raw)


@dataclass(frozen=True, slots=True)
class CachedPod:
    """A worker pod: what the observer needs at once, the rest as compact JSON."""

    ready: ReadyPod | None
    cached: Cached


def _trimmed(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without the field managers nobody here reads (only ours decides what to apply)."""
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    managed = [m for m in meta.get("managedFields") or [] if m.get("manager") == FIELD_MANAGER]
    if managed:
        meta["managedFields"] = managed
    else:
        meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def index_child(body: Mapping[str, Any]) -> dict[tuple[str, str, str], Cached]:
    meta = body.get("metadata") or {}
    return {(body.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")): Cached.of(body)}


def index_worker_pod(body: Mapping[str, Any]) -> dict[tuple[str, str], CachedPod] | None:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY) != FIELD_MANAGER or labels.get(COMPONENT) != WORKER or INSTANCE not in labels:
        return None
    plain = dict(body)
    ready = ReadyPod(meta["name"], plain["status"]["podIP"]) if is_ready(plain) else None
    return {(meta.get("namespace", ""), labels[INSTANCE]): CachedPod(ready, Cached.of(body))}


def _values(store: Any) -> Iterable[Any]:
    return store if store is not None else ()


class Cache:
    """Reads for reconciliations: from the indexes when attached, else from the apiserver."""

    def __init__(self, kube: Kube | None = None) -> None:
        self._kube = kube
        self.children: dict[str, Mapping[Any, Any]] = {}  # kind -> its Kopf index
        self.pods: Mapping[Any, Any] | None = None
        self._fresh: dict[tuple[str, str, str], Cached] = {}
        self._deleted: set[tuple[str, str, str]] = set()  # our deletes the watch has not brought yet
        self._unwatched: dict[tuple[str, str, str], tuple[Cached | None, float]] = {}
        self._monitoring: tuple[bool, float] | None = None

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            raise RuntimeError("the operator has not logged in to the apiserver yet")
        return self._kube

    @kube.setter
    def kube(self, kube: Kube) -> None:
        self._kube = kube

    def attach(self, indexes: Mapping[str, Any]) -> None:
        """The Kopf indexes, as handlers receive them (the same live objects on every call)."""
        for _, _, plural, kind in CHILD_KINDS:
            if index_name(plural) in indexes:
                self.children[kind] = indexes[index_name(plural)]
        if "worker_pods" in indexes:
            self.pods = indexes["worker_pods"]

    def _indexed(self, kind: str, key: tuple[str, str, str]) -> Cached | None:
        return next(iter(_values(self.children[kind].get(key))), None)

    async def get(self, api_version: str, kind: str, namespace: str, name: str, *, wanted: bool = True) -> dict[str, Any] | None:
        """The live object. Not in the cache: read it if `wanted` (about to be created), else absent."""
        key = (kind, namespace, name)
        if kind not in self.children:
            return await self._read_unwatched(api_version, kind, namespace, name)
        indexed, fresh = self._indexed(kind, key), self._fresh.get(key)
        if fresh is not None and (indexed is None or indexed.version < fresh.version):
            return fresh.load()
        self._fresh.pop(key, None)
        if key in self._deleted:
            if indexed is not None:
                return None
            self._deleted.discard(key)
        if indexed is not None:
            return indexed.load()
        # About to be created: is a same-named object there that is not ours? The apiserver's watch
        # cache answers (a burst of new VoiceAgents asks this of every child), not etcd.
        return await self.kube.get(api_version, kind, namespace, name, from_cache=True) if wanted else None

    async def labelled(self, api_version: str, kind: str, namespace: str, wanted: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every object of a kind in a namespace carrying the `wanted` labels (our answers overlaid); a
        kind that is not watched is listed from the apiserver."""
        if kind not in self.children:
            selector = ",".join(f"{key}={value}" for key, value in wanted.items())
            return await self.kube.list(api_version, kind, namespace, selector)
        keys = {key for key in self.children[kind] if key[1] == namespace}
        keys |= {key for key in self._fresh if key[0] == kind and key[1] == namespace}
        found = []
        for key in sorted(keys):
            live = await self.get(api_version, kind, namespace, key[2], wanted=False)
            labels = ((live or {}).get("metadata") or {}).get("labels") or {}
            if live is not None and all(labels.get(k) == v for k, v in wanted.items()):
                found.append(live)
        return found

    async def _read_unwatched(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        key = (kind, namespace, name)
        kept = self._unwatched.get(key)
        if kept is None or time.monotonic() - kept[1] > UNWATCHED_TTL_SECONDS:
            live = await self.kube.get(api_version, kind, namespace, name)
            kept = (Cached.of(live) if live else None, time.monotonic())
            self._unwatched[key] = kept
        return kept[0].load() if kept[0] else None

    def remember(self, live: dict[str, Any] | None) -> None:
        """Our own write's answer: newer than the watch until the watch brings it."""
        if not live:
            return
        meta = live.get("metadata") or {}
        key = (live.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
        if key[0] in self.children:
            self._fresh[key] = Cached.of(live)
            self._deleted.discard(key)
        else:
            self._unwatched[key] = (Cached.of(live), time.monotonic())

    def removed(self, kind: str, namespace: str, name: str) -> None:
        """Our own delete: the object is known absent (a watched one until the watch brings the delete)."""
        key = (kind, namespace, name)
        if kind in self.children:
            self._fresh.pop(key, None)
            self._deleted.add(key)
        else:
            self._unwatched[key] = (None, time.monotonic())

    def forget(self, owner: Owner) -> None:
        """Drop the answers kept for a VoiceAgent's children (it is gone, or no longer reconciled here)."""
        names = {owner.worker, owner.worker_config, owner.ollama, owner.ollama_models}
        for kept in (self._fresh, self._unwatched):
            for key in [k for k in kept if k[1] == owner.namespace and k[2] in names]:
                kept.pop(key, None)
        self._deleted -= {k for k in self._deleted if k[1] == owner.namespace and k[2] in names}

    def worker_pods(self, namespace: str, name: str) -> list[dict[str, Any]] | None:
        """The VoiceAgent's worker pods from the cache; None when pods are not cached (list them)."""
        if self.pods is None:
            return None
        return [pod.cached.load() for pod in _values(self.pods.get((namespace, name)))]

    def ready_worker_pods(self, namespace: str, name: str) -> list[ReadyPod]:
        if self.pods is None:
            return []
        return [pod.ready for pod in _values(self.pods.get((namespace, name))) if pod.ready is not None]

    async def monitoring_api(self, group_version: str, resource: str) -> bool:
        """Whether ServiceMonitors are served: one discovery read per TTL for the whole operator."""
        now = time.monotonic()
        ttl = MONITORING_API_TTL_SECONDS if self._monitoring and self._monitoring[0] else MONITORING_API_MISSING_TTL_SECONDS
        if self._monitoring is None or now - self._monitoring[1] > ttl:
            self._monitoring = (await self.kube.serves(group_version, resource), now)
        return self._monitoring[0]
