"""The worker fleet's ServiceMonitor (Prometheus Operator)."""

from __future__ import annotations

from typing import Any

from ..naming import WORKER, Owner, metadata, selector_labels
from ..spec import VoiceAgentSpec

SERVICE_MONITOR_GROUP_VERSION = "monitoring.coreos.com/v1"


def service_monitor(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    settings = spec.monitoring.service_monitor
    meta = metadata(owner, owner.worker, WORKER)
    meta["labels"] = {**(settings.labels or {}), **meta["labels"]}
    return {
        "apiVersion": SERVICE_MONITOR_GROUP_VERSION,
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, WORKER)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": settings.interval}],
        },
    }
