"""A VoiceAgent's life on a real apiserver, reconciled by the operator running as the chart's
ServiceAccount: create, become Ready, update, resync without writing, delete."""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s

from .harness.control_plane import WRITE_VERBS
from .harness.operator import quiet_for
from .harness.processes import wait_until
from .harness.voiceagents import local_spec

pytestmark = pytest.mark.testbed

FIELD_MANAGER = "voiceagent-operator"
CONFIG_HASH = "agentworker.io/config-hash"


@pytest.fixture
def ready_agent(agents, start_operator):
    """VoiceAgent "local" (the local example, two workers), Ready under a running operator."""
    operator = start_operator()
    agents.create("local", local_spec(scaling={"minReplicas": 2, "maxReplicas": 3}))
    agents.wait_for_condition("local", "Ready", "True", operator.process, timeout=60)
    wait_until(lambda: agents.get("local")["status"].get("readyReplicas") == 2, "readyReplicas=2", operator.process)
    # These kwok pods serve no metrics: once the fleet observation has tried them, the status says so.
    agents.wait_for_condition("local", "RoomsObserved", "False", operator.process, timeout=30, reason="PodsUnreadable")
    return operator


def test_a_voiceagent_gets_a_deployment_whose_ready_pods_make_it_ready(agents, ready_agent, control_plane, operator_chart):
    agent = agents.get("local")
    deployment = agents.apps.read_namespaced_deployment("local-worker", agents.namespace)
    replica_sets = agents.apps.list_namespaced_replica_set(
        agents.namespace, label_selector="app.kubernetes.io/instance=local").items
    pods = agents.worker_pods("local")

    owner = deployment.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("VoiceAgent", "local", agent["metadata"]["uid"], True)
    assert {entry.manager for entry in deployment.metadata.managed_fields if entry.operation == "Apply"} == {FIELD_MANAGER}
    assert deployment.spec.replicas == 2
    assert [rs.metadata.owner_references[0].name for rs in replica_sets] == ["local-worker"]
    assert len(pods) == 2 and all(p.metadata.owner_references[0].name == replica_sets[0].metadata.name for p in pods)
    status = agent["status"]
    assert (status["replicas"], status["readyReplicas"], status["desiredReplicas"], status["activeRooms"]) == (2, 2, 2, 0)
    assert status["observedGeneration"] == agent["metadata"]["generation"]
    assert status["selector"] == "app.kubernetes.io/name=agent-worker,app.kubernetes.io/instance=local,app.kubernetes.io/component=worker"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["observedGeneration"]) == ("WorkersReady", agent["metadata"]["generation"])
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Progressing": "False", "Degraded": "False", "RoomsObserved": "False", "OllamaReady": "False",
        "MonitoringReady": "False"}  # RoomsObserved: these kwok pods serve no metrics, and the status says so
    for kind, read in (("Service", agents.core.read_namespaced_service), ("ConfigMap", agents.core.read_namespaced_config_map),
                       ("PodDisruptionBudget", k8s.PolicyV1Api(agents.api).read_namespaced_pod_disruption_budget)):
        name = "local-worker-config" if kind == "ConfigMap" else "local-worker"
        assert read(name, agents.namespace).metadata.owner_references[0].uid == agent["metadata"]["uid"], kind
    assert forbidden(control_plane, operator_chart.operator_user) == []


def test_an_update_of_instructions_and_image_rolls_the_workers(agents, ready_agent):
    before = agents.apps.read_namespaced_deployment("local-worker", agents.namespace)

    agents.patch("local", {"spec": {"instructions": "Speak like a pirate.", "image": "agent-worker:2"}})

    def rolled() -> bool:
        deployment = agents.apps.read_namespaced_deployment("local-worker", agents.namespace)
        return (deployment.spec.template.spec.containers[0].image == "agent-worker:2"
                and (deployment.status.updated_replicas or 0) == 2 and (deployment.status.ready_replicas or 0) == 2
                and deployment.status.replicas == 2 and len(agents.worker_pods("local", ready_only=False)) == 2
                and deployment.status.observed_generation == deployment.metadata.generation)
    wait_until(rolled, "the Deployment to roll to image agent-worker:2", ready_agent.process, timeout=60)
    after = agents.apps.read_namespaced_deployment("local-worker", agents.namespace)
    config = agents.core.read_namespaced_config_map("local-worker-config", agents.namespace)
    pods = agents.worker_pods("local")
    agent = agents.get("local")

    assert config.data["AGENT_INSTRUCTIONS"] == "Speak like a pirate."
    assert after.spec.template.metadata.annotations[CONFIG_HASH] != before.spec.template.metadata.annotations[CONFIG_HASH]
    assert {p.spec.containers[0].image for p in pods} == {"agent-worker:2"}
    wait_until(lambda: agents.get("local")["status"]["observedGeneration"] == agent["metadata"]["generation"],
               "status.observedGeneration to follow the update", ready_agent.process)


def test_a_resync_of_an_unchanged_voiceagent_sends_no_request(agents, ready_agent, control_plane, operator_chart):
    user, namespace = operator_chart.operator_user, agents.namespace
    wait_until(lambda: quiet_for(control_plane, user, namespace, seconds=2.5), "the operator's writes to settle",
               ready_agent.process, timeout=30)
    writes_before = control_plane.audit_events(user, WRITE_VERBS, namespace)
    reads_before = len(control_plane.audit_events(user, ("get", "list"), namespace))
    reconciles_before = ready_agent.metric('voiceagent_operator_reconciles_total{outcome="ok"}')

    time.sleep(6)  # six resync periods of 1 s

    reconciles = ready_agent.metric('voiceagent_operator_reconciles_total{outcome="ok"}') - reconciles_before
    reads = len(control_plane.audit_events(user, ("get", "list"), namespace)) - reads_before
    writes = control_plane.audit_events(user, WRITE_VERBS, namespace)[len(writes_before):]
    assert reconciles >= 4
    assert reads == 0  # the Deployment, the pods and every child come from the operator's watches
    assert [(w["verb"], w["requestURI"]) for w in writes] == []


def test_deleting_a_voiceagent_garbage_collects_its_children(agents, ready_agent):
    selector = "app.kubernetes.io/instance=local"
    policy = k8s.PolicyV1Api(agents.api)

    agents.delete("local")

    def children() -> dict[str, int]:
        return {
            "voiceagent": int(agents.exists("local")),
            "deployments": len(agents.apps.list_namespaced_deployment(agents.namespace, label_selector=selector).items),
            "replicasets": len(agents.apps.list_namespaced_replica_set(agents.namespace, label_selector=selector).items),
            "pods": len(agents.core.list_namespaced_pod(agents.namespace, label_selector=selector).items),
            "services": len(agents.core.list_namespaced_service(agents.namespace, label_selector=selector).items),
            "configmaps": len(agents.core.list_namespaced_config_map(agents.namespace, label_selector=selector).items),
            "pdbs": len(policy.list_namespaced_pod_disruption_budget(agents.namespace, label_selector=selector).items),
        }
    assert children() != dict.fromkeys(children(), 0)
    wait_until(lambda: set(children().values()) == {0}, "every child to be garbage-collected", ready_agent.process, timeout=60)


def forbidden(control_plane, user: str) -> list[str]:
    """Requests of `user` that RBAC refused."""
    return [f"{e['verb']} {e['requestURI']}" for e in control_plane.audit_events(user)
            if (e.get("responseStatus") or {}).get("code") == 403]
