"""Pod deletion cost before a scale-down, so the ReplicaSet removes the idlest workers first."""

from __future__ import annotations

from typing import Any

from ..naming import DELETION_COST_ANNOTATION
from .observe import PodRooms

# A ready pod whose rooms are unknown might be busy: keep it unless nothing else can go.
UNKNOWN_ROOMS_COST = 1_000_000


def deletion_costs(rooms: PodRooms) -> dict[str, str]:
    """Cost per ready pod = its active rooms; pods not listed (not ready) keep no cost and go first."""
    costs = {name: str(count) for name, count in rooms.rooms.items()}
    costs.update({name: str(UNKNOWN_ROOMS_COST) for name in rooms.unknown})
    return costs


def annotation_patches(pods: list[dict[str, Any]], costs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Merge patches for the pods whose annotation differs from its cost; no patch for the rest."""
    patches = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        current = (pod["metadata"].get("annotations") or {}).get(DELETION_COST_ANNOTATION)
        if name in costs and current != costs[name]:
            patches[name] = {"metadata": {"annotations": {DELETION_COST_ANNOTATION: costs[name]}}}
    return patches
