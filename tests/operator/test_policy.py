"""The autoscaling policy: HPA-like on active rooms, as properties over arbitrary histories."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from voiceagent_operator.scaling.policy import (
    GAP_INTERVALS,
    MAX_RECOMMENDATIONS,
    History,
    Observation,
    Recommendation,
    TUNING,
    RoomsSample,
    clamp,
    decide,
    needed_replicas,
)
from voiceagent_operator.spec import Scaling


def scaling(**values: int) -> Scaling:
    """Without headroom unless a test asks for it: the reactive rule, ceil(rooms / target)."""
    base = {"minReplicas": 1, "maxReplicas": 10, "targetActiveRoomsPerReplica": 4, "scaleDownStabilizationSeconds": 300,
            "podStartSeconds": 0, "spareSessions": 0}
    return Scaling.model_validate({**base, **values})


NOW = 10_000.0


def test_scale_up_is_immediate_to_ceil_of_rooms_over_target() -> None:
    decision = decide(Observation(rooms=9, complete=True, current_replicas=1), scaling(), History(), NOW)
    assert (decision.replicas, decision.direction, decision.reason) == (3, "up", "RoomsAboveTarget")


def test_scale_up_is_bounded_per_step_and_by_max() -> None:
    assert decide(Observation(100, True, 1), scaling(maxReplicas=50), History(), NOW).replicas == 5  # 1 + 4
    assert decide(Observation(100, True, 8), scaling(maxReplicas=50), History(), NOW).replicas == 16  # doubled
    assert decide(Observation(100, True, 8), scaling(maxReplicas=10), History(), NOW).replicas == 10


def test_scale_down_waits_until_the_operator_has_watched_a_whole_window() -> None:
    fresh = decide(Observation(0, True, 5), scaling(), History(), NOW)
    assert (fresh.replicas, fresh.reason) == (5, "StabilizingDown")
    watched = History((Recommendation(NOW - 10, 1),), observing_since=NOW - 300)
    assert decide(Observation(0, True, 5), scaling(), watched, NOW).replicas == 1


def test_scale_down_goes_only_to_the_highest_recommendation_in_the_window() -> None:
    history = History((Recommendation(NOW - 200, 4), Recommendation(NOW - 10, 2)), observing_since=NOW - 1000)
    assert decide(Observation(0, True, 5), scaling(), history, NOW).replicas == 4


def test_no_scale_down_on_a_partial_count() -> None:
    history = History((Recommendation(NOW - 10, 1),), observing_since=NOW - 1000)
    decision = decide(Observation(0, False, 5), scaling(), history, NOW)
    assert (decision.replicas, decision.reason) == (5, "MetricsIncomplete")


def test_a_pinned_count_overrides_the_policy() -> None:
    decision = decide(Observation(100, True, 2), scaling(), History(), NOW, pinned=7)
    assert (decision.replicas, decision.reason) == (7, "Pinned")


def test_a_new_fleet_starts_at_the_recommendation_and_bounds_changes_apply_at_once() -> None:
    assert decide(Observation(0, True, None), scaling(minReplicas=2), History(), NOW).replicas == 2
    assert decide(Observation(0, True, 20), scaling(maxReplicas=10), History(), NOW).replicas == 10


def test_after_a_gap_scale_down_waits_a_whole_window_again() -> None:
    # Watched for long, then nothing for 5 minutes (an outage, a restart, a change of leader).
    history = History((Recommendation(NOW - 300, 1),), observing_since=NOW - 3000)
    first = decide(Observation(0, True, 5, interval=15), scaling(), history, NOW)
    assert (first.replicas, first.reason) == (5, "StabilizingDown")
    assert first.history.observing_since == NOW
    later = History((Recommendation(NOW + 285, 1),), observing_since=NOW)
    assert decide(Observation(0, True, 5, interval=15), scaling(), later, NOW + 300).replicas == 1


def test_a_silence_within_two_intervals_is_not_a_gap() -> None:
    history = History((Recommendation(NOW - 30, 1),), observing_since=NOW - 3000)
    assert decide(Observation(0, True, 5, interval=15), scaling(), history, NOW).replicas == 1
    assert decide(Observation(0, True, 5, interval=10), scaling(), history, NOW).reason == "StabilizingDown"


def test_history_survives_a_round_trip_through_json() -> None:
    history = History((Recommendation(NOW - 200, 4), Recommendation(NOW - 100.25, 2)), observing_since=NOW - 1000)
    assert History.from_json(history.to_json()) == history


def test_unreadable_history_is_empty() -> None:
    for text in (None, "", "{", "[]", '{"v": 99}', '{"v": 1, "rec": [["x", 2]]}', '{"v": 1, "rec": [[1, -2]]}',
                 '{"v": 1, "since": "NaN"}', '{"v": 1, "rec": [[1e999, 2]]}', '{"v": 1, "rec": 5}'):
        assert History.from_json(text) == History()


def test_equal_recommendations_are_stored_once() -> None:
    history = History()
    for step in range(100):
        history = decide(Observation(7, True, 2, interval=5), scaling(), history, NOW + 5 * step).history
    assert history.recommendations == (Recommendation(NOW + 495, 2),)


def test_history_forgets_what_is_older_than_both_windows() -> None:
    old = History((Recommendation(NOW - 5000, 9),), observing_since=NOW - 6000)
    decision = decide(Observation(0, True, 9), scaling(), old, NOW)
    assert decision.history.recommendations == (Recommendation(NOW, 1),)
    assert History.from_json(decision.history.to_json()) == decision.history


# --- properties -------------------------------------------------------------------------------


@st.composite
def situations(draw: st.DrawFn) -> tuple[Observation, Scaling, History, float]:
    low = draw(st.integers(1, 8))
    spec = scaling(
        minReplicas=low,
        maxReplicas=draw(st.integers(low, 30)),
        targetActiveRoomsPerReplica=draw(st.integers(1, 20)),
        scaleUpStabilizationSeconds=draw(st.integers(0, 120)),
        scaleDownStabilizationSeconds=draw(st.integers(0, 900)),
    )
    ages = draw(st.lists(st.floats(0, 2000, allow_nan=False), max_size=12))
    recs = tuple(sorted((Recommendation(NOW - age, draw(st.integers(1, 40))) for age in ages), key=lambda r: r.at))
    since = draw(st.one_of(st.none(), st.floats(0, 3000, allow_nan=False).map(lambda age: NOW - age)))
    observation = Observation(
        rooms=draw(st.integers(0, 800)),
        complete=draw(st.booleans()),
        current_replicas=draw(st.one_of(st.none(), st.integers(0, 40))),
    )
    return observation, spec, History(recs, since), NOW


@settings(max_examples=400, deadline=None)
@given(situations())
def test_the_decision_is_never_outside_min_and_max(situation) -> None:
    observation, spec, history, now = situation
    decision = decide(observation, spec, history, now)
    assert spec.min_replicas <= decision.replicas <= spec.max_replicas


@settings(max_examples=400, deadline=None)
@given(situations())
def test_never_scales_down_inside_the_window(situation) -> None:
    observation, spec, history, now = situation
    decision = decide(observation, spec, history, now)
    current = observation.current_replicas
    if current is not None and decision.replicas < clamp(current, spec):
        window = spec.scale_down_stabilization_seconds
        if window > 0:
            assert history.observing_since is not None and now - history.observing_since >= window
        assert observation.complete
        recent = [r.replicas for r in history.recommendations if now - r.at <= window]
        assert all(replicas <= decision.replicas for replicas in recent)


@settings(max_examples=400, deadline=None)
@given(situations())
def test_never_scales_below_what_the_current_rooms_need(situation) -> None:
    observation, spec, history, now = situation
    decision = decide(observation, spec, history, now)
    current = observation.current_replicas
    need = clamp(needed_replicas(observation.rooms, spec), spec)
    if current is not None and decision.replicas < current:
        assert decision.replicas >= need


@settings(max_examples=300, deadline=None)
@given(situations())
def test_scale_up_never_exceeds_the_step_limit(situation) -> None:
    observation, spec, history, now = situation
    decision = decide(observation, spec, history, now)
    current = observation.current_replicas
    if current is not None and current == clamp(current, spec) and decision.replicas > current:
        assert decision.replicas <= max(2 * current, current + 4)


@st.composite
def timelines(draw: st.DrawFn) -> tuple[Scaling, list[tuple[float, int]], float]:
    """A scaling spec and a sequence of (time, rooms) observations with irregular spacing."""
    spec = scaling(
        maxReplicas=30, scaleDownStabilizationSeconds=draw(st.integers(0, 600)), scaleUpStabilizationSeconds=draw(st.integers(0, 60))
    )
    interval = draw(st.sampled_from([2.0, 5.0, 15.0, 30.0]))
    steps = draw(st.lists(st.tuples(st.floats(0.5, 4 * interval), st.integers(0, 120)), min_size=1, max_size=60))
    at, points = NOW, []
    for delay, rooms in steps:
        at += delay
        points.append((at, rooms))
    return spec, points, interval


def run(spec: Scaling, points: list[tuple[float, int]], interval: float, history: History, current: int):
    decisions = []
    for at, rooms in points:
        decision = decide(Observation(rooms, True, current, interval=interval), spec, history, at)
        decisions.append((at, decision))
        history, current = decision.history, decision.replicas
    return decisions


@settings(max_examples=300, deadline=None)
@given(timelines(), st.integers(1, 30))
def test_no_scale_down_until_a_whole_window_has_passed_without_a_gap(timeline, start) -> None:
    spec, points, interval = timeline
    window = spec.scale_down_stabilization_seconds
    last_gap_end = None
    previous_at = None
    current = start
    for at, decision in run(spec, points, interval, History(), start):
        if previous_at is None or at - previous_at > GAP_INTERVALS * interval:
            last_gap_end = at
        if decision.replicas < clamp(current, spec):
            assert at - last_gap_end >= window, (at, last_gap_end, window)
        previous_at, current = at, decision.replicas


@settings(max_examples=200, deadline=None)
@given(timelines(), st.integers(1, 30))
def test_a_restart_through_json_decides_as_if_nothing_happened(timeline, start) -> None:
    spec, points, interval = timeline
    straight = run(spec, points, interval, History(), start)
    history, current, replayed = History(), start, []
    for at, rooms in points:
        decision = decide(Observation(rooms, True, current, interval=interval), spec, History.from_json(history.to_json()), at)
        replayed.append(decision.replicas)
        history, current = decision.history, decision.replicas
    assert replayed == [decision.replicas for _, decision in straight]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 86_400), st.integers(0, 3)), max_size=2000))
def test_the_stored_history_stays_bounded(points) -> None:
    spec = scaling(scaleDownStabilizationSeconds=86_400)
    history = History()
    for at, rooms in sorted(points):
        history = decide(Observation(rooms * 4, True, 1, interval=1), spec, history, NOW + at).history
    assert len(history.recommendations) <= MAX_RECOMMENDATIONS
    assert len(history.to_json()) <= 40 * MAX_RECOMMENDATIONS + 100


# --- the headroom rule ------------------------------------------------------------------------


def headroom_scaling(**values: int) -> Scaling:
    return scaling(**{"maxReplicas": 200, "targetActiveRoomsPerReplica": 10, "podStartSeconds": 30, "spareSessions": 0, **values})


def test_a_steady_fleet_keeps_a_quarter_of_sqrt_rooms_free() -> None:
    history = History((Recommendation(NOW - 15, 13),), NOW - 1000, (RoomsSample(NOW - 15, 400),))
    decision = decide(Observation(400, True, 40, interval=15), headroom_scaling(), history, NOW)
    assert decision.recommendation == 41  # ceil((400 + sqrt(400) / 4) / 10)


def test_a_rise_over_one_short_interval_is_not_taken_for_a_trend() -> None:
    # Every 5 s: 100 rooms 10 s ago, 100 then 108 now. The 8 rooms of the last 5 s count over 10 s.
    samples = (RoomsSample(NOW - 10, 100), RoomsSample(NOW - 5, 100))
    history = History((Recommendation(NOW - 5, 11),), NOW - 1000, samples)
    decision = decide(Observation(108, True, 11, interval=5), headroom_scaling(), history, NOW)
    assert decision.recommendation == 14  # ceil((108 + 0.8 x 35 + sqrt(108) / 4) / 10), not 1.6 x 35 = 56 more


def test_rising_rooms_scale_up_ahead_of_them() -> None:
    # 30 more rooms in the last 15 s: 2 a second, for the 30 s start and the next 15 s interval.
    history = History((Recommendation(NOW - 15, 8),), NOW - 1000, (RoomsSample(NOW - 15, 71),))
    decision = decide(Observation(101, True, 10, interval=15), headroom_scaling(), history, NOW)
    assert decision.recommendation == 20  # ceil((101 + 2 x 45 + sqrt(101) / 4) / 10)
    assert (decision.replicas, decision.reason) == (20, "RoomsAboveTarget")  # at most doubled per step


@st.composite
def rising(draw: st.DrawFn) -> tuple[Scaling, list[int], float]:
    spec = headroom_scaling(podStartSeconds=draw(st.integers(1, 300)), spareSessions=draw(st.integers(0, 50)),
                            targetActiveRoomsPerReplica=draw(st.integers(1, 20)), maxReplicas=10_000)
    rooms = draw(st.lists(st.integers(0, 2000), min_size=2, max_size=8))
    return spec, rooms, draw(st.sampled_from([2.0, 5.0, 15.0, 30.0]))


def recommendations(spec: Scaling, rooms: list[int], interval: float) -> tuple[list[int], History]:
    history, out = History(), []
    for step, count in enumerate(rooms):
        decision = decide(Observation(count, True, 1, interval=interval), spec, history, NOW + step * interval)
        out.append(decision.recommendation)
        history = decision.history
    return out, history


@settings(max_examples=300, deadline=None)
@given(rising())
def test_headroom_never_recommends_less_than_the_reactive_rule_plus_spare(case) -> None:
    spec, rooms, interval = case
    got, _ = recommendations(spec, rooms, interval)
    for count, recommendation in zip(rooms, got):
        assert recommendation >= clamp(needed_replicas(count + spec.spare_sessions, spec), spec)


@settings(max_examples=300, deadline=None)
@given(rising())
def test_a_faster_rise_never_gets_less_headroom(case) -> None:
    spec, rooms, interval = case
    last = rooms[-1]
    slow, _ = recommendations(spec, [*rooms[:-2], max(0, last - 10), last], interval)
    fast, _ = recommendations(spec, [*rooms[:-2], max(0, last - 40), last], interval)
    assert fast[-1] >= slow[-1]


@settings(max_examples=300, deadline=None)
@given(rising())
def test_the_headroom_covers_the_last_rise_for_a_whole_start(case) -> None:
    spec, rooms, interval = case
    got, _ = recommendations(spec, rooms, interval)
    # The rise over the shortest span of whole intervals that is at least TUNING.rise_min_span_seconds.
    steps = min(len(rooms) - 1, math.ceil(TUNING.rise_min_span_seconds / interval))
    rise = max(0, rooms[-1] - rooms[-1 - steps]) / (steps * interval)
    need = rooms[-1] + rise * (spec.pod_start_seconds + interval) + spec.spare_sessions
    assert got[-1] >= clamp(math.ceil(need / spec.target_active_rooms_per_replica), spec)


def test_podstart_zero_and_no_spare_is_the_reactive_rule() -> None:
    got, _ = recommendations(headroom_scaling(podStartSeconds=0), [0, 50, 120, 121], 15.0)
    assert got == [1, 5, 12, 13]
