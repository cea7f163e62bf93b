"""A model change on a real apiserver: the managed Ollama's Deployment (its template, its pod) stays as
it was, the new model list gets its own pull Job, the earlier list's Job is deleted, and the VoiceAgent's
OllamaReady condition follows the current Job's status (Ready held back until it has pulled)."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from voiceagent_operator.builders.ollama_pull import ollama_pull_job, pull_job_selector
from voiceagent_operator.naming import Owner
from voiceagent_operator.spec import parse_spec

from .harness.processes import wait_until
from .harness.voiceagents import local_spec

pytestmark = pytest.mark.testbed


def test_a_model_change_keeps_the_ollama_pod_and_pulls_through_a_new_job(agents, start_operator):
    operator = start_operator()
    spec = local_spec(ollama={"enabled": True, "gpu": {"count": 0}, "models": ["tiny:1b"]})
    agents.create("models", spec)
    owner = Owner.of(agents.get("models"))
    batch = k8s.BatchV1Api(agents.api)

    def jobs() -> list[str]:
        return sorted(j.metadata.name for j in batch.list_namespaced_job(agents.namespace, label_selector=pull_job_selector(owner)).items)

    def ollama_pods() -> list[str]:
        selector = "app.kubernetes.io/component=ollama,app.kubernetes.io/instance=models"
        return sorted(p.metadata.uid for p in agents.core.list_namespaced_pod(agents.namespace, label_selector=selector).items)

    first = ollama_pull_job(owner, parse_spec(spec))["metadata"]["name"]
    wait_until(lambda: jobs() == [first] and len(ollama_pods()) == 1, "the Ollama pod and the first pull Job", operator.process)
    before = agents.apps.read_namespaced_deployment("models-ollama", agents.namespace)
    pods_before = ollama_pods()

    agents.patch("models", {"spec": {"ollama": {"models": ["tiny:1b", "embed:small"]}}})
    changed = parse_spec(agents.get("models")["spec"])
    second = ollama_pull_job(owner, changed)["metadata"]["name"]
    wait_until(lambda: second in jobs(), "the second pull Job", operator.process)
    generation = agents.get("models")["metadata"]["generation"]
    wait_until(lambda: agents.get("models")["status"]["observedGeneration"] == generation, "the change reconciled", operator.process)

    after = agents.apps.read_namespaced_deployment("models-ollama", agents.namespace)
    assert after.metadata.generation == before.metadata.generation  # no template change, no rollout
    assert after.spec.template == before.spec.template
    assert ollama_pods() == pods_before
    job = batch.read_namespaced_job(second, agents.namespace)
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["OLLAMA_PULL_MODELS"].split()[:2] == ["tiny:1b", "embed:small"]
    assert env["OLLAMA_HOST"] == f"http://models-ollama.{agents.namespace}.svc:11434"
    assert job.metadata.owner_references[0].uid == owner.uid

    # The earlier list's Job goes (with its pods: a background deletion); only the current one is left.
    wait_until(lambda: jobs() == [second], f"the first pull Job {first} to be deleted", operator.process)

    def reported() -> bool:
        """OllamaReady names the current Job, with the reason its status gives (the Job controller runs
        here; whether its pod runs depends on the node it lands on, so any state of the Job is read)."""
        condition = agents.condition("models", "OllamaReady") or {}
        ready = agents.condition("models", "Ready") or {}
        finished = {c.type for c in batch.read_namespaced_job(second, agents.namespace).status.conditions or [] if c.status == "True"}
        if "Complete" in finished:
            return condition.get("reason") == "ModelsPulled" and second in condition.get("message", "")
        if "Failed" in finished:
            return (condition.get("reason") == "PullFailed" and f"kubectl logs job/{second}" in condition.get("message", "")
                    and ready.get("reason") == "ModelsNotPulled")
        return (condition.get("reason") == "PullingModels" and second in condition.get("message", "")
                and (ready.get("status"), ready.get("reason")) == ("False", "ModelsNotPulled"))
    wait_until(reported, "OllamaReady to follow the current pull Job", operator.process, timeout=30)
