"""The headroom rule on the real apiserver: while rooms rise on the worker pods (kwok pods on
127.1.x.y, their rooms served by the test on each pod's IP and metrics port), the operator runs more
workers than the rooms need now — enough for the rooms expected before a pod started now is ready —
and once the rooms hold steady it comes back, after the scale-down window, to ceil(rooms / target)."""

from __future__ import annotations

import math
import time

import pytest

from .harness.processes import wait_until
from .harness.voiceagents import local_spec
from .test_operator_scaling import Fleet

pytestmark = pytest.mark.testbed

TARGET = 2
# 15 rooms at 2 per worker: 8 workers, and sqrt(15) / 4 = 0.97 spare sessions still fit in the 8th.
STEADY_ROOMS = 15
STEADY_REPLICAS = math.ceil(STEADY_ROOMS / TARGET)
RISE_STEP_ROOMS, RISE_STEP_SECONDS = 1, 2.0  # 0.5 rooms a second: 17 more expected over a 30 s start and a 5 s observation
WINDOW = 10


def test_rising_rooms_scale_ahead_and_steady_rooms_come_back_to_what_they_need(agents, start_operator, serve_metrics):
    operator = start_operator()
    agents.create("surge", local_spec(scaling={
        "minReplicas": 1, "maxReplicas": 20, "targetActiveRoomsPerReplica": TARGET,
        "scaleDownStabilizationSeconds": WINDOW, "podStartSeconds": 30, "spareSessions": 0}))
    fleet = Fleet(agents, serve_metrics, "surge")
    wait_until(lambda: len(agents.worker_pods("surge")) == 1, "one Ready worker", operator.process)
    fleet.rooms(0)

    # The rise: (rooms now, replicas now) every half second while the rooms climb to STEADY_ROOMS.
    during_rise = []
    for rooms in range(RISE_STEP_ROOMS, STEADY_ROOMS + 1, RISE_STEP_ROOMS):
        fleet.rooms(rooms)
        step_ends = time.monotonic() + RISE_STEP_SECONDS
        while time.monotonic() < step_ends:
            during_rise.append((rooms, fleet.replicas()))
            time.sleep(0.5)
    ahead = [(rooms, replicas) for rooms, replicas in during_rise if replicas > math.ceil(rooms / TARGET) + 2]

    # Steady rooms: the rise leaves the one-minute look-back, then the scale-down window passes.
    def back_to_what_the_rooms_need() -> bool:
        fleet.rooms(STEADY_ROOMS)  # every new pod answers, so the count is complete and may scale down
        return fleet.replicas() == STEADY_REPLICAS

    wait_until(back_to_what_the_rooms_need, f"{STEADY_REPLICAS} workers for {STEADY_ROOMS} steady rooms", operator.process,
               timeout=180, interval=1.0)
    settled = []
    for _ in range(2 * WINDOW):  # and it stays there: no scale-up without a rise, no scale-down below the rooms
        fleet.rooms(STEADY_ROOMS)
        settled.append(fleet.replicas())
        time.sleep(0.5)

    assert ahead, f"never more workers than ceil(rooms / {TARGET}) + 2 while rooms rose: {during_rise}"
    assert max(replicas for _, replicas in during_rise) > STEADY_REPLICAS, "ahead of even the rooms still to come"
    assert set(settled) == {STEADY_REPLICAS}
    status = agents.get("surge")["status"]
    assert (status["activeRooms"], status["desiredReplicas"]) == (STEADY_ROOMS, STEADY_REPLICAS)
