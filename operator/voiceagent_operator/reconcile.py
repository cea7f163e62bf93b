"""One level-based reconciliation of a VoiceAgent: observe, decide, apply, report.

Every call computes the whole desired state from the spec and the live world; the apply layer
writes only what differs and the status is patched only when it changed, so repeating a
reconciliation against an unchanged world sends no write at all.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from . import metrics
from .apply import ensure_absent, ensure_present
from .builders import desired_children
from .builders.monitoring import SERVICE_MONITOR_GROUP_VERSION
from .kube import ApiError, Kube
from .naming import Owner, selector_string
from .scaling.deletion_cost import annotation_patches, deletion_costs
from .scaling.observe import observe
from .scaling.policy import Decision, History, Observation, decide
from .spec import API_VERSION, KIND, SpecError, VoiceAgentSpec, parse_spec
from .status import (
    Condition,
    WorkerFailure,
    degraded_condition,
    existing_replicas,
    failure_conditions,
    monitoring_condition,
    ollama_condition,
    ready_replicas,
    render_conditions,
    status_patch,
    worker_conditions,
    worker_failure,
)

log = logging.getLogger(__name__)

# (type, reason, message) -> an Event on the VoiceAgent.
EventSink = Callable[[str, str, str], None]


@dataclass
class AgentMemory:
    """What the operator remembers about one VoiceAgent between reconciliations."""

    history: History = field(default_factory=History)
    # The status this operator last wrote (the apiserver's answer): the watched body can lag behind it.
    written_status: dict[str, Any] | None = None
    # The problem last reported as a Warning event, so that a resync does not repeat it.
    reported_problem: str | None = None
    # The worker start-up failure last reported as a Warning event (WorkerFailure.event_key).
    reported_failure: tuple[str, str, str] | None = None
    # Ready pods whose rooms could not be read at the last observation (logged when it changes).
    unreadable_pods: tuple[str, ...] = ()


@dataclass(frozen=True)
class Context:
    kube: Kube
    body: dict[str, Any]
    memory: AgentMemory
    now: datetime.datetime
    scrape_timeout: float
    emit: EventSink

    @property
    def owner(self) -> Owner:
        return Owner.of(self.body)

    @property
    def stamp(self) -> str:
        return self.now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def reconcile(ctx: Context) -> str:
    """Bring one VoiceAgent's children and status in line with its spec; returns the outcome."""
    # What this process last wrote is fresher than a watched body that has not caught up yet.
    status = ctx.memory.written_status or ctx.body.get("status") or {}
    try:
        spec = parse_spec(ctx.body.get("spec") or {})
        return await _reconcile_valid(ctx, spec, status)
    except SpecError as exc:
        return await _degrade(ctx, status, "InvalidSpec", str(exc))
    except ApiError as exc:
        return await _degrade(ctx, status, "ApplyFailed", str(exc))


