"""Every pod the chart and the operator create is admitted where the restricted Pod Security
Standard is enforced: the chart's operator pods, the workers and the managed Ollama."""

from __future__ import annotations

import json

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .harness.operator import RESTRICTED
from .harness.processes import wait_until
from .harness.voiceagents import local_spec

pytestmark = pytest.mark.testbed


def test_the_charts_operator_pods_run_in_a_restricted_namespace(kube_api, operator_chart):
    core, apps = k8s.CoreV1Api(kube_api), k8s.AppsV1Api(kube_api)
    labels = core.read_namespace(operator_chart.namespace).metadata.labels

    deployment = apps.read_namespaced_deployment("agent-worker-operator", operator_chart.namespace)
    pods = core.list_namespaced_pod(operator_chart.namespace, label_selector="app.kubernetes.io/component=operator").items

    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert (deployment.spec.replicas, deployment.status.ready_replicas) == (2, 2)
    assert len(pods) == 2 and all(p.status.phase == "Running" for p in pods)
    assert refused_as_privileged(core, operator_chart.namespace)


def test_worker_and_ollama_pods_are_admitted_in_a_restricted_namespace(agents, start_operator):
    core, apps, namespace = agents.core, agents.apps, agents.namespace
    core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    operator = start_operator()

    agents.create("gpu", local_spec(
        llm={"provider": "ollama", "model": "gemma3-270m"},  # served by the managed Ollama
        ollama={"enabled": True, "gpu": {"count": 0}, "storage": {"size": "1Gi", "retentionPolicy": "Delete"}},
        scaling={"minReplicas": 2, "maxReplicas": 2}))

    wait_until(lambda: len(agents.worker_pods("gpu")) == 2, "two Ready workers", operator.process, timeout=60)
    ollama_selector = "app.kubernetes.io/component=ollama,app.kubernetes.io/instance=gpu"
    wait_until(lambda: len(core.list_namespaced_pod(namespace, label_selector=ollama_selector).items) == 1,
               "the Ollama pod to be created", operator.process, timeout=60)
    replica_sets = apps.list_namespaced_replica_set(namespace, label_selector="app.kubernetes.io/instance=gpu").items
    refusals = [e.message for e in core.list_namespaced_event(namespace).items if e.reason == "FailedCreate"]

    assert refused_as_privileged(core, namespace)
    assert sorted(rs.metadata.labels["app.kubernetes.io/component"] for rs in replica_sets) == ["ollama", "worker"]
    assert all(not any(c.type == "ReplicaFailure" for c in rs.status.conditions or []) for rs in replica_sets)
    assert refusals == []


def refused_as_privileged(core: k8s.CoreV1Api, namespace: str) -> bool:
    """The namespace really enforces `restricted`: a pod without a security context is refused."""
    pod = {"metadata": {"name": "plain"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    try:
        core.create_namespaced_pod(namespace, pod, dry_run="All")
    except ApiException as error:
        message = json.loads(error.body)["message"]
        return error.status == 403 and 'violates PodSecurity "restricted:latest"' in message
    return False
