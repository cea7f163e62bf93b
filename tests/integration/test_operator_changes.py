"""What the operator applies on a real apiserver: every optional field set and then removed is gone
from every child, a no-op resync writes nothing (quantities in another form, a MutatingAdmissionPolicy
rewriting a field the operator sets), an object it does not own is never touched, and a name too long
for its children is refused at admission."""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from voiceagent_operator.builders.worker import DEFAULT_RESOURCES

from .harness.operator import quiet_for, writes_of
from .harness.processes import wait_until
from .harness.voiceagents import local_spec
from .test_operator_resilience import service_monitor_crd  # noqa: F401  (a fixture)

pytestmark = pytest.mark.testbed

APPLIED_HASH = "agentworker.io/applied-hash"
OPTIONAL = {
    "instructions": "Speak like a pirate.",
    "imagePullSecrets": [{"name": "registry"}],
    "nodeSelector": {"disk": "ssd"},
    "tolerations": [{"key": "voice", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}},
    "env": [{"name": "EXTRA", "value": "1"}],
    "resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"memory": "2Gi"}},
    "pricing": {"groq/llama-3.3-70b-versatile": {"inputPerMillionTokens": 0.59, "outputPerMillionTokens": 0.79}},
}


def settle(control_plane, operator_chart, agents, operator) -> None:
    wait_until(lambda: quiet_for(control_plane, operator_chart.operator_user, agents.namespace, seconds=3),
               "the operator's writes to settle", operator.process, timeout=60)


def no_writes_over(control_plane, operator_chart, agents, seconds: float) -> list[str]:
    before = len(writes_of(control_plane, operator_chart.operator_user, agents.namespace))
    time.sleep(seconds)
    return writes_of(control_plane, operator_chart.operator_user, agents.namespace)[before:]


def test_every_optional_field_set_then_removed_is_gone_from_every_child_and_a_resync_then_writes_nothing(
        agents, start_operator, control_plane, operator_chart, service_monitor_crd):  # noqa: F811
    service_monitor_crd()
    operator = start_operator()
    spec = local_spec(**OPTIONAL, monitoring={"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
                      ollama={"enabled": True, "gpu": {"count": 0}, "nodeSelector": {"gpu": "yes"},
                              "storage": {"retentionPolicy": "Delete"}})
    spec["llm"] = {**spec["llm"], "model": "tiny"}
    agents.create("full", spec)
    wait_until(lambda: agents.condition("full", "MonitoringReady")["status"] == "True", "the ServiceMonitor", operator.process)
    settle(control_plane, operator_chart, agents, operator)
    pod = agents.apps.read_namespaced_deployment("full-worker", agents.namespace).spec.template.spec
    assert pod.node_selector == {"disk": "ssd"} and pod.tolerations and pod.affinity and pod.image_pull_secrets
    assert agents.core.read_namespaced_persistent_volume_claim("full-ollama-models", agents.namespace).metadata.owner_references

    removal = {key: None for key in OPTIONAL}
    removal["monitoring"] = {"serviceMonitor": {"labels": None}}
    removal["ollama"] = {"nodeSelector": None, "storage": {"retentionPolicy": "Retain"}}
    removal["llm"] = {"model": None}
    agents.patch("full", {"spec": removal})
    generation = agents.get("full")["metadata"]["generation"]
    wait_until(lambda: agents.get("full")["status"]["observedGeneration"] == generation, "the removal reconciled", operator.process)
    settle(control_plane, operator_chart, agents, operator)

    worker = agents.apps.read_namespaced_deployment("full-worker", agents.namespace)
    pod, container = worker.spec.template.spec, worker.spec.template.spec.containers[0]
    config = agents.core.read_namespaced_config_map("full-worker-config", agents.namespace).data
    monitor = agents.custom.get_namespaced_custom_object("monitoring.coreos.com", "v1", agents.namespace, "servicemonitors", "full-worker")
    ollama = agents.apps.read_namespaced_deployment("full-ollama", agents.namespace).spec.template.spec
    volume = agents.core.read_namespaced_persistent_volume_claim("full-ollama-models", agents.namespace)
    assert (pod.node_selector, pod.tolerations, pod.affinity, pod.image_pull_secrets) == (None, None, None, None)
    assert [e.name for e in container.env or []] == ["LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"]
    assert container.resources.requests == DEFAULT_RESOURCES["requests"]  # the operator's defaults again
    assert "AGENT_INSTRUCTIONS" not in config and "AGENT_PRICES" not in config and "AGENT_LLM_MODEL" not in config
    assert "release" not in monitor["metadata"]["labels"]
    assert ollama.node_selector is None
    assert not volume.metadata.owner_references  # Retain: deleting the VoiceAgent keeps the models
    assert no_writes_over(control_plane, operator_chart, agents, seconds=5) == []


def test_quantities_in_another_form_settle_to_no_write(agents, start_operator, control_plane, operator_chart):
    operator = start_operator()
    agents.create("quantities", local_spec(resources={"requests": {"cpu": "0.5", "memory": "0.5Gi"}, "limits": {"cpu": 1}}))
    agents.wait_for_condition("quantities", "Ready", "True", operator.process)
    settle(control_plane, operator_chart, agents, operator)
    stored = agents.apps.read_namespaced_deployment("quantities-worker", agents.namespace).spec.template.spec.containers[0]

    assert stored.resources.requests == {"cpu": "500m", "memory": "512Mi"}  # what the apiserver keeps
    assert no_writes_over(control_plane, operator_chart, agents, seconds=5) == []


def _mutating_policy_version(api: k8s.ApiClient) -> str:
    """The newest admissionregistration version that serves MutatingAdmissionPolicy."""
    for version, group_api in (("v1", k8s.AdmissionregistrationV1Api), ("v1beta1", k8s.AdmissionregistrationV1beta1Api),
                               ("v1alpha1", k8s.AdmissionregistrationV1alpha1Api)):
        try:
            resources = group_api(api).get_api_resources().resources
        except ApiException:
            continue
        if any(r.name == "mutatingadmissionpolicies" for r in resources):
            return version
    raise AssertionError("the test bed's kube-apiserver serves no MutatingAdmissionPolicy API")


@pytest.fixture
def history_limit_policy(kube_api, namespace):
    """A MutatingAdmissionPolicy (and binding) that rewrites spec.revisionHistoryLimit of the Deployments
    in the test's namespace to 7, a field the operator sets to 3."""
    version = _mutating_policy_version(kube_api)
    custom = k8s.CustomObjectsApi(kube_api)
    name = f"history-limit-{namespace}"
    policy = {
        "apiVersion": f"admissionregistration.k8s.io/{version}", "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                    "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
            "matchConditions": [{"name": "in-test-namespace", "expression": f"object.metadata.namespace == '{namespace}'"}],
            "failurePolicy": "Fail", "reinvocationPolicy": "Never",
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {
                "expression": "Object{spec: Object.spec{revisionHistoryLimit: 7}}"}}],
        },
    }
    binding = {"apiVersion": policy["apiVersion"], "kind": "MutatingAdmissionPolicyBinding",
               "metadata": {"name": name}, "spec": {"policyName": name}}
    group = "admissionregistration.k8s.io"
    custom.create_cluster_custom_object(group, version, "mutatingadmissionpolicies", policy)
    custom.create_cluster_custom_object(group, version, "mutatingadmissionpolicybindings", binding)
    yield
    custom.delete_cluster_custom_object(group, version, "mutatingadmissionpolicybindings", name)
    custom.delete_cluster_custom_object(group, version, "mutatingadmissionpolicies", name)