async def _reconcile_valid(ctx: Context, spec: VoiceAgentSpec, status: dict[str, Any]) -> str:
    kube, owner = ctx.kube, ctx.owner
    monitoring_api = await kube.serves(SERVICE_MONITOR_GROUP_VERSION, "servicemonitors")
    worker = await kube.get("apps/v1", "Deployment", owner.namespace, owner.worker)
    pods = await kube.list("v1", "Pod", owner.namespace, selector_string(owner))
    rooms = await observe(pods, spec, owner.namespace, ctx.scrape_timeout)
    if rooms.unknown != ctx.memory.unreadable_pods:
        if rooms.unknown:
            log.warning(
                "%s/%s: cannot read active rooms from %s (port %s, source %s); no scale-down until they answer",
                owner.namespace, owner.name, ", ".join(rooms.unknown), spec.metrics_port, spec.scaling.metrics_source,
            )
        ctx.memory.unreadable_pods = rooms.unknown
    observation = Observation(rooms.total, rooms.complete, worker["spec"].get("replicas") if worker else None)
    decision = decide(observation, spec.scaling, ctx.memory.history, ctx.now.timestamp(), pinned=spec.replicas)

    # Build everything before writing anything: a spec problem found here leaves the children as they are.
    children = desired_children(owner, spec, decision.replicas, monitoring_api=monitoring_api)
    if decision.direction == "down":
        for name, patch in annotation_patches(pods, deletion_costs(rooms)).items():
            await kube.merge_patch("v1", "Pod", owner.namespace, name, patch)
            metrics.API_WRITES.labels("Pod", "annotate").inc()

    live: dict[str, dict[str, Any] | None] = {}
    for manifest in children.present:
        result = await ensure_present(kube, manifest)
        live[f"{result.kind}/{result.name}"] = result.live
        if result.action != "unchanged":
            metrics.API_WRITES.labels(result.kind, result.action).inc()
    for manifest in children.absent:
        result = await ensure_absent(kube, manifest, owner.uid)
        if result.action != "unchanged":
            metrics.API_WRITES.labels(result.kind, result.action).inc()
    ctx.memory.history = decision.history

    last_scale = status.get("lastScaleTime")
    if decision.direction != "none":
        last_scale = ctx.stamp
        _announce(ctx, decision, rooms.total, spec)

    worker_live = live.get(f"Deployment/{owner.worker}")
    ready, progressing = worker_conditions(worker_live, decision.replicas)
    if spec.ollama.enabled and not _ollama_ready(live, owner):
        ready = Condition("Ready", False, "OllamaNotReady", "waiting for the managed Ollama to serve its models")
    # Only reported: the Deployment (maxUnavailable 0) keeps the old ready workers, nothing is scaled for it.
    failure = worker_failure(pods)
    _report_failure(ctx, failure)
    if failure is not None:
        ready, progressing = failure_conditions(failure, ready, decision.replicas, ready_replicas(worker_live))
    conditions = [
        ready,
        progressing,
        failure.condition() if failure else degraded_condition(None),
        ollama_condition(spec.ollama.enabled, live.get(f"Deployment/{owner.ollama}")),
        monitoring_condition(spec.monitoring.service_monitor.enabled, monitoring_api),
    ]
    desired_status = {
        "observedGeneration": ctx.body["metadata"].get("generation", 0),
        "replicas": existing_replicas(worker_live),
        "readyReplicas": ready_replicas(worker_live),
        "desiredReplicas": decision.replicas,
        "activeRooms": rooms.total,
        "selector": selector_string(owner),
        **({"lastScaleTime": last_scale} if last_scale else {}),
    }
    desired_status["conditions"] = render_conditions(
        conditions, status.get("conditions") or [], desired_status["observedGeneration"], ctx.stamp
    )
    await _write_status(ctx, status, desired_status)
    ctx.memory.reported_problem = None
    labels = (owner.namespace, owner.name)
    metrics.DESIRED_REPLICAS.labels(*labels).set(decision.replicas)
    metrics.MAX_REPLICAS.labels(*labels).set(spec.scaling.max_replicas)
    metrics.ACTIVE_ROOMS.labels(*labels).set(rooms.total)
    return "ok"


def _ollama_ready(live: dict[str, dict[str, Any] | None], owner: Owner) -> bool:
    return ready_replicas(live.get(f"Deployment/{owner.ollama}")) >= 1


def _report_failure(ctx: Context, failure: WorkerFailure | None) -> None:
    """A Warning event when workers start failing, once per cause (not on every resync or kubelet retry)."""
    key = failure.event_key if failure else None
    if failure is not None and key != ctx.memory.reported_failure:
        log.warning("%s/%s: workers cannot start: %s", ctx.owner.namespace, ctx.owner.name, failure.message)
        ctx.emit("Warning", failure.reason, failure.message)
    ctx.memory.reported_failure = key


def _announce(ctx: Context, decision: Decision, rooms: int, spec: VoiceAgentSpec) -> None:
    reason = "ScaledUp" if decision.direction == "up" else "ScaledDown"
    message = (
        f"workers {decision.current} -> {decision.replicas} ({decision.reason}): {rooms} active rooms, "
        f"target {spec.scaling.target_active_rooms_per_replica} per worker, "
        f"bounds {spec.scaling.min_replicas}..{spec.scaling.max_replicas}"
    )
    log.info("%s/%s: %s", ctx.owner.namespace, ctx.owner.name, message)
    ctx.emit("Normal", reason, message)
    metrics.SCALE_DECISIONS.labels(decision.direction).inc()


async def _degrade(ctx: Context, status: dict[str, Any], reason: str, message: str) -> str:
    """Report the problem; the children stay exactly as they are."""
    if ctx.memory.reported_problem != message:
        log.warning("%s/%s degraded: %s", ctx.owner.namespace, ctx.owner.name, message)
        ctx.emit("Warning", reason, message)
        ctx.memory.reported_problem = message
    generation = ctx.body["metadata"].get("generation", 0)
    conditions = [
        degraded_condition(message, reason),
        Condition("Progressing", False, reason, "reconciliation is stopped until the problem is fixed"),
    ]
    desired = {
        "observedGeneration": generation,
        "selector": selector_string(ctx.owner),
        "conditions": render_conditions(conditions, status.get("conditions") or [], generation, ctx.stamp),
    }
    await _write_status(ctx, status, desired)
    metrics.RECONCILE_ERRORS.labels(reason).inc()
    return "degraded"


async def _write_status(ctx: Context, current: dict[str, Any], desired: dict[str, Any]) -> None:
    patch = status_patch(current, desired)
    if patch is None:
        return
    owner = ctx.owner
    result = await ctx.kube.merge_patch(
        API_VERSION, KIND, owner.namespace, owner.name, {"status": patch}, subresource="status"
    )
    ctx.memory.written_status = (result or {}).get("status")
    metrics.API_WRITES.labels(KIND, "status").inc()
