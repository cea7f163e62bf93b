"""The autoscaling policy: a pure function of (observation, scaling spec, history, now) -> decision.

HPA-like on active rooms: recommend ceil(rooms / target) clamped to [min, max]; scale up at once
to the lowest recommendation of the scale-up window (at most doubling, or +4, per step); scale down
only after observing for a whole scale-down window, and only to the highest recommendation in it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from ..spec import Scaling

# Scale-up rate limit per decision, as the HPA's default: double, or add 4 pods, whichever is more.
SCALE_UP_FACTOR = 2
SCALE_UP_PODS = 4
# The operator's default cadence (its resync period); the caller passes the real one in the Observation.
DEFAULT_OBSERVATION_INTERVAL = 15.0
# No recommendation for longer than this many intervals is a gap: what happened in it is unknown.
GAP_INTERVALS = 2
MAX_RECOMMENDATIONS = 256
HISTORY_FORMAT = 1


@dataclass(frozen=True)
class Observation:
    """What the worker fleet looks like now."""

    rooms: int  # active rooms on the ready pods that answered
    complete: bool  # every ready pod answered (a partial count must never drive a scale-down)
    current_replicas: int | None  # the worker Deployment's replicas; None before it exists
    interval: float = DEFAULT_OBSERVATION_INTERVAL  # seconds between observations; a silence over 2x is a gap


@dataclass(frozen=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True)
class History:
    """What the operator has recommended, and since when it has been watching without a gap.

    Kept small: a run of equal recommendations is stored as its latest one (a window that ends now
    holds the run iff it holds its latest point), and past MAX_RECOMMENDATIONS the two oldest merge
    into the later time and the higher count (only ever holding a scale-down longer). It survives a
    restart or a change of leader as `to_json()` / `from_json()`.
    """

    recommendations: tuple[Recommendation, ...] = ()
    observing_since: float | None = None

    def to_json(self) -> str:
        body = {
            "v": HISTORY_FORMAT,
            "since": self.observing_since,
            "rec": [[round(r.at, 3), r.replicas] for r in self.recommendations],
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> History:
        """The history `to_json` wrote; anything else (None, garbage, another format) is an empty history,
        which is safe: scale-down waits for a whole window again."""
        try:
            body = json.loads(text) if text else None
            if not isinstance(body, dict) or body.get("v") != HISTORY_FORMAT:
                return cls()
            since = body.get("since")
            since = None if since is None else _finite(since)
            recs = sorted((Recommendation(_finite(at), _count(n)) for at, n in body.get("rec") or []), key=lambda r: r.at)
            return cls(_compact(tuple(recs)), since)
        except (ValueError, TypeError):
            return cls()

    def last_at(self) -> float | None:
        return self.recommendations[-1].at if self.recommendations else None


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


def _finite(value: object) -> float:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ValueError(f"not a finite time: {value!r}")
    return number


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"not a replica count: {value!r}")
    return value


def _compact(recs: tuple[Recommendation, ...]) -> tuple[Recommendation, ...]:
    """Equal neighbours collapse into the later one; past the cap the oldest pair merges upwards."""
    out: list[Recommendation] = []
    for rec in recs:
        if out and out[-1].replicas == rec.replicas:
            out[-1] = rec
        else:
            out.append(rec)
    while len(out) > MAX_RECOMMENDATIONS:
        first, second = out[0], out[1]
        out[0:2] = [Recommendation(second.at, max(first.replicas, second.replicas))]
    return tuple(out)


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
    last = history.last_at()
    gap = last is None or now - last > GAP_INTERVALS * observation.interval or last > now
    since = now if gap or history.observing_since is None else history.observing_since
    new_history = History(_compact((*kept, Recommendation(now, recommendation))), since)
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
