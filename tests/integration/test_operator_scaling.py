"""Autoscaling on active rooms against the real ReplicaSet controller: worker pods (kwok, on
127.1.x.y) report their rooms through endpoints the test serves on each pod's IP and metrics port;
the operator scales up at once, and after the stabilization window scales down, marking each pod's
deletion cost so that the ReplicaSet controller removes exactly the idle pods."""

from __future__ import annotations

import pytest

from .harness.processes import wait_until
from .harness.voiceagents import local_spec

pytestmark = pytest.mark.testbed

ROOMS = "agent_worker_active_sessions"
METRICS_PORT = 9100  # the worker's default, spec.metricsPort
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def test_rooms_scale_the_workers_up_and_then_down_removing_exactly_the_idle_pods(agents, start_operator, serve_metrics):
    operator = start_operator()
    agents.create("local", local_spec(scaling={
        "minReplicas": 1, "maxReplicas": 6, "targetActiveRoomsPerReplica": 1, "scaleDownStabilizationSeconds": 3}))
    wait_until(lambda: len(agents.worker_pods("local")) == 1, "one Ready worker", operator.process)
    endpoints = {}

    def serve(rooms_by_pod: dict[str, int]) -> None:
        for pod in agents.worker_pods("local"):
            if pod.metadata.name not in endpoints:
                endpoints[pod.metadata.name] = serve_metrics(host=pod.status.pod_ip, port=METRICS_PORT)
        for name, rooms in rooms_by_pod.items():
            endpoints[name].set({ROOMS: rooms})

    first = agents.worker_pods("local")[0].metadata.name
    serve({first: 4})  # four rooms on one worker: four are needed
    wait_until(lambda: len(agents.worker_pods("local")) == 4, "four Ready workers", operator.process, timeout=60)
    pods = [p.metadata.name for p in agents.worker_pods("local")]
    others = [name for name in pods if name != first]
    serve({first: 1, others[0]: 1, others[1]: 1, others[2]: 1})
    wait_until(lambda: agents.get("local")["status"].get("activeRooms") == 4, "activeRooms=4", operator.process)
    assert agents.apps.read_namespaced_deployment("local-worker", agents.namespace).spec.replicas == 4

    serve({first: 1, others[0]: 0, others[1]: 1, others[2]: 0})  # two callers hang up
    wait_until(lambda: len(agents.worker_pods("local", ready_only=False)) == 2, "two workers left", operator.process, timeout=60)

    remaining = agents.worker_pods("local", ready_only=False)
    assert sorted(p.metadata.name for p in remaining) == sorted([first, others[1]])
    assert {p.metadata.annotations[DELETION_COST] for p in remaining} == {"1"}
    agent = agents.get("local")
    assert (agent["status"]["desiredReplicas"], agent["status"]["activeRooms"]) == (2, 2)
    assert agent["status"]["lastScaleTime"]
    events = agents.core.list_namespaced_event(
        agents.namespace, field_selector="involvedObject.kind=VoiceAgent,involvedObject.name=local").items
    ups = [e.message for e in events if e.reason == "ScaledUp"]
    downs = [e.message for e in events if e.reason == "ScaledDown"]
    assert ups[0].startswith("workers 1 -> 4 (") and ups[0].endswith(": 4 active rooms, target 1 per worker, bounds 1..6")
    assert len(downs) == 1
    assert downs[0].startswith("workers 4 -> 2 (") and downs[0].endswith(": 2 active rooms, target 1 per worker, bounds 1..6")
    assert all(endpoints[name].scrapes > 0 for name in pods)
