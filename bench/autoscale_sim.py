"""A discrete-event simulation of one worker fleet under the operator's real scaling policy.

Callers arrive at given times with given call lengths. A caller takes a free session on the least
ready worker pod picked as livekit-server picks one (at random, weighted by its free share; no
pod holds more than `capacity`); with none free, the caller waits in
line and takes the first session that frees up. Every `interval` seconds the operator observes the
rooms on its ready pods and calls `decide()`; a scale-up creates pods that are ready
`pod_start_seconds` later, a scale-down removes starting pods first, then the ready pods with the
fewest calls (as pod-deletion-cost makes the ReplicaSet do; without it, the newest), and a removed pod takes no new call but
keeps serving its calls until the last one ends (its drain). Worker time counts from a pod's
creation to its end, start and drain included.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from voiceagent_operator.scaling.policy import TUNING, Decision, History, Observation, Tuning, decide
from voiceagent_operator.spec import Scaling

Call = tuple[float, float]  # (arrival time, length) in seconds
# What the operator does at an observation: (observation, history, now) -> decision.
Policy = Callable[[Observation, History, float], Decision]


def operator_policy(scaling: Scaling, pinned: int | None = None, tuning: Tuning = TUNING) -> Policy:
    return lambda observation, history, now: decide(observation, scaling, history, now, pinned=pinned, tuning=tuning)


@dataclass
class Pod:
    created: float
    ready_at: float
    removed: float | None = None
    calls: int = 0
    ready: bool = False
    draining: bool = False


@dataclass
class Outcome:
    callers: int = 0
    waited: int = 0
    longest_wait_s: float = 0.0
    total_wait_s: float = 0.0
    worker_seconds: float = 0.0
    draining_seconds: float = 0.0  # the part of worker_seconds spent by removed pods finishing their calls
    scale_ups: int = 0
    scale_downs: int = 0
    # One row a minute: (time s, calls in progress, ready capacity, callers waiting, pods).
    timeline: list[tuple[int, int, int, int, int]] = field(default_factory=list)


def clairvoyant_floor(calls: list[Call], capacity: int, day: float) -> tuple[float, int]:
    """Worker-seconds of exactly ceil(active / capacity) ready pods at each instant, and that count's peak."""
    changes = sorted([(start, 1) for start, _ in calls] + [(min(start + length, day), -1) for start, length in calls])
    active, last, seconds, peak = 0, 0.0, 0.0, 0
    for at, delta in changes:
        seconds += math.ceil(active / capacity) * (at - last)
        active += delta
        last = at
        peak = max(peak, math.ceil(active / capacity))
    return seconds + math.ceil(active / capacity) * (day - last), peak


def simulate(
    calls: list[Call], policy: Policy, *, capacity: int, pod_start_seconds: float, interval: float, day: float,
    seed: int = 0, deletion_cost: bool = True,
) -> Outcome:
    outcome = Outcome()
    pods: dict[int, Pod] = {}
    ids = itertools.count()
    line: deque[Call] = deque()
    events: list[tuple[float, int, str, int]] = []
    order = itertools.count()
    history = History()
    rng = random.Random(seed)

    def at(time: float, kind: str, subject: int = 0) -> None:
        heapq.heappush(events, (time, next(order), kind, subject))

    def finish(pod_id: int, now: float) -> None:
        pod = pods.pop(pod_id)
        outcome.worker_seconds += now - pod.created
        outcome.draining_seconds += now - pod.removed if pod.removed is not None else 0.0

    def serve(pod_id: int, length: float, now: float) -> None:
        pods[pod_id].calls += 1
        at(now + length, "end", pod_id)

    def free_pod() -> int | None:
        """As livekit-server picks a worker: at random, weighted by its free share (1 - load)."""
        open_pods = [(i, capacity - p.calls) for i, p in pods.items() if p.ready and not p.draining and p.calls < capacity]
        if not open_pods:
            return None
        return rng.choices([i for i, _ in open_pods], weights=[free for _, free in open_pods])[0]

    def drain_line(now: float) -> None:
        while line and (pod_id := free_pod()) is not None:
            arrival, length = line.popleft()
            wait = now - arrival
            outcome.longest_wait_s = max(outcome.longest_wait_s, wait)
            outcome.total_wait_s += wait
            serve(pod_id, length, now)

    def scale(target: int, now: float, warm: bool = False) -> None:
        serving = [i for i, p in pods.items() if not p.draining]
        for _ in range(target - len(serving)):
            pod_id = next(ids)
            pods[pod_id] = Pod(created=now, ready_at=now if warm else now + pod_start_seconds)
            at(pods[pod_id].ready_at, "ready", pod_id)
        surplus = len(serving) - target
        if surplus > 0:
            # Starting pods first (newest first), then the ready ones with the fewest calls (without a
            # deletion cost the ReplicaSet takes the newest ready pods, whatever they carry).
            def rank(i: int) -> tuple:
                return (pods[i].ready, pods[i].calls if deletion_cost else 0, -pods[i].created)

            victims = sorted(serving, key=rank)[:surplus]
            for pod_id in victims:
                pods[pod_id].draining, pods[pod_id].removed = True, now
                if pods[pod_id].calls == 0:
                    finish(pod_id, now)

    first = policy(Observation(0, True, None, interval=interval), history, 0.0)
    history = first.history
    scale(first.replicas, 0.0, warm=True)
    for index, (arrival, _) in enumerate(calls):
        at(arrival, "arrive", index)
    for tick in range(1, int(day // interval) + 1):
        at(tick * interval, "observe")
    for minute in range(0, int(day // 60) + 1):
        at(minute * 60.0, "sample", minute)

    while events:
        now, _, kind, subject = heapq.heappop(events)
        if now > day:
            break
        if kind == "arrive":
            outcome.callers += 1
            arrival, length = calls[subject]
            pod_id = free_pod() if not line else None
            if pod_id is None:
                outcome.waited += 1
                line.append((arrival, length))
            else:
                serve(pod_id, length, now)
        elif kind == "end":
            pod = pods[subject]
            pod.calls -= 1
            if pod.draining and pod.calls == 0:
                finish(subject, now)
            else:
                drain_line(now)
        elif kind == "ready":
            if subject in pods and not pods[subject].draining:
                pods[subject].ready = True
                drain_line(now)
        elif kind == "observe":
            rooms = sum(p.calls for p in pods.values() if p.ready and not p.draining)
            current = sum(1 for p in pods.values() if not p.draining)
            decision = policy(Observation(rooms, True, current, interval=interval), history, now)
            history = decision.history
            if decision.replicas != current:
                outcome.scale_ups += decision.replicas > current
                outcome.scale_downs += decision.replicas < current
                scale(decision.replicas, now)
        elif kind == "sample":
            serving = sum(p.calls for p in pods.values())
            ready = sum(capacity for p in pods.values() if p.ready and not p.draining)
            outcome.timeline.append((int(now), serving, ready, len(line), len(pods)))
    for arrival, _ in line:  # still waiting when the day ends
        outcome.longest_wait_s = max(outcome.longest_wait_s, day - arrival)
        outcome.total_wait_s += day - arrival
    for pod_id in list(pods):
        finish(pod_id, day)
    return outcome
