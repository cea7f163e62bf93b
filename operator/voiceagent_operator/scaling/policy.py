"""The autoscaling policy: a pure function of (observation, scaling spec, history, now) -> decision.

Recommend enough workers for the rooms now plus the rise expected before a pod started now is
ready, plus room for chance: ceil((rooms + rise/s x (podStartSeconds + interval) + sqrt(rooms) / 4
+ spareSessions) / target), clamped to [min, max] (podStartSeconds 0: ceil((rooms + spareSessions)
/ target), the reactive rule when spareSessions is 0 too). Scale up at once to the lowest recommendation of
the scale-up window (at most doubling, or +4, per step); scale down only after observing for a whole
scale-down window without a gap, and only to the highest recommendation in it.
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
# The rise of rooms is measured over this look-back (or two intervals, if longer).
TREND_SECONDS = 60.0
HISTORY_FORMAT = 1
MAX_ROOMS_SAMPLES = 64


@dataclass(frozen=True)
class Tuning:
    """The headroom rule's constants, chosen by `make bench-autoscale` (its sweep holds the alternatives).

    The rise is measured over at least `rise_min_span_seconds`: over one 5 s observation a change of
    rooms is mostly the noise of random arrivals and ends, and the steepest of such slopes kept the
    fleet a tenth larger all day. `chance_factor` x sqrt(rooms) is the spare kept for that noise
    (square-root staffing): the callers who waited did so at the onset of a surge, which the rise
    covers, so a quarter of sqrt(rooms) buys what a whole one did at less cost."""

    rise_min_span_seconds: float = 10.0
    chance_factor: float = 0.25
    trend_seconds: float = TREND_SECONDS


TUNING = Tuning()


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
class RoomsSample:
    at: float
    rooms: int


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
    rooms: tuple[RoomsSample, ...] = ()  # the look-back of the rise in rooms

    def to_json(self) -> str:
        body = {
            "v": HISTORY_FORMAT,
            "since": self.observing_since,
            "rec": [[r.at, r.replicas] for r in self.recommendations],
            "rooms": [[r.at, r.rooms] for r in self.rooms],
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
            rooms = sorted((RoomsSample(_finite(at), _count(n)) for at, n in body.get("rooms") or []), key=lambda r: r.at)
            return cls(_compact(tuple(recs)), since, tuple(rooms[-MAX_ROOMS_SAMPLES:]))
        except (ValueError, TypeError):
            return cls()

    def last_at(self) -> float | None:
        return self.recommendations[-1].at if self.recommendations else None

    def rise_per_second(self, now: float, rooms: int, lookback: float, min_span: float = 0.0) -> float:
        """The steepest rise of rooms up to now from any sample in the look-back at least `min_span`
        old (from the oldest one there is when none is that old); 0 when none rose.

        The steepest, not the average: at the start of a surge the last seconds rise faster than
        the last minute, and the surge is what the headroom is for."""
        recent = [s for s in self.rooms if 0 < now - s.at <= lookback]
        spans = [s for s in recent if now - s.at >= min_span] or recent[:1]
        return max([0.0, *((rooms - s.rooms) / (now - s.at) for s in spans)])


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


def trend_lookback(interval: float, tuning: Tuning = TUNING) -> float:
    return max(tuning.trend_seconds, 2 * interval)


def headroom(rooms: int, rise_per_second: float, scaling: Scaling, interval: float, tuning: Tuning = TUNING) -> float:
    """Sessions to keep free until a pod ordered now serves: the rise expected by then, a share of
    sqrt(rooms) for the randomness of arrivals and ends (square-root staffing), and the spare sessions."""
    if scaling.pod_start_seconds == 0:
        return float(scaling.spare_sessions)
    expected_rise = rise_per_second * (scaling.pod_start_seconds + interval)
    return expected_rise + tuning.chance_factor * math.sqrt(rooms) + scaling.spare_sessions


def recommended_replicas(
    rooms: int, rise_per_second: float, scaling: Scaling, interval: float, tuning: Tuning = TUNING
) -> int:
    demand = rooms + headroom(rooms, rise_per_second, scaling, interval, tuning)
    return clamp(math.ceil(demand / scaling.target_active_rooms_per_replica), scaling)


def decide(
    observation: Observation, scaling: Scaling, history: History, now: float, pinned: int | None = None,
    tuning: Tuning = TUNING,
) -> Decision:
    """The worker count to run now. `pinned` (spec.replicas) overrides the policy entirely."""
    interval = observation.interval
    last = history.last_at()
    gap = last is None or now - last > GAP_INTERVALS * interval or last > now
    lookback = trend_lookback(interval, tuning)
    rise = 0.0 if gap else history.rise_per_second(now, observation.rooms, lookback, tuning.rise_min_span_seconds)
    recommendation = recommended_replicas(observation.rooms, rise, scaling, interval, tuning)
    horizon = max(scaling.scale_up_stabilization_seconds, scaling.scale_down_stabilization_seconds)
    kept = tuple(r for r in history.recommendations if now - r.at < horizon)
    since = now if gap or history.observing_since is None else history.observing_since
    samples = () if gap else tuple(s for s in history.rooms if now - s.at < lookback)
    new_history = History(
        _compact((*kept, Recommendation(now, recommendation))),
        since,
        (*samples, RoomsSample(now, observation.rooms))[-MAX_ROOMS_SAMPLES:],
    )
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
