"""Autoscaling on active rooms against the real ReplicaSet controller: worker pods (kwok, on
127.1.x.y) report their rooms through endpoints the test serves on each pod's IP and metrics port;
the operator scales up at once, and after the stabilization window scales down, marking each pod's
deletion cost so that the ReplicaSet controller removes exactly the idle pods."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .harness.processes import wait_until
from .harness.voiceagents import local_spec

pytestmark = pytest.mark.testbed

ROOMS = "agent_worker_active_sessions"
METRICS_PORT = 9100  # the worker's default, spec.metricsPort
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
REACTIVE = {"podStartSeconds": 0, "spareSessions": 0}  # the reactive rule: pods counted against rooms
# The operator's fleet observation interval (VOICEAGENT_OBSERVE_SECONDS, its default here): the window
# runs from its last observation of the busy count, up to one interval before a test sees the change.
OBSERVE_SECONDS = 5


def test_rooms_scale_the_workers_up_and_then_down_removing_exactly_the_idle_pods(agents, start_operator, serve_metrics):
    operator = start_operator()
    agents.create("local", local_spec(scaling={
        "minReplicas": 1, "maxReplicas": 6, "targetActiveRoomsPerReplica": 1, "scaleDownStabilizationSeconds": 3,
        **REACTIVE}))
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


class Fleet:
    """Rooms served on each worker pod's own IP and metrics port, as the workers would."""

    def __init__(self, agents, serve_metrics, name: str) -> None:
        self.agents, self.serve_metrics, self.name, self.endpoints = agents, serve_metrics, name, {}

    def rooms(self, total: int) -> None:
        """`total` rooms on the first ready pod, none on the others."""
        pods = self.agents.worker_pods(self.name)
        for pod in pods:
            if pod.metadata.name not in self.endpoints:
                self.endpoints[pod.metadata.name] = self.serve_metrics(host=pod.status.pod_ip, port=METRICS_PORT)
        for index, pod in enumerate(pods):
            self.endpoints[pod.metadata.name].set({ROOMS: total if index == 0 else 0})

    def replicas(self) -> int:
        return self.agents.apps.read_namespaced_deployment(f"{self.name}-worker", self.agents.namespace).spec.replicas


def test_scaling_goes_on_while_a_child_is_refused_and_while_the_spec_cannot_be_acted_on(agents, start_operator, serve_metrics):
    operator = start_operator()
    agents.create("steady", local_spec(
        ollama={"enabled": True, "gpu": {"count": 0}},
        scaling={"minReplicas": 1, "maxReplicas": 6, "targetActiveRoomsPerReplica": 1, **REACTIVE}))
    fleet = Fleet(agents, serve_metrics, "steady")
    wait_until(lambda: len(agents.worker_pods("steady")) == 1, "one Ready worker", operator.process)
    wait_until(lambda: agents.core.read_namespaced_persistent_volume_claim("steady-ollama-models", agents.namespace),
               "the model volume", operator.process)

    # The apiserver refuses the model volume's change (an unbound claim's spec is immutable): 422 on that child only.
    agents.patch("steady", {"spec": {"ollama": {"storage": {"size": "60Gi"}}}})
    fleet.rooms(2)
    wait_until(lambda: fleet.replicas() == 2, "a scale-up to 2 despite the refused volume", operator.process, timeout=30)
    refused = agents.wait_for_condition("steady", "Degraded", "True", operator.process, reason="ApplyFailed")

    # A spec only the operator can refuse (a price key without a provider): scaling goes on from the last valid spec.
    agents.patch("steady", {"spec": {"ollama": {"storage": {"size": None}},
                                     "pricing": {"nova-3": {"perAudioMinute": 0.01}}}})
    invalid = agents.wait_for_condition("steady", "Degraded", "True", operator.process, reason="InvalidSpec")
    wait_until(lambda: len(agents.worker_pods("steady")) == 2, "two Ready workers", operator.process, timeout=30)
    fleet.rooms(4)
    wait_until(lambda: fleet.replicas() == 4, "a scale-up to 4 with an invalid spec", operator.process, timeout=30)
    status = agents.get("steady")["status"]

    assert refused["message"].startswith("PersistentVolumeClaim/steady-ollama-models: PATCH ")
    assert "422" in refused["message"]
    assert invalid["message"].startswith("spec.pricing.nova-3: ") and "scaling continues from the last valid spec" in invalid["message"]
    assert (status["desiredReplicas"], status["activeRooms"]) == (4, 4)
    assert agents.condition("steady", "Progressing")["status"] == "True"


def test_scale_down_stabilization_holds_across_an_operator_restart(agents, start_operator, serve_metrics):
    window = 20
    first = start_operator()
    agents.create("calm", local_spec(scaling={
        "minReplicas": 1, "maxReplicas": 4, "targetActiveRoomsPerReplica": 1, "scaleDownStabilizationSeconds": window,
        **REACTIVE}))
    fleet = Fleet(agents, serve_metrics, "calm")
    wait_until(lambda: len(agents.worker_pods("calm")) == 1, "one Ready worker", first.process)
    fleet.rooms(3)
    wait_until(lambda: len(agents.worker_pods("calm")) == 3, "three Ready workers", first.process, timeout=60)
    fleet.rooms(0)
    wait_until(lambda: agents.get("calm")["status"].get("activeRooms") == 0, "activeRooms=0", first.process)
    quiet_since = time.monotonic()

    time.sleep(3)
    os.killpg(first.process.popen.pid, signal.SIGKILL)  # no clean hand-over: the window must survive a crash
    first.process.popen.wait(timeout=10)
    second = start_operator()
    wait_until(lambda: second.metric("voiceagent_operator_reconciles_total") >= 1, "the new operator to reconcile",
               second.process, timeout=30)
    held = []
    while time.monotonic() - quiet_since < window - OBSERVE_SECONDS - 1:
        held.append(fleet.replicas())
        time.sleep(1)
    wait_until(lambda: fleet.replicas() == 1, "the scale-down after a whole window", second.process, timeout=60)
    scaled_after = time.monotonic() - quiet_since

    assert set(held) == {3}, "no scale-down inside the window, before or after the restart"
    assert scaled_after >= window - OBSERVE_SECONDS
