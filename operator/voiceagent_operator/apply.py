"""The one way children reach the cluster: server-side apply, skipped when the live object already matches.

A server-side apply PATCH is a write even when it changes nothing, so the operator decides not to
send it: the desired manifest is compared with the live object, field by field, and only a
difference (or a missing object) causes a request. That is what makes a no-op resync write nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from .kube import Kube

log = logging.getLogger(__name__)


def _same_scalar(desired: Any, live: Any) -> bool:
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if desired == live:
        return True
    # The apiserver rewrites quantities ("0.5" -> "500m", 1 -> "1"): compare their values.
    if isinstance(desired, (str, int)) and isinstance(live, (str, int)):
        try:
            return Decimal(parse_quantity(desired)) == Decimal(parse_quantity(live))
        except (ValueError, ArithmeticError):
            return False
    return False


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def matches(desired: Any, live: Any) -> bool:
    """Whether every field the operator sets has its value in the live object.

    Fields the apiserver or other controllers add (defaults, status, managedFields) are ignored;
    empty values the apiserver drops count as present.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return _empty(desired) and _empty(live)
        return all(
            matches(value, live.get(key)) if key in live else _empty(value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list):
            return _empty(desired) and _empty(live)
        return len(desired) == len(live) and all(matches(d, l) for d, l in zip(desired, live))
    return _same_scalar(desired, live)


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    action: str  # "unchanged", "applied" or "deleted"
    live: dict[str, Any] | None


def _ident(manifest: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = manifest["metadata"]
    return manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]


async def ensure_present(kube: Kube, manifest: dict[str, Any]) -> Applied:
    api_version, kind, namespace, name = _ident(manifest)
    live = await kube.get(api_version, kind, namespace, name)
    if live is not None and matches(manifest, live):
        return Applied(kind, name, "unchanged", live)
    log.info("applying %s %s/%s", kind, namespace, name)
    return Applied(kind, name, "applied", await kube.apply(manifest))


async def ensure_absent(kube: Kube, manifest: dict[str, Any], owner_uid: str) -> Applied:
    """Delete an optional child the spec no longer asks for, but only one this VoiceAgent owns."""
    api_version, kind, namespace, name = _ident(manifest)
    live = await kube.get(api_version, kind, namespace, name)
    owners = (live or {}).get("metadata", {}).get("ownerReferences") or []
    if live is None or not any(ref.get("uid") == owner_uid for ref in owners):
        return Applied(kind, name, "unchanged", live)
    log.info("deleting %s %s/%s", kind, namespace, name)
    await kube.delete(api_version, kind, namespace, name)
    return Applied(kind, name, "deleted", None)
