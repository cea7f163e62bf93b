"""One level-based reconciliation of a VoiceAgent: observe, decide, apply, report.

Every call computes the whole desired state from the spec and the live world; `apply.decide_apply`
sends only what changed, and the status is patched only when it changed, so repeating a
reconciliation against an unchanged world sends no write at all. Scaling never waits for the rest:
a spec the operator cannot act on, or a child the apiserver refuses, is reported in the status while
the worker count keeps following the rooms, from the last spec that could be acted on.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from pydantic import ValidationError

from . import metrics
from .builders import Children, desired_children
from .builders.monitoring import SERVICE_MONITOR_GROUP_VERSION
from .builders.ollama_pull import models_state, ollama_pull_job, outdated_pull_jobs, pull_job_labels, pull_job_ref
from .cache import Cache
from .children import Applied, apply_child, remove_child
from .kube import ApiError, Kube
from .naming import Owner, selector_string
from .scaling.deletion_cost import pod_annotation_patches
from .scaling.fleet import Target
from .scaling.observe import PodRooms, ReadyPod, ready_pods
from .scaling.policy import Decision, History, Observation, decide
from .spec import API_VERSION, DEFAULT_METRICS_PORT, KIND, Scaling, SpecError, VoiceAgentSpec, parse_spec
from .status import (
    Condition,
    Problem,
    degraded_condition,
    existing_replicas,
    failure_conditions,
    monitoring_condition,
    ollama_condition,
    ollama_ready,
    ready_replicas,
    render_conditions,
    rooms_condition,
    status_patch,
    worker_conditions,
    worker_failure,
)

log = logging.getLogger(__name__)

# (type, reason, message) -> an Event on the VoiceAgent.
EventSink = Callable[[str, str, str], None]
# Reads one VoiceAgent's rooms now (when no fleet observation of it is at hand yet).
Observer = Callable[[Target, list[ReadyPod]], Awaitable[PodRooms]]
HISTORY_STATUS_FIELD = "scalingHistory"


@dataclass
class AgentMemory:
    """What the operator remembers about one VoiceAgent between reconciliations (forgotten when paused)."""

    history: History = field(default_factory=History)
    # The status this operator last wrote (the apiserver's answer, as compact JSON: hundreds of them
    # are kept): the watched body can lag behind it.
    written_status_json: bytes | None = None
    # Problems already reported as Warning events, so that a resync (or a new leader) does not repeat them.
    reported_problems: frozenset[str] = frozenset()
    # The worker start-up failure last reported as a Warning event (WorkerFailure.event_key).
    reported_failure: tuple[str, str, str] | None = None
    # The last spec the children could be built from (as compact JSON): scaling goes on from it while a
    # later one cannot.
    last_good_spec_json: bytes | None = None
    restored: bool = False
    # The latest fleet observation of this VoiceAgent's rooms, and where they were read.
    observed: tuple[Target, PodRooms] | None = None
    # What the last reconciliation acted on: the observer decides from these between reconciliations.
    reconciled_rooms: PodRooms | None = None
    scaling: Scaling | None = None
    pinned: int | None = None
    current: int | None = None

    @property
    def written_status(self) -> dict[str, Any] | None:
        return json.loads(self.written_status_json) if self.written_status_json else None

    @written_status.setter
    def written_status(self, status: dict[str, Any] | None) -> None:
        self.written_status_json = json.dumps(status, separators=(",", ":")).encode() if status else None

    @property
    def last_good_spec(self) -> VoiceAgentSpec | None:
        return VoiceAgentSpec.model_validate_json(self.last_good_spec_json) if self.last_good_spec_json else None

    @last_good_spec.setter
    def last_good_spec(self, spec: VoiceAgentSpec) -> None:
        self.last_good_spec_json = spec.model_dump_json(by_alias=True).encode()

    def restore(self, status: dict[str, Any]) -> None:
        """On first sight (a start, a new leader): history and reported problems from the status."""
        if self.restored:
            return
        self.restored = True
        self.history = History.from_json(status.get(HISTORY_STATUS_FIELD))
        degraded = next((c for c in status.get("conditions") or [] if c.get("type") == "Degraded"), {})
        if degraded.get("status") == "True":
            self.reported_problems = frozenset(filter(None, (degraded.get("message") or "").split("\n")))


@dataclass(frozen=True)
class Context:
    cache: Cache
    body: dict[str, Any]
    memory: AgentMemory
    now: datetime.datetime
    emit: EventSink
    observe: Observer
    interval: float  # seconds between observations (a longer silence is a gap in the scaling history)

    @property
    def kube(self) -> Kube:
        return self.cache.kube

    @property
    def owner(self) -> Owner:
        return Owner.of(self.body)

    @property
    def stamp(self) -> str:
        return self.now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _usable_spec(ctx: Context, monitoring_api: bool) -> tuple[VoiceAgentSpec | None, Problem | None]:
    """The spec to act on: this one if its children can be built, else the last good one, and why."""
    try:
        spec = parse_spec(ctx.body.get("spec") or {})
        desired_children(ctx.owner, spec, 1, monitoring_api=monitoring_api)  # builders catch what the schema cannot
    except SpecError as exc:
        previous = ctx.memory.last_good_spec
        fallback = "; scaling continues from the last valid spec" if previous else ""
        return previous, Problem("InvalidSpec", f"{exc}{fallback}")
    ctx.memory.last_good_spec = spec
    return spec, None


def _scaling_only(raw: dict[str, Any]) -> tuple[Scaling | None, int]:
    """spec.scaling and spec.metricsPort alone, for scaling while the whole spec cannot be used."""
    try:
        scaling = Scaling.model_validate(raw.get("scaling") or {})
    except ValidationError:
        scaling = None
    port = raw.get("metricsPort")
    return scaling, port if isinstance(port, int) and 0 < port < 65536 else DEFAULT_METRICS_PORT


async def reconcile(ctx: Context) -> str:
    """Bring one VoiceAgent's children and status in line with its spec; returns the outcome."""
    kube, owner, memory = ctx.kube, ctx.owner, ctx.memory
    # What this process last wrote is fresher than a watched body that has not caught up yet.
    status = memory.written_status or ctx.body.get("status") or {}
    memory.restore(status)
    monitoring_api = await ctx.cache.monitoring_api(SERVICE_MONITOR_GROUP_VERSION, "servicemonitors")
    spec, spec_problem = _usable_spec(ctx, monitoring_api)
    problems = [spec_problem] if spec_problem else []
    raw = ctx.body.get("spec") or {}
    scaling, metrics_port = (spec.scaling, spec.metrics_port) if spec else _scaling_only(raw)

    # Not in the cache: not ours (yet); whether a Deployment of that name exists is asked only to create ours.
    worker = await ctx.cache.get("apps/v1", "Deployment", owner.namespace, owner.worker, wanted=False)
    pods = ctx.cache.worker_pods(owner.namespace, owner.name)
    if pods is None:
        pods = await kube.list("v1", "Pod", owner.namespace, selector_string(owner))
    rooms = await _rooms(ctx, pods, scaling, metrics_port)
    decision = None
    memory.scaling, memory.reconciled_rooms = scaling, rooms
    if scaling is not None:
        current = worker["spec"].get("replicas") if worker and _ours(worker, owner) else None
        observation = Observation(rooms.total, rooms.complete, current, interval=ctx.interval)
        pinned = spec.replicas if spec else raw.get("replicas") if isinstance(raw.get("replicas"), int) else None
        decision = decide(observation, scaling, memory.history, ctx.now.timestamp(), pinned=pinned)
        memory.history, memory.pinned, memory.current = decision.history, pinned, decision.replicas
    await _mark_pods(ctx, pods, rooms, scaling_down=decision is not None and decision.direction == "down")

    results: dict[str, Applied] = {}
    if spec is not None and decision is not None:
        children = desired_children(owner, spec, decision.replicas, monitoring_api=monitoring_api)
        children = Children(children.present, children.absent + await _outdated_pulls(ctx, spec))
        results = await _apply_all(ctx, children, decision)
        problems += _child_problems(results)
    worker_result = results.get(f"Deployment/{owner.worker}")
    if decision is not None and decision.direction != "none" and (worker_result is None or worker_result.error):
        # The full apply could not carry the new count (or there is no usable spec): scale alone.
        problems += await _scale_alone(ctx, worker, decision.replicas)
    if decision is not None and decision.direction != "none":
        _announce(ctx, decision, rooms.total, scaling)

    _report_problems(ctx, problems)
    desired_status = _status(ctx, spec, status, decision, rooms, pods, results, problems, monitoring_api)
    if decision is not None:
        history = decision.history.to_json()
        # Kept with the status whenever it is written anyway (and on every scale): never a write of its own.
        if status_patch(status, desired_status) is not None or decision.direction != "none":
            desired_status[HISTORY_STATUS_FIELD] = history
    await _write_status(ctx, status, desired_status)
    labels = (owner.namespace, owner.name)
    metrics.UNREADABLE_PODS.labels(*labels).set(len(rooms.unknown))
    metrics.ACTIVE_ROOMS.labels(*labels).set(rooms.total)
    if decision is not None and scaling is not None:
        metrics.DESIRED_REPLICAS.labels(*labels).set(decision.replicas)
        metrics.MAX_REPLICAS.labels(*labels).set(scaling.max_replicas)
    for problem in problems:
        metrics.RECONCILE_ERRORS.labels(problem.reason).inc()
    return "degraded" if problems else "ok"


