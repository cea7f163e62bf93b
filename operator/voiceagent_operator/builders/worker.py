"""The worker fleet: Deployment, metrics Service and PodDisruptionBudget."""

from __future__ import annotations

from typing import Any

from ..naming import (
    CONFIG_HASH_ANNOTATION,
    HEALTH_PORT,
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    WORKER,
    Owner,
    deployment,
    metadata,
    present,
    selector_labels,
)
from ..spec import VoiceAgentSpec
from .worker_config import config_data, config_hash, secret_env

# Sized for the default targetActiveRoomsPerReplica (4) from `make bench-density` (README "Sizing"):
# 0.17-0.25 of a core per call, so one core holds 4-5 calls at full use; memory ~280 MB for the worker,
# ~180 MB per call and ~125 MB per warm idle process (2 kept): 280 + 4 x 180 + 2 x 125 = 1250 MB; the
# limit holds the session cap's 8 calls (1970 MB).
DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "1", "memory": "1280Mi"}, "limits": {"memory": "2Gi"}}


def _health_probe(period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/", "port": "health"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def worker_container(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    return {
        "name": "agent-worker",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": ["start"],
        "ports": [
            {"name": "metrics", "containerPort": spec.metrics_port, "protocol": "TCP"},
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "envFrom": [{"configMapRef": {"name": owner.worker_config}}],
        "env": [*secret_env(owner, spec), *(spec.env or [])],
        "resources": spec.resources or DEFAULT_RESOURCES,
        "startupProbe": _health_probe(period=5, failures=60),
        # Ready = registered with livekit-server and not draining (the worker's /ready): livekit's
        # health answers before registration, and a rollout would stop an old pod too soon.
        "readinessProbe": {**_health_probe(period=2, failures=2), "httpGet": {"path": "/ready", "port": "metrics"}},
        "livenessProbe": _health_probe(period=20, failures=3),
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        # A worker that exits on an error leaves its last log lines (e.g. a configuration error) in the pod's
        # status, where the operator reports them in the VoiceAgent's Degraded condition.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # The root filesystem is read-only; the image keeps HOME and the metrics directory in /tmp.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def worker_deployment(owner: Owner, spec: VoiceAgentSpec, replicas: int) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "securityContext": RESTRICTED_POD_SECURITY,
        # The worker never calls the Kubernetes API: no token in its pods.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "containers": [worker_container(owner, spec)],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    pod_spec.update(
        present(
            imagePullSecrets=spec.image_pull_secrets,
            nodeSelector=spec.node_selector,
            tolerations=spec.tolerations,
            affinity=spec.affinity,
        )
    )
    annotations = {
        CONFIG_HASH_ANNOTATION: config_hash(config_data(owner, spec)),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spec.metrics_port),
        "prometheus.io/path": "/metrics",
    }
    # Keep serving capacity during a rollout: new pods first, old ones drain their rooms. With no pod allowed to
    # be unavailable, a new ReplicaSet whose pods never become ready (bad image, crash loop) replaces nothing.
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}
    return deployment(
        owner, owner.worker, WORKER, replicas=replicas, strategy=strategy, pod_spec=pod_spec, pod_annotations=annotations
    )


def worker_service(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    """Headless: it exists so that a ServiceMonitor (or a person) can find the worker pods' metrics."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, owner.worker, WORKER),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(owner, WORKER),
            "ports": [{"name": "metrics", "port": spec.metrics_port, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def worker_pdb(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    """Voluntary disruptions (node drains) take one worker at a time, each draining its rooms."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, owner.worker, WORKER),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner, WORKER)}},
    }
