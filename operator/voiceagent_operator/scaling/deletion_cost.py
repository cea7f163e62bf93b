"""Pod annotations that protect calls: eviction marks on busy pods, deletion costs before a scale-down.

A pod holding rooms carries `cluster-autoscaler.kubernetes.io/safe-to-evict: "false"` and
`karpenter.sh/do-not-disrupt: "true"`, so neither node autoscaler evicts it to pack nodes. Before a
scale-down each ready pod's `controller.kubernetes.io/pod-deletion-cost` is its room count (unknown:
UNKNOWN_ROOMS_COST), so the ReplicaSet removes the idlest first. An idle or unready pod carries none of
these; a ready pod whose rooms cannot be read keeps what it has (it may be busy).
"""

from __future__ import annotations

from typing import Any

from ..naming import DELETION_COST_ANNOTATION
from .observe import PodRooms

SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"
DO_NOT_DISRUPT_ANNOTATION = "karpenter.sh/do-not-disrupt"
BUSY_MARKS = {SAFE_TO_EVICT_ANNOTATION: "false", DO_NOT_DISRUPT_ANNOTATION: "true"}
# A ready pod whose rooms are unknown might be busy: keep it unless nothing else can go.
UNKNOWN_ROOMS_COST = 1_000_000


def wanted_annotations(pod: str, rooms: PodRooms, current: dict[str, str], *, scaling_down: bool) -> dict[str, str | None]:
    """The value each managed annotation of one pod should have (None: absent)."""
    if pod in rooms.unknown:
        wanted: dict[str, str | None] = {key: current.get(key) for key in (*BUSY_MARKS, DELETION_COST_ANNOTATION)}
        if scaling_down:
            wanted[DELETION_COST_ANNOTATION] = str(UNKNOWN_ROOMS_COST)
        return wanted
    count = rooms.rooms.get(pod, 0)  # not ready (not observed) counts as idle: nothing to protect
    wanted = {key: (value if count > 0 else None) for key, value in BUSY_MARKS.items()}
    if count == 0:
        wanted[DELETION_COST_ANNOTATION] = None
    else:
        wanted[DELETION_COST_ANNOTATION] = str(count) if scaling_down else current.get(DELETION_COST_ANNOTATION)
    return wanted


def pod_annotation_patches(pods: list[dict[str, Any]], rooms: PodRooms, *, scaling_down: bool) -> dict[str, dict[str, Any]]:
    """Merge patches for the pods whose managed annotations differ from the wanted ones; none for the rest."""
    patches = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        current = meta.get("annotations") or {}
        wanted = wanted_annotations(meta["name"], rooms, current, scaling_down=scaling_down)
        changes = {key: value for key, value in wanted.items() if current.get(key) != value}
        if changes:
            patches[meta["name"]] = {"metadata": {"annotations": changes}}
    return patches
