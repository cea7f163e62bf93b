"""What a scaling rule costs and how many callers it makes wait: `make bench-autoscale`.

A day of synthetic calls (seeded, so every run sees the same callers) is played through
`bench/autoscale_sim.py`, which drives the operator's own `decide()` at the operator's own
observation cadence (VOICEAGENT_OBSERVE_SECONDS, 5 s by default).
Two days: an ordinary one (night, a morning ramp, a day-long plateau, an evening fall) and the same
day with a spike (2.5x the plateau's arrivals within two minutes, for 15 minutes, easing back over
15). Two pod start times: 30 s and 90 s. Four rules on the same callers: the reactive rule the
operator had (ceil(rooms / target): podStartSeconds 0, spareSessions 0), the same with a target of
80 % of a pod's capacity (how HPA users avoid its deadlock at a full pod), the headroom rule with
the VoiceAgent defaults, and a fixed fleet sized for the day's peak. Each is set against the clairvoyant
floor: at every instant exactly ceil(active calls / capacity) ready pods, with no start delay.
A sweep (bench/autoscale_sweep.py) sets the defaults' alternatives side by side over several seeds.

Writes bench/results/autoscale.json and bench/results/autoscale.png.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.autoscale_sim import Call, Outcome, clairvoyant_floor, operator_policy, simulate  # noqa: E402
from bench.autoscale_sweep import sweep  # noqa: E402
from bench.common import machine  # noqa: E402
from voiceagent_operator.options import OperatorOptions  # noqa: E402
from voiceagent_operator.scaling.policy import TUNING  # noqa: E402
from voiceagent_operator.spec import Scaling  # noqa: E402

DAY = 86_400.0
HOUR = 3600.0
NIGHT_RATE = 0.05  # calls per second
PLATEAU_RATE = 1.2  # about 300 calls in progress at a mean length of 250 s
SPIKE = {"at_h": 14.0, "factor": 2.5, "rise_s": 120.0, "hold_s": 900.0, "fall_s": 900.0}
# Call length: lognormal, median 180 s, sigma 0.8 (mean about 248 s), at most one hour.
CALL_MEDIAN_S, CALL_SIGMA, CALL_MAX_S = 180.0, 0.8, 3600.0
POD_START_SECONDS = (30, 90)
SEED = 11
REACTIVE_TARGET_SHARE = 0.8
OBSERVE_SECONDS = OperatorOptions.model_fields["observe_seconds"].default


def ramp(t: float, t0: float, t1: float, v0: float, v1: float) -> float:
    return v0 + (v1 - v0) * min(1.0, max(0.0, (t - t0) / (t1 - t0)))


def ordinary_rate(t: float) -> float:
    """Night until 07:00, a linear ramp to the plateau by 09:30, the plateau until 17:00, down by 21:00."""
    if t < 7 * HOUR or t >= 21 * HOUR:
        return NIGHT_RATE
    if t < 9.5 * HOUR:
        return ramp(t, 7 * HOUR, 9.5 * HOUR, NIGHT_RATE, PLATEAU_RATE)
    if t < 17 * HOUR:
        return PLATEAU_RATE
    return ramp(t, 17 * HOUR, 21 * HOUR, PLATEAU_RATE, NIGHT_RATE)


def spike_rate(t: float) -> float:
    start = SPIKE["at_h"] * HOUR
    top = PLATEAU_RATE * SPIKE["factor"]
    rise_end, hold_end = start + SPIKE["rise_s"], start + SPIKE["rise_s"] + SPIKE["hold_s"]
    if start <= t < rise_end:
        return ramp(t, start, rise_end, ordinary_rate(t), top)
    if rise_end <= t < hold_end:
        return top
    if hold_end <= t < hold_end + SPIKE["fall_s"]:
        return ramp(t, hold_end, hold_end + SPIKE["fall_s"], top, ordinary_rate(t))
    return ordinary_rate(t)


DAYS = {"ordinary": ordinary_rate, "spike": spike_rate}


def callers(rate, seed: int) -> list[Call]:
    """A non-homogeneous Poisson arrival process (thinning) with lognormal call lengths."""
    rng = random.Random(seed)
    top = max(rate(t) for t in range(0, int(DAY), 10))
    calls, t = [], 0.0
    while True:
        t += rng.expovariate(top)
        if t >= DAY:
            return calls
        if rng.random() * top <= rate(t):
            calls.append((t, min(CALL_MAX_S, rng.lognormvariate(math.log(CALL_MEDIAN_S), CALL_SIGMA))))


def report(outcome: Outcome, floor_seconds: float, seconds: float) -> dict:
    return {
        "callers": outcome.callers,
        "no_free_slot": outcome.waited,
        "no_free_slot_share": round(outcome.waited / outcome.callers, 6),
        "longest_wait_s": round(outcome.longest_wait_s, 1),
        "mean_wait_of_those_who_waited_s": round(outcome.total_wait_s / outcome.waited, 1) if outcome.waited else 0.0,
        "worker_minutes": round(outcome.worker_seconds / 60, 1),
        "ratio_to_floor": round(outcome.worker_seconds / floor_seconds, 3),
        "draining_share_of_worker_minutes": round(outcome.draining_seconds / outcome.worker_seconds, 3),
        "scale_ups": outcome.scale_ups,
        "scale_downs": outcome.scale_downs,
        "simulated_in_s": round(seconds, 2),
    }


def run(seed: int, scaling_base: dict) -> tuple[dict, dict]:
    interval = OBSERVE_SECONDS
    target = Scaling.model_validate(scaling_base).target_active_rooms_per_replica
    results, timelines = {}, {}
    for day_name, rate in DAYS.items():
        calls = callers(rate, seed)
        floor_seconds, peak = clairvoyant_floor(calls, target, DAY)
        day = {"callers": len(calls), "clairvoyant_floor_worker_minutes": round(floor_seconds / 60, 1),
               "peak_pods": peak, "by_pod_start": {}}
        for start in POD_START_SECONDS:
            rules = {
                "reactive (previous default)": Scaling.model_validate({**scaling_base, "podStartSeconds": 0, "spareSessions": 0}),
                # What an HPA user does about the deadlock below: a target under the pod's capacity.
                f"reactive at target {REACTIVE_TARGET_SHARE:.0%} of capacity": Scaling.model_validate({
                    **scaling_base, "podStartSeconds": 0, "spareSessions": 0,
                    "targetActiveRoomsPerReplica": math.floor(target * REACTIVE_TARGET_SHARE)}),
                "headroom (default)": Scaling.model_validate({**scaling_base, "podStartSeconds": start}),
                "fixed at peak": Scaling.model_validate(scaling_base),
            }
            day["by_pod_start"][str(start)] = {}
            for rule, scaling in rules.items():
                policy = operator_policy(scaling, pinned=peak if rule == "fixed at peak" else None)
                began = time.perf_counter()
                outcome = simulate(calls, policy, capacity=target, pod_start_seconds=start, interval=interval, day=DAY, seed=seed)
                day["by_pod_start"][str(start)][rule] = report(outcome, floor_seconds, time.perf_counter() - began)
                timelines[(day_name, start, rule)] = outcome.timeline
                print(f"{day_name:8} start {start:3d} s  {rule:28} {day['by_pod_start'][str(start)][rule]}", flush=True)
        results[day_name] = day
    return results, timelines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/autoscale.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench/results/autoscale.png")
    args = parser.parse_args()
    scaling_base = {"minReplicas": 1, "maxReplicas": 200}
    results, timelines = run(args.seed, scaling_base)
    tradeoffs = sweep(lambda seed: callers(spike_rate, seed), scaling_base, OBSERVE_SECONDS, DAY)
    defaults = Scaling.model_validate(scaling_base)
    body = {
        "machine": machine(),
        "parameters": {
            "seed": args.seed,
            "observation_interval_s": OBSERVE_SECONDS,
            "headroom_tuning": {"rise_min_span_s": TUNING.rise_min_span_seconds,
                                "chance_share_of_sqrt_rooms": TUNING.chance_factor, "trend_lookback_s": TUNING.trend_seconds},
            "capacity_per_pod": defaults.target_active_rooms_per_replica,
            "scaling": defaults.model_dump(by_alias=True, exclude_none=True),
            "pod_start_seconds": list(POD_START_SECONDS),
            "traffic": {
                "night_rate_per_s": NIGHT_RATE, "plateau_rate_per_s": PLATEAU_RATE,
                "shape": "night until 07:00, linear ramp to the plateau by 09:30, plateau until 17:00, linear fall to night by 21:00",
                "spike": SPIKE, "arrivals": "Poisson",
                "call_length": {"distribution": "lognormal", "median_s": CALL_MEDIAN_S, "sigma": CALL_SIGMA, "max_s": CALL_MAX_S},
            },
            "dispatch": "a ready pod with a free session at random, weighted by its free share (livekit-server's "
                        "load-weighted pick); otherwise the caller waits in line (FIFO)",
            "scale_down": "starting pods first, then the ready pods with the fewest calls; removed pods drain their calls",
        },
        "days": results,
        "sweep": tradeoffs,
        "notes": [
            "The reactive rule never scales when pods fill exactly to target (capacity = target here): a full pod at "
            "ceil(rooms / target) already equals the recommendation, so callers beyond it wait for the day (its "
            "worker-minutes are below the floor for that reason).",
        ],
    }
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    from bench.autoscale_plot import plot  # matplotlib only when writing the figure

    plot(timelines, args.plot, defaults.target_active_rooms_per_replica)
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