async def _rooms(ctx: Context, pods: list[dict[str, Any]], scaling: Scaling | None, metrics_port: int) -> PodRooms:
    """The fleet's latest observation of these rooms, or one now (first sight, or they are read elsewhere now)."""
    prometheus = scaling.prometheus_url if scaling and scaling.metrics_source == "prometheus" else None
    target = Target(ctx.owner.namespace, ctx.owner.name, metrics_port, prometheus or None)
    observed = ctx.memory.observed
    if observed is None or observed[0] != target:
        ctx.memory.observed = observed = (target, await ctx.observe(target, ready_pods(pods)))
    return observed[1]


def needs_reconcile(memory: AgentMemory, target: Target, rooms: PodRooms, now: float, interval: float) -> bool:
    """Between reconciliations, at each fleet observation: keep it, and say whether to reconcile now.

    Now when the rooms differ from what the last reconciliation acted on, or when the policy would
    change the worker count (a scale-down window that has run out); otherwise the policy's decision only
    joins the history, so that the history has no gap between resyncs."""
    memory.observed = (target, rooms)
    if memory.reconciled_rooms != rooms:
        return True
    if memory.scaling is None or memory.current is None:
        return False
    observation = Observation(rooms.total, rooms.complete, memory.current, interval=interval)
    decision = decide(observation, memory.scaling, memory.history, now, pinned=memory.pinned)
    if decision.direction != "none":
        return True
    memory.history = decision.history
    return False


async def _outdated_pulls(ctx: Context, spec: VoiceAgentSpec) -> list[dict[str, Any]]:
    """The pull Jobs of earlier model lists (all of them once Ollama is not managed), to delete."""
    owner = ctx.owner
    jobs = await ctx.cache.labelled("batch/v1", "Job", owner.namespace, pull_job_labels(owner))
    current = ollama_pull_job(owner, spec)["metadata"]["name"] if spec.ollama.enabled else ""
    return [pull_job_ref(owner, name) for name in outdated_pull_jobs(jobs, current)]


def _ours(live: dict[str, Any], owner: Owner) -> bool:
    return any(ref.get("uid") == owner.uid for ref in live.get("metadata", {}).get("ownerReferences") or [])


async def _apply_all(ctx: Context, children: Children, decision: Decision) -> dict[str, Applied]:
    # Each child on its own and at once: a new VoiceAgent's children cost one round trip, not one each.
    applied = await asyncio.gather(*(apply_child(ctx.cache, manifest, ctx.owner.uid) for manifest in children.present))
    removed = await asyncio.gather(*(remove_child(ctx.cache, manifest, ctx.owner.uid) for manifest in children.absent))
    results: dict[str, Applied] = {result.ref: result for result in applied}
    for result in removed:
        results.setdefault(result.ref, result)
    # One Event per kind of change, naming every child it touched: a new VoiceAgent gets one
    # "Created" Event, not one per child (each Event is a write to etcd).
    changes: dict[str, list[str]] = {}
    for result in results.values():
        action = result.decision.action
        if action in ("create", "update", "delete"):
            metrics.API_WRITES.labels(result.kind, {"create": "applied", "update": "applied"}.get(action, "deleted")).inc()
            if result.decision.changed == ("spec.replicas",) and not result.decision.removed:
                continue  # a scale: its ScaledUp/ScaledDown event says why
            reason = {"create": "Created", "update": "Updated", "delete": "Deleted"}[action]
            changes.setdefault(reason, []).append(f"{result.ref}: {result.decision.reason}")
    for reason, lines in changes.items():
        ctx.emit("Normal", reason, "; ".join(lines))
    return results


def _child_problems(results: dict[str, Applied]) -> list[Problem]:
    problems = []
    for result in results.values():
        if result.decision.action == "refuse":
            problems.append(Problem(
                "ChildNotOwned",
                f"{result.ref} exists and is not this VoiceAgent's: {result.decision.reason.removeprefix('left untouched: ')}; "
                "it is left untouched: delete or rename it to let the operator create its own",
            ))
        elif result.error is not None:
            problems.append(Problem("ApplyFailed", f"{result.ref}: {result.error}"))
    return problems


async def _scale_alone(ctx: Context, worker: dict[str, Any] | None, replicas: int) -> list[Problem]:
    """Set only the worker count (the scale subresource) of our worker Deployment."""
    owner = ctx.owner
    if worker is None or not _ours(worker, owner):
        return []
    try:
        await ctx.kube.merge_patch("apps/v1", "Deployment", owner.namespace, owner.worker,
                                   {"spec": {"replicas": replicas}}, subresource="scale")
        metrics.API_WRITES.labels("Deployment", "scale").inc()
    except ApiError as exc:
        return [Problem("ScaleFailed", f"Deployment/{owner.worker}: cannot scale to {replicas}: {exc}")]
    return []


async def _mark_pods(ctx: Context, pods: list[dict[str, Any]], rooms: PodRooms, *, scaling_down: bool) -> None:
    """Busy pods carry do-not-evict marks; idle and unready ones carry none; deletion costs before a scale-down."""
    owner = ctx.owner
    for name, patch in pod_annotation_patches(pods, rooms, scaling_down=scaling_down).items():
        try:
            await ctx.kube.merge_patch("v1", "Pod", owner.namespace, name, patch)
            metrics.API_WRITES.labels("Pod", "annotate").inc()
        except ApiError as exc:
            if exc.status != 404:  # a pod deleted since the list needs no mark
                log.warning("%s/%s: cannot annotate pod %s: %s", owner.namespace, owner.name, name, exc)


def _announce(ctx: Context, decision: Decision, rooms: int, scaling: Scaling) -> None:
    reason = "ScaledUp" if decision.direction == "up" else "ScaledDown"
    message = (
        f"workers {decision.current} -> {decision.replicas} ({decision.reason}): {rooms} active rooms, "
        f"target {scaling.target_active_rooms_per_replica} per worker, "
        f"bounds {scaling.min_replicas}..{scaling.max_replicas}"
    )
    log.info("%s/%s: %s", ctx.owner.namespace, ctx.owner.name, message)
    ctx.emit("Normal", reason, message)
    metrics.SCALE_DECISIONS.labels(decision.direction).inc()


def _report_problems(ctx: Context, problems: list[Problem]) -> None:
    """One Warning event per distinct problem while it lasts (not per resync, not again by a new leader)."""
    current = frozenset(p.message for p in problems)
    for problem in problems:
        if problem.message not in ctx.memory.reported_problems:
            log.warning("%s/%s: %s: %s", ctx.owner.namespace, ctx.owner.name, problem.reason, problem.message)
            ctx.emit("Warning", problem.reason, problem.message)
    ctx.memory.reported_problems = current


def _status(ctx: Context, spec: VoiceAgentSpec | None, status: dict[str, Any], decision: Decision | None,
            rooms: PodRooms, pods: list[dict[str, Any]], results: dict[str, Applied], problems: list[Problem],
            monitoring_api: bool) -> dict[str, Any]:
    owner = ctx.owner
    generation = ctx.body["metadata"].get("generation", 0)
    worker_live = _live(results, f"Deployment/{owner.worker}")
    desired = decision.replicas if decision else existing_replicas(worker_live)
    conditions = [rooms_condition(rooms.unknown)]
    if spec is not None:
        ready, progressing = worker_conditions(worker_live, desired)
        ollama_live = _live(results, f"Deployment/{owner.ollama}")
        models = None
        if spec.ollama.enabled:
            models = models_state(_live(results, f"Job/{ollama_pull_job(owner, spec)['metadata']['name']}"))
        ready = ollama_ready(spec.ollama.enabled, ollama_live, models) or ready
        failure = worker_failure(pods)
        _report_failure(ctx, failure)
        if failure is not None:
            ready, progressing = failure_conditions(failure, ready, desired, ready_replicas(worker_live))
        conditions += [
            ready,
            progressing,
            ollama_condition(spec.ollama.enabled, ollama_live, models),
            monitoring_condition(spec.monitoring.service_monitor.enabled, monitoring_api),
        ]
        degraded = failure.condition() if failure and not problems else degraded_condition(problems)
    else:
        degraded = degraded_condition(problems)
        conditions.append(Condition("Progressing", False, problems[0].reason, "waiting for a spec that can be acted on"))
    conditions.append(degraded)
    desired_status: dict[str, Any] = {
        "observedGeneration": generation,
        "selector": selector_string(owner),
        "activeRooms": rooms.total,
        **({"desiredReplicas": decision.replicas} if decision else {}),
    }
    if spec is not None:
        desired_status["replicas"] = existing_replicas(worker_live)
        desired_status["readyReplicas"] = ready_replicas(worker_live)
    last_scale = ctx.stamp if decision and decision.direction != "none" else status.get("lastScaleTime")
    if last_scale:
        desired_status["lastScaleTime"] = last_scale
    desired_status["conditions"] = render_conditions(conditions, status.get("conditions") or [], generation, ctx.stamp)
    return desired_status


def _live(results: dict[str, Applied], ref: str) -> dict[str, Any] | None:
    result = results.get(ref)
    return result.live if result else None


def _report_failure(ctx: Context, failure: Any) -> None:
    """A Warning event when workers start failing, once per cause (not on every resync or kubelet retry)."""
    key = failure.event_key if failure else None
    if failure is not None and key != ctx.memory.reported_failure:
        log.warning("%s/%s: workers cannot start: %s", ctx.owner.namespace, ctx.owner.name, failure.message)
        ctx.emit("Warning", failure.reason, failure.message)
    ctx.memory.reported_failure = key


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
