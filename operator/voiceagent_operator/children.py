"""The one way children reach the cluster: read (from the cache), decide (`apply.decide_apply`), then apply or not.

Server-side apply under one field manager; each child on its own, so that one child the apiserver
refuses (an immutable field, a name someone else holds) does not stop the others (the worker
Deployment, and with it scaling, above all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .apply import CREATE, REFUSE, SKIP, ApplyDecision, decide_apply, stamped
from .cache import Cache
from .kube import ApiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    """What happened to one child: `decision` says why; `live` is ours after it (None if refused or failed)."""

    kind: str
    name: str
    decision: ApplyDecision
    live: dict[str, Any] | None
    error: ApiError | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


def _ident(manifest: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = manifest["metadata"]
    return manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]


async def apply_child(cache: Cache, manifest: dict[str, Any], owner_uid: str) -> Applied:
    api_version, kind, namespace, name = _ident(manifest)
    desired = stamped(manifest)
    try:
        live = await cache.get(api_version, kind, namespace, name)
        decision = decide_apply(desired, live, owner_uid)
        if decision.action == REFUSE:
            return Applied(kind, name, decision, None)
        if decision.action == SKIP:
            return Applied(kind, name, decision, live)
        log.info("applying %s %s/%s: %s", kind, namespace, name, decision.reason)
        # Forced: fields another manager took over on an object of ours are taken back.
        applied = await cache.kube.apply(desired, force=decision.action != CREATE)
        cache.remember(applied)
        return Applied(kind, name, decision, applied)
    except ApiError as exc:
        log.warning("cannot apply %s %s/%s: %s", kind, namespace, name, exc)
        return Applied(kind, name, ApplyDecision("failed", str(exc)), None, exc)


async def remove_child(cache: Cache, manifest: dict[str, Any], owner_uid: str) -> Applied:
    """Delete an optional child the spec no longer asks for, but only one this VoiceAgent owns."""
    api_version, kind, namespace, name = _ident(manifest)
    try:
        live = await cache.get(api_version, kind, namespace, name, wanted=False)
        owners = (live or {}).get("metadata", {}).get("ownerReferences") or []
        if live is None or not any(ref.get("uid") == owner_uid for ref in owners):
            return Applied(kind, name, ApplyDecision(SKIP, "absent or not ours"), None)
        log.info("deleting %s %s/%s", kind, namespace, name)
        await cache.kube.delete(api_version, kind, namespace, name)
        cache.removed(kind, namespace, name)
        return Applied(kind, name, ApplyDecision("delete", "deleted: no longer in the spec"), None)
    except ApiError as exc:
        return Applied(kind, name, ApplyDecision("failed", str(exc)), None, exc)
