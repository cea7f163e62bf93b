"""The trade-off table behind the headroom rule's defaults, for `make bench-autoscale`.

On the spike day at a pod start of 30 s, the operator's observation cadence and several seeds of
callers, each alternative changes one or two of: the shortest span the rise of rooms is measured
over, the share of sqrt(rooms) kept for chance (policy.Tuning), and the scale-down window
(spec.scaling.scaleDownStabilizationSeconds). The default is the row marked "default"; the rows
beside it show what each knob buys and costs. One more row keeps the defaults but removes the
newest ready pods on a scale-down, as the ReplicaSet does without the operator's deletion cost.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Callable

from bench.autoscale_sim import Call, clairvoyant_floor, operator_policy, simulate
from voiceagent_operator.scaling.policy import TUNING
from voiceagent_operator.spec import Scaling

SEEDS = (11, 12, 13)
RISE_MIN_SPANS = (5.0, 10.0, 15.0)
CHANCE_FACTORS = (0.0, 0.25, 0.5, 1.0)
SCALE_DOWN_WINDOWS = (120, 180, 300, 600, 900)
POD_START = 30


def alternatives(default_window: int) -> list[tuple[float, float, int, bool]]:
    """Every (rise span, chance share) at the default window, every window at the default tuning,
    and the defaults without deletion cost."""
    rows = [(span, chance, default_window, True) for span in RISE_MIN_SPANS for chance in CHANCE_FACTORS]
    rows += [(TUNING.rise_min_span_seconds, TUNING.chance_factor, window, True) for window in SCALE_DOWN_WINDOWS
             if window != default_window]
    return [*rows, (TUNING.rise_min_span_seconds, TUNING.chance_factor, default_window, False)]


def sweep(callers: Callable[[int], list[Call]], scaling_base: dict, interval: float, day: float) -> dict:
    defaults = Scaling.model_validate(scaling_base)
    capacity = defaults.target_active_rooms_per_replica
    days = {seed: callers(seed) for seed in SEEDS}
    floors = {seed: clairvoyant_floor(calls, capacity, day)[0] for seed, calls in days.items()}
    rows = []
    for span, chance, window, deletion_cost in alternatives(defaults.scale_down_stabilization_seconds):
        tuning = replace(TUNING, rise_min_span_seconds=span, chance_factor=chance)
        scaling = Scaling.model_validate({**scaling_base, "podStartSeconds": POD_START, "scaleDownStabilizationSeconds": window})
        shares, ratios, drains = [], [], []
        for seed, calls in days.items():
            outcome = simulate(calls, operator_policy(scaling, tuning=tuning), capacity=capacity,
                               pod_start_seconds=POD_START, interval=interval, day=day, seed=seed,
                               deletion_cost=deletion_cost)
            shares.append(outcome.waited / outcome.callers)
            ratios.append(outcome.worker_seconds / floors[seed])
            drains.append(outcome.draining_seconds / outcome.worker_seconds)
        row = {
            "rise_min_span_s": span, "chance_share_of_sqrt_rooms": chance, "scale_down_window_s": window,
            "scale_down_removes": "fewest calls first (deletion cost)" if deletion_cost else "newest first (no deletion cost)",
            "no_free_slot_share": {"mean": round(statistics.mean(shares), 6), "max": round(max(shares), 6)},
            "ratio_to_floor": {"mean": round(statistics.mean(ratios), 3), "max": round(max(ratios), 3)},
            "draining_share_of_worker_minutes": round(statistics.mean(drains), 3),
            "default": tuning == TUNING and window == defaults.scale_down_stabilization_seconds and deletion_cost,
        }
        rows.append(row)
        print(f"sweep {row}", flush=True)
    return {
        "day": "spike", "pod_start_seconds": POD_START, "observation_interval_s": interval, "seeds": list(SEEDS),
        "note": __doc__.split("\n\n")[1].replace("\n", " "),
        "rows": rows,
    }
