"""The model pull Job: the models the LLMs use reach the managed Ollama without a change to its pod."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
from va_examples import ollama_spec

from voiceagent_operator.builders.ollama import ollama_deployment
from voiceagent_operator.builders.ollama_pull import (
    models_state,
    ollama_pull_job,
    outdated_pull_jobs,
    pull_job_selector,
    pulled_models,
)
from voiceagent_operator.naming import Owner
from voiceagent_operator.spec import parse_spec


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _env(job: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in _container(job)["env"]}


def test_the_job_pulls_the_extra_models_and_those_the_llms_use_through_the_ollama_service(owner: Owner) -> None:
    spec = parse_spec(ollama_spec())
    job = ollama_pull_job(owner, spec)
    assert pulled_models(owner, spec) == ["nomic-embed-text", "llama3.1:70b", "llama3.1:8b"]
    assert _env(job)["OLLAMA_PULL_MODELS"] == "nomic-embed-text llama3.1:70b llama3.1:8b"
    assert _env(job)["OLLAMA_HOST"] == "http://support-ollama.voice.svc:11434"
    assert _container(job)["image"] == spec.ollama.image
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert _container(job)["securityContext"]["readOnlyRootFilesystem"] is True
    assert "nvidia.com/gpu" not in str(_container(job)["resources"])
    assert job["metadata"]["ownerReferences"][0]["uid"] == owner.uid
    kubernetes_validate.validate(job, "1.33", strict=True)


def test_a_model_change_makes_a_new_job_and_leaves_the_ollama_deployment_as_it_was(owner: Owner) -> None:
    before, after = parse_spec(ollama_spec()), parse_spec(ollama_spec(preResponse={"model": "qwen2.5:3b"}))
    assert ollama_deployment(owner, before) == ollama_deployment(owner, after)
    old, new = ollama_pull_job(owner, before), ollama_pull_job(owner, after)
    assert old["metadata"]["name"] != new["metadata"]["name"]
    assert "qwen2.5:3b" in _env(new)["OLLAMA_PULL_MODELS"]
    # The same list gives the same Job (a resync creates nothing).
    assert ollama_pull_job(owner, parse_spec(ollama_spec())) == old


def test_an_image_change_restarts_ollama_and_makes_a_new_job(owner: Owner) -> None:
    """A Job's pod is immutable: anything it runs is in its name."""
    before, after = parse_spec(ollama_spec()), parse_spec(ollama_spec(ollama={**ollama_spec()["ollama"], "image": "ollama/ollama:0.12.0"}))
    assert ollama_deployment(owner, before) != ollama_deployment(owner, after)
    assert ollama_pull_job(owner, before)["metadata"]["name"] != ollama_pull_job(owner, after)["metadata"]["name"]


def test_the_job_name_fits_a_label_value_for_the_longest_voiceagent_name() -> None:
    spec = parse_spec(ollama_spec())
    longest = Owner(name="a" * 55 + "b", namespace="voice", uid="uid-1")
    other = Owner(name="a" * 55 + "c", namespace="voice", uid="uid-2")
    name = ollama_pull_job(longest, spec)["metadata"]["name"]
    assert len(name) <= 63
    assert name != ollama_pull_job(other, spec)["metadata"]["name"]  # same prefix, other agent


def _finished(job: dict[str, Any], kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
    done = copy.deepcopy(job)
    done["status"] = {"conditions": [{"type": kind, "status": "True", "reason": reason, "message": message}]}
    return done


def test_models_state_follows_the_job(owner: Owner) -> None:
    job = ollama_pull_job(owner, parse_spec(ollama_spec()))
    name = job["metadata"]["name"]
    assert models_state(None).reason == "PullPending"
    running = models_state(job)
    assert (running.pulled, running.reason) == (False, "PullingModels") and name in running.message
    done = models_state(_finished(job, "Complete"))
    assert done.pulled and "llama3.1:70b" in done.message
    failed = models_state(_finished(job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    assert (failed.pulled, failed.reason) == (False, "PullFailed")
    assert f"kubectl logs job/{name}" in failed.message and "spec.ollama.models" in failed.message


def test_models_state_reads_an_empty_model_list_as_the_apiserver_returns_it(owner: Owner) -> None:
    job = ollama_pull_job(owner, parse_spec(ollama_spec()))
    for container in job["spec"]["template"]["spec"]["containers"]:
        container["env"] = [{"name": e["name"]} if e["name"] == "OLLAMA_PULL_MODELS" else e for e in container["env"]]
    assert models_state(_finished(job, "Complete")).message.startswith("Ollama holds no models")


def test_outdated_jobs_are_all_but_the_current_one(owner: Owner) -> None:
    jobs = [{"metadata": {"name": n}} for n in ("support-pull-cccccccccc", "support-pull-aaaaaaaaaa", "support-pull-bbbbbbbbbb")]
    jobs.append({"metadata": {"name": "support-pull-dddddddddd", "deletionTimestamp": "2026-12-02T06:00:00Z"}})
    assert outdated_pull_jobs(jobs, "support-pull-bbbbbbbbbb") == ["support-pull-aaaaaaaaaa", "support-pull-cccccccccc"]
    assert outdated_pull_jobs(jobs, "") == ["support-pull-aaaaaaaaaa", "support-pull-bbbbbbbbbb", "support-pull-cccccccccc"]
    assert "app.kubernetes.io/component=ollama-pull" in pull_job_selector(owner)
    assert "app.kubernetes.io/instance=support" in pull_job_selector(owner)
