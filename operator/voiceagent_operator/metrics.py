"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "voiceagent_operator_reconciles_total", "Reconciliations of a VoiceAgent by outcome", ["outcome"]
)
RECONCILE_ERRORS = Counter(
    "voiceagent_operator_reconcile_errors_total", "Reconciliations that ended Degraded or failed", ["reason"]
)
RECONCILE_SECONDS = Histogram(
    "voiceagent_operator_reconcile_duration_seconds",
    "Duration of one reconciliation, including pod scrapes",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_WRITES = Counter(
    "voiceagent_operator_api_writes_total", "Write requests sent to the apiserver for children", ["kind", "action"]
)
SCALE_DECISIONS = Counter(
    "voiceagent_operator_scale_decisions_total", "Changes of a worker fleet's replica count", ["direction"]
)
_AGENT = ["namespace", "voiceagent"]
DESIRED_REPLICAS = Gauge("voiceagent_operator_desired_replicas", "Worker replicas the operator wants", _AGENT)
MAX_REPLICAS = Gauge("voiceagent_operator_max_replicas", "spec.scaling.maxReplicas", _AGENT)
ACTIVE_ROOMS = Gauge("voiceagent_operator_active_rooms", "Active rooms at the last observation", _AGENT)
UNREADABLE_PODS = Gauge(
    "voiceagent_operator_unreadable_pods", "Ready worker pods whose active rooms could not be read (no scale-down)", _AGENT
)
PER_AGENT = (DESIRED_REPLICAS, MAX_REPLICAS, ACTIVE_ROOMS, UNREADABLE_PODS)


def forget(namespace: str, name: str) -> None:
    """Drop a VoiceAgent's series (deleted, or no longer reconciled here: this replica stands by)."""
    for gauge in PER_AGENT:
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass
