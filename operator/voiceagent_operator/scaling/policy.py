"""The autoscaling policy: a pure function of (observation, scaling spec, history, now) -> decision.

HPA-like on active rooms: recommend ceil(rooms / target) clamped to [min, max]; scale up at once
to the lowest recommendation of the scale-up window (at most doubling, or +4, per step); scale down
only after observing for a whole scale-down window, and only to the highest recommendation in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..spec import Scaling

# Scale-up rate limit per decision, as the HPA's default: double, or add 4 pods, whichever is more.
SCALE_UP_FACTOR = 2
SCALE_UP_PODS = 4


@dataclass(frozen=True)
class Observation:
    """What the worker fleet looks like now."""

    rooms: int  # active rooms on the ready pods that answered
    complete: bool  # every ready pod answered (a partial count must never drive a scale-down)
    current_replicas: int | None  # the worker Deployment's replicas; None before it exists


@dataclass(frozen=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True)
class History:
    """What this operator process has recommended, and since when it has been watching."""

    recommendations: tuple[Recommendation, ...] = ()
    observing_since: float | None = None


@dataclass(frozen=True)
class Decision:
    replicas: int
    current: int
    reason: str
    recommendation: int
    history: History = field(repr=False)

    @property
    def direction(self) -> str:
        if self.replicas > self.current:
            return "up"
        return "down" if self.replicas < self.current else "none"


def clamp(value: int, scaling: Scaling) -> int:
    return max(scaling.min_replicas, min(scaling.max_replicas, value))


def needed_replicas(rooms: int, scaling: Scaling) -> int:
    return math.ceil(rooms / scaling.target_active_rooms_per_replica)


def decide(
    observation: Observation, scaling: Scaling, history: History, now: float, pinned: int | None = None
) -> Decision:
    """The worker count to run now. `pinned` (spec.replicas) overrides the policy entirely."""
    recommendation = clamp(needed_replicas(observation.rooms, scaling), scaling)
    horizon = max(scaling.scale_up_stabilization_seconds, scaling.scale_down_stabilization_seconds)
    kept = tuple(r for r in history.recommendations if now - r.at < horizon)
    since = history.observing_since if history.observing_since is not None else now
    new_history = History((*kept, Recommendation(now, recommendation)), since)
    current = observation.current_replicas

    def decision(replicas: int, reason: str) -> Decision:
        return Decision(replicas, current if current is not None else replicas, reason, recommendation, new_history)

    if pinned is not None:
        return decision(pinned, "Pinned")
    if current is None:
        return decision(recommendation, "Initial")
    if current != clamp(current, scaling):
        return decision(clamp(current, scaling), "OutsideBounds")
    if recommendation > current:
        window = [r.replicas for r in new_history.recommendations if now - r.at <= scaling.scale_up_stabilization_seconds]
        stabilized = max(min(window), current)
        step_limit = max(current * SCALE_UP_FACTOR, current + SCALE_UP_PODS)
        return decision(min(stabilized, step_limit, scaling.max_replicas), "RoomsAboveTarget")
    if recommendation < current:
        if not observation.complete:
            return decision(current, "MetricsIncomplete")
        if now - since < scaling.scale_down_stabilization_seconds:
            return decision(current, "StabilizingDown")
        window = [r.replicas for r in new_history.recommendations if now - r.at <= scaling.scale_down_stabilization_seconds]
        return decision(min(current, max(window)), "RoomsBelowTarget")
    return decision(current, "AtTarget")
