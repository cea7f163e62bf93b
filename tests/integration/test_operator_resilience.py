"""The operator on a real apiserver when the world changes under it: the monitoring API appears,
the operator is killed in the middle of a reconciliation, a spec the schema let through is wrong."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from .harness.processes import wait_until
from .harness.voiceagents import local_spec

pytestmark = pytest.mark.testbed

INSTANCE = "app.kubernetes.io/instance={name}"
PAUSING, RESUMING = "Pausing operations in favour of", "Resuming operations"  # Kopf's peering log
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com", "scope": "Namespaced",
        "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor", "listKind": "ServiceMonitorList"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}],
    },
}


@pytest.fixture
def service_monitor_crd(kube_api):
    """Installs a minimal ServiceMonitor CRD (as the Prometheus Operator would); removed afterwards."""
    extensions = k8s.ApiextensionsV1Api(kube_api)

    def install() -> None:
        extensions.create_custom_resource_definition(SERVICE_MONITOR_CRD)

    yield install
    try:
        extensions.delete_custom_resource_definition(SERVICE_MONITOR_CRD["metadata"]["name"])
    except ApiException as error:
        if error.status != 404:
            raise


def test_a_service_monitor_is_created_once_the_monitoring_api_is_installed(agents, start_operator, service_monitor_crd):
    operator = start_operator()
    agents.create("watched", local_spec(monitoring={"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}))
    missing = agents.wait_for_condition("watched", "MonitoringReady", "False", operator.process,
                                        reason="ServiceMonitorAPIMissing")

    service_monitor_crd()

    applied = agents.wait_for_condition("watched", "MonitoringReady", "True", operator.process,
                                        reason="ServiceMonitorApplied", timeout=30)
    monitor = agents.custom.get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", agents.namespace, "servicemonitors", "watched-worker")
    assert "monitoring.coreos.com" in missing["message"]
    assert applied["lastTransitionTime"] >= missing["lastTransitionTime"]
    assert monitor["metadata"]["ownerReferences"][0]["uid"] == agents.get("watched")["metadata"]["uid"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "watched"
    assert agents.condition("watched", "Ready")["status"] == "True"


def test_an_operator_killed_mid_reconcile_is_replaced_and_the_new_one_converges_without_duplicates(agents, start_operator):
    first = start_operator()
    config_maps = watch.Watch()
    killed_with: dict = {}

    def kill_at_first_child() -> None:
        for _ in config_maps.stream(agents.core.list_namespaced_config_map, agents.namespace,
                                    label_selector=INSTANCE.format(name="crash"), timeout_seconds=60):
            os.killpg(first.process.popen.pid, signal.SIGKILL)
            killed_with["deployment"] = bool(agents.apps.list_namespaced_deployment(
                agents.namespace, label_selector=INSTANCE.format(name="crash")).items)
            killed_with["status"] = agents.get("crash").get("status")
            config_maps.stop()
            return
    killer = threading.Thread(target=kill_at_first_child)
    killer.start()
    agents.create("crash", local_spec(scaling={"minReplicas": 2, "maxReplicas": 3}))
    killer.join(timeout=60)
    first.process.popen.wait(timeout=10)

    second = start_operator()
    agents.wait_for_condition("crash", "Ready", "True", second.process, timeout=60)
    wait_until(lambda: agents.get("crash")["status"].get("readyReplicas") == 2, "readyReplicas=2", second.process)

    selector = INSTANCE.format(name="crash")
    assert first.process.popen.returncode == -signal.SIGKILL
    # Killed mid-reconcile: after its first child, before its status (the children are applied side
    # by side, so whether the Deployment had landed too is a race; both are recorded for the report).
    assert killed_with["status"] is None, killed_with
    assert [d.metadata.name for d in agents.apps.list_namespaced_deployment(agents.namespace, label_selector=selector).items] == ["crash-worker"]
    assert len(agents.apps.list_namespaced_replica_set(agents.namespace, label_selector=selector).items) == 1
    assert [c.metadata.name for c in agents.core.list_namespaced_config_map(agents.namespace, label_selector=selector).items] == ["crash-worker-config"]
    assert [s.metadata.name for s in agents.core.list_namespaced_service(agents.namespace, label_selector=selector).items] == ["crash-worker"]
    assert len(agents.worker_pods("crash", ready_only=False)) == 2


@pytest.mark.parametrize(("change", "field"), [
    ({"pricing": {"nova-3": {"perAudioMinute": 0.01}}}, "spec.pricing.nova-3"),
    ({"stt": {"credentialsSecret": "speech-a"}, "tts": {"credentialsSecret": "speech-b"}}, "spec.tts.credentialsSecret"),
], ids=["price-key-without-provider", "two-secrets-for-one-provider-key"])
def test_an_invalid_update_past_the_schema_degrades_and_leaves_the_workers_as_they_are(agents, start_operator, change, field):
    operator = start_operator()
    agents.create("steady", local_spec(instructions="Be brief."))
    agents.wait_for_condition("steady", "Ready", "True", operator.process, timeout=60)
    wait_until(lambda: agents.condition("steady", "Progressing")["reason"] == "Stable", "a stable rollout", operator.process)
    before = agents.apps.read_namespaced_deployment("steady-worker", agents.namespace)
    config_before = agents.core.read_namespaced_config_map("steady-worker-config", agents.namespace)

    agents.patch("steady", {"spec": {"instructions": "Be verbose.", **change}})  # admitted by the CRD

    degraded = agents.wait_for_condition("steady", "Degraded", "True", operator.process, reason="InvalidSpec")
    generation = agents.get("steady")["metadata"]["generation"]
    wait_until(lambda: operator.metric('voiceagent_operator_reconcile_errors_total{reason="InvalidSpec"}') >= 3,
               "three resyncs of the invalid spec", operator.process)
    after = agents.apps.read_namespaced_deployment("steady-worker", agents.namespace)
    config_after = agents.core.read_namespaced_config_map("steady-worker-config", agents.namespace)
    warnings = [e for e in agents.core.list_namespaced_event(agents.namespace).items if e.reason == "InvalidSpec"]

    assert degraded["message"].startswith(f"{field}: ")
    assert degraded["observedGeneration"] == generation
    assert after.metadata.resource_version == before.metadata.resource_version
    assert config_after.data == config_before.data and config_after.data["AGENT_INSTRUCTIONS"] == "Be brief."
    assert [(e.type, e.count or 1) for e in warnings] == [("Warning", 1)]
    assert field in warnings[0].message


def test_of_two_operator_replicas_only_the_higher_priority_one_reconciles(agents, start_operator):
    standby = start_operator()
    active = start_operator()  # started later, so it outranks the first (see harness/operator.py)
    wait_until(lambda: PAUSING in standby.process.log_tail(200),
               "the first replica to pause", standby.process, timeout=30)
    standby_reconciles = standby.metric("voiceagent_operator_reconciles_total")

    agents.create("pair", local_spec())
    agents.wait_for_condition("pair", "Ready", "True", active.process, timeout=60)
    wait_until(lambda: active.metric('voiceagent_operator_reconciles_total{outcome="ok"}') >= 3,
               "three reconciliations by the active replica", active.process)

    assert standby.process.alive() and active.process.alive()
    assert standby.metric("voiceagent_operator_reconciles_total") == standby_reconciles
    assert f"[{agents.namespace}/pair]" not in standby.process.log_tail(10_000)
    assert active.metric(f'voiceagent_operator_desired_replicas{{namespace="{agents.namespace}",voiceagent="pair"}}') == 1


def test_when_the_active_replica_is_killed_mid_scale_the_standby_takes_over_within_15_seconds_without_duplicates(
        agents, start_operator, serve_metrics):
    from .test_operator_scaling import REACTIVE, Fleet

    standby = start_operator()
    active = start_operator()  # started later, so it outranks the first (see harness/operator.py)
    wait_until(lambda: PAUSING in standby.process.log_tail(200),
               "the first replica to pause", standby.process, timeout=30)
    agents.create("pair", local_spec(scaling={"minReplicas": 1, "maxReplicas": 6, "targetActiveRoomsPerReplica": 1,
                                              "scaleDownStabilizationSeconds": 600, **REACTIVE}))
    fleet = Fleet(agents, serve_metrics, "pair")
    wait_until(lambda: len(agents.worker_pods("pair")) == 1, "one Ready worker", active.process, timeout=60)
    gauge = 'voiceagent_operator_desired_replicas{namespace="%s",voiceagent="pair"}' % agents.namespace
    standby_gauge_while_standing_by = standby.metric(gauge)

    def events() -> list:
        return agents.core.list_namespaced_event(
            agents.namespace, field_selector="involvedObject.kind=VoiceAgent,involvedObject.name=pair").items

    fleet.rooms(3)
    wait_until(lambda: fleet.replicas() == 3, "the active replica's scale-up to 3", active.process, timeout=30)
    wait_until(lambda: any(e.message.startswith("workers 1 -> 3") for e in events()), "the active's ScaledUp event",
               active.process, timeout=15)
    resumed = standby.process.log_tail(10_000).count(RESUMING)
    os.killpg(active.process.popen.pid, signal.SIGKILL)  # mid-scale: its new pods are still starting
    killed_at = time.monotonic()
    active.process.popen.wait(timeout=10)
    wait_until(lambda: standby.process.log_tail(10_000).count(RESUMING) > resumed, "the standby to resume",
               standby.process, timeout=30)
    handed_over = time.monotonic() - killed_at
    wait_until(lambda: len(agents.worker_pods("pair")) == 3, "three Ready workers", standby.process, timeout=60)
    fleet.rooms(5)
    wait_until(lambda: fleet.replicas() == 5, "the standby's scale-up to 5", standby.process, timeout=30)

    # each ScaledUp event follows its scale patch (Kopf posts events in the background)
    wait_until(lambda: any(e.message.startswith("workers 3 -> 5") for e in events()), "the standby's ScaledUp event",
               standby.process, timeout=15)
    time.sleep(1)  # a duplicate, if any, would land now
    scaled = sorted((e.message.split(" (")[0], e.count or 1) for e in events() if e.reason == "ScaledUp")
    created = [e.message for e in events() if e.reason == "Created"]

    assert standby_gauge_while_standing_by == 0, "a standby exports no per-VoiceAgent gauge"
    assert handed_over <= 15, f"hand-over took {handed_over:.1f} s"
    assert scaled == [("workers 1 -> 3", 1), ("workers 3 -> 5", 1)]
    assert len(created) == len(set(created)), "each child created once"
    assert standby.metric(gauge) == 5


def test_a_replica_that_stood_by_after_serving_takes_over_the_fleet_as_it_is_not_as_it_was(
        agents, start_operator, serve_metrics):
    """Kopf keeps in its indexes what was deleted while a replica stood by; a replica that served starts
    Kopf afresh when paused (voiceagent_operator/standby.py), so a pod deleted meanwhile is not counted."""
    from .test_operator_scaling import METRICS_PORT, REACTIVE, ROOMS

    first = start_operator()
    agents.create("ghost", local_spec(scaling={"minReplicas": 1, "maxReplicas": 6, "targetActiveRoomsPerReplica": 1,
                                               "scaleDownStabilizationSeconds": 600, **REACTIVE}))
    wait_until(lambda: len(agents.worker_pods("ghost")) == 1, "one Ready worker", first.process, timeout=60)
    [old] = agents.worker_pods("ghost")
    old_rooms = serve_metrics(host=old.status.pod_ip, port=METRICS_PORT)
    old_rooms.set({ROOMS: 0})
    wait_until(lambda: old_rooms.scrapes > 0, "the first replica's observation of its worker", first.process, timeout=30)

    second = start_operator()  # outranks the first, which has served and now stands by
    wait_until(lambda: PAUSING in first.process.log_tail(10_000), "the first replica to pause", first.process, timeout=30)
    agents.core.delete_namespaced_pod(old.metadata.name, agents.namespace, grace_period_seconds=0)
    wait_until(lambda: [p.metadata.name for p in agents.worker_pods("ghost")] not in ([], [old.metadata.name]),
               "the deleted worker's replacement", second.process, timeout=60)
    [new] = agents.worker_pods("ghost")
    # kwok may give the new pod the deleted one's address: asking the deleted pod then counts its rooms twice
    reused = new.status.pod_ip == old.status.pod_ip
    new_rooms = old_rooms if reused else serve_metrics(host=new.status.pod_ip, port=METRICS_PORT)
    new_rooms.set({ROOMS: 1})
    if not reused:
        old_rooms.set({ROOMS: 4})  # what the deleted pod's address answers, should anyone still ask it
    wait_until(lambda: (agents.get("ghost").get("status") or {}).get("activeRooms") == 1,
               "the second replica's observation of the new worker", second.process, timeout=30)

    resumed = first.process.log_tail(10_000).count(RESUMING)
    os.killpg(second.process.popen.pid, signal.SIGKILL)
    second.process.popen.wait(timeout=10)
    wait_until(lambda: first.process.log_tail(10_000).count(RESUMING) > resumed, "the first replica to take over",
               first.process, timeout=30)
    scrapes = new_rooms.scrapes
    wait_until(lambda: new_rooms.scrapes >= scrapes + 2, "two observations by the first replica after taking over",
               first.process, timeout=30)
    gauge = f'voiceagent_operator_desired_replicas{{namespace="{agents.namespace}",voiceagent="ghost"}}'

    assert first.process.alive()
    assert agents.apps.read_namespaced_deployment("ghost-worker", agents.namespace).spec.replicas == 1
    assert agents.get("ghost")["status"]["activeRooms"] == 1
    assert first.metric(gauge) == 1