def test_a_mutating_admission_policy_rewriting_a_field_the_operator_sets_settles_to_no_write(
        agents, start_operator, control_plane, operator_chart, history_limit_policy):
    def rewritten() -> bool:  # the policy takes effect once the apiserver has loaded it
        probe = {"metadata": {"name": "probe"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
        return agents.apps.create_namespaced_deployment(agents.namespace, probe, dry_run="All").spec.revision_history_limit == 7
    wait_until(rewritten, "the MutatingAdmissionPolicy to apply", timeout=30)
    operator = start_operator()

    agents.create("mutated", local_spec())
    agents.wait_for_condition("mutated", "Ready", "True", operator.process)
    settle(control_plane, operator_chart, agents, operator)

    assert agents.apps.read_namespaced_deployment("mutated-worker", agents.namespace).spec.revision_history_limit == 7
    assert no_writes_over(control_plane, operator_chart, agents, seconds=5) == []


def test_an_object_the_operator_does_not_own_is_reported_and_left_untouched(
        agents, start_operator, control_plane, operator_chart):
    theirs = {"metadata": {"name": "taken-worker", "labels": {"team": "other"}}, "spec": {
        "replicas": 0, "selector": {"matchLabels": {"app": "theirs"}},
        "template": {"metadata": {"labels": {"app": "theirs"}}, "spec": {"containers": [{"name": "c", "image": "theirs:1"}]}}}}
    before = agents.apps.create_namespaced_deployment(agents.namespace, theirs)
    operator = start_operator()

    agents.create("taken", local_spec())
    degraded = agents.wait_for_condition("taken", "Degraded", "True", operator.process, reason="ChildNotOwned")
    wait_until(lambda: agents.core.read_namespaced_config_map("taken-worker-config", agents.namespace), "the other children",
               operator.process)
    time.sleep(3)  # three resyncs more
    after = agents.apps.read_namespaced_deployment("taken-worker", agents.namespace)
    events = agents.core.list_namespaced_event(
        agents.namespace, field_selector="involvedObject.kind=VoiceAgent,involvedObject.name=taken").items
    warnings = [e for e in events if e.reason == "ChildNotOwned"]

    assert degraded["message"].startswith("Deployment/taken-worker exists and is not this VoiceAgent's")
    assert after.metadata.generation == before.metadata.generation and after.spec.template == before.spec.template
    assert after.metadata.owner_references is None and after.metadata.labels == {"team": "other"}
    assert all(m.manager != "voiceagent-operator" for m in after.metadata.managed_fields)
    assert not [w for w in writes_of(control_plane, operator_chart.operator_user, agents.namespace)
                if "/deployments/taken-worker" in w]
    assert len(warnings) == 1 and "Deployment/taken-worker" in warnings[0].message


def test_a_name_too_long_for_its_children_is_refused_at_admission_with_a_message(agents):
    with pytest.raises(ApiException) as refused:
        agents.create("a" * 57, local_spec())
    agents.create("a" * 56, local_spec(), dry_run=True)

    assert refused.value.status == 422
    assert "metadata.name must be at most 56 characters" in refused.value.body
