"""The managed Ollama's models: which ones, and the Job that pulls them through Ollama's own HTTP API.

The models are not part of the Ollama pod: a change of model list must not restart the one Ollama
replica (every call would lose its LLM for the pull). Instead each model list gets a Job, named after
a digest of everything its pod runs, whose `ollama pull` (the Ollama CLI as an HTTP client: it calls
`POST /api/pull` on the Ollama Service) makes the serving Ollama download into its own volume while it
goes on answering with the models it has. A Job rather than the operator itself: a pull of tens of GB
takes minutes to hours, which belongs in a retried, observable pod (`kubectl logs job/...`) and not in
a reconciliation; the Job is immutable, so a new list is a new Job, and the finished Job of the current
list is the record that its models were pulled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from agent_worker.config import DEFAULT_MODELS

from ..naming import (
    OLLAMA_PORT,
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    Owner,
    labels,
    metadata,
    present,
)
from ..spec import VoiceAgentSpec
from .worker_config import fast_llm, main_llm

PULL = "ollama-pull"
# Any non-root id: the pod only runs the Ollama CLI, which writes nothing but to $HOME (an emptyDir).
PULL_POD_SECURITY = {**RESTRICTED_POD_SECURITY, "runAsUser": 65532, "runAsGroup": 65532}
# Kubernetes checks Job names as label values (at most 63 characters): a prefix of the VoiceAgent's
# name, then a digest of the name and the pod, so two agents never share a Job.
JOB_NAME_PREFIX_LENGTH = 63 - len("-pull-") - 10
WAIT_FOR_OLLAMA_SECONDS = 600

# Waits for the Service to answer (the Ollama pod may still be starting), then pulls each model in
# turn; a failed pull fails the pod, and the Job retries with its back-off.
PULL_SCRIPT = f"""set -eu
waited=0
until ollama list >/dev/null 2>&1; do
  if [ "$waited" -ge {WAIT_FOR_OLLAMA_SECONDS} ]; then
    echo "Ollama at $OLLAMA_HOST did not answer for {WAIT_FOR_OLLAMA_SECONDS} s" >&2
    exit 1
  fi
  sleep 2
  waited=$((waited + 2))
done
for model in $OLLAMA_PULL_MODELS; do
  echo "pulling $model"
  ollama pull "$model"
done
echo "pulled: $OLLAMA_PULL_MODELS"
"""


def pulled_models(owner: Owner, spec: VoiceAgentSpec) -> list[str]:
    """ollama.models plus whatever model the main and fast LLM ask the managed Ollama for."""
    models = list(spec.ollama.models)
    roles = [(main_llm(owner, spec), "main")]
    if spec.pre_response.enabled:
        roles.append((fast_llm(owner, spec), "fast"))
    for wiring, role in roles:
        if wiring.provider == "ollama" and wiring.base_url == owner.ollama_url():
            models.append(wiring.model or DEFAULT_MODELS[("ollama", role)])
    return list(dict.fromkeys(models))


def _pod_spec(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    models = pulled_models(owner, spec)
    pull = {
        "name": "pull",
        "image": spec.ollama.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["/bin/sh", "-c", PULL_SCRIPT],
        "env": [
            {"name": "OLLAMA_HOST", "value": f"http://{owner.ollama}.{owner.namespace}.svc:{OLLAMA_PORT}"},
            {"name": "OLLAMA_PULL_MODELS", "value": " ".join(models)},
            {"name": "HOME", "value": "/home/ollama"},
        ],
        # A client streaming progress: no GPU, little memory.
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        "volumeMounts": [{"name": "home", "mountPath": "/home/ollama"}],
    }
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": PULL_POD_SECURITY,
        "containers": [pull],
        "volumes": [{"name": "home", "emptyDir": {}}],
        **present(imagePullSecrets=spec.image_pull_secrets),
    }


def pull_job_name(owner: Owner, pod_spec: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps([owner.name, pod_spec], sort_keys=True).encode()).hexdigest()[:10]
    return f"{owner.name[:JOB_NAME_PREFIX_LENGTH].rstrip('-.')}-pull-{digest}"


def ollama_pull_job(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    """The Job pulling this model list into the managed Ollama (its name changes with the list)."""
    pod_spec = _pod_spec(owner, spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, pull_job_name(owner, pod_spec), PULL),
        "spec": {
            "backoffLimit": 6,  # about 6 minutes of exponential back-off (10 s doubling, capped at 6 min)
            "template": {"metadata": {"labels": labels(owner, PULL)}, "spec": pod_spec},
        },
    }


def pull_job_labels(owner: Owner) -> dict[str, str]:
    """The labels of every pull Job of this VoiceAgent, current or outdated (to delete the outdated ones)."""
    return labels(owner, PULL)


def pull_job_selector(owner: Owner) -> str:
    return ",".join(f"{key}={value}" for key, value in pull_job_labels(owner).items())


def pull_job_ref(owner: Owner, name: str) -> dict[str, Any]:
    """Enough of a pull Job to delete it by name (`children.remove_child`)."""
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": owner.namespace, "name": name}}


@dataclass(frozen=True)
class ModelsState:
    """Whether the current model list is in the managed Ollama, and why not; a Condition's parts."""

    pulled: bool
    reason: str
    message: str


def models_state(job: dict[str, Any] | None) -> ModelsState:
    """From the live pull Job of the current model list (None: not created yet)."""
    if job is None:
        return ModelsState(False, "PullPending", "the model pull Job is not created yet")
    name = job["metadata"]["name"]
    models = next((e.get("value", "") for c in job["spec"]["template"]["spec"]["containers"]
                   for e in c.get("env") or [] if e["name"] == "OLLAMA_PULL_MODELS"), "")
    models = models or "no models"  # the apiserver drops an empty value
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions:
        return ModelsState(True, "ModelsPulled", f"Ollama holds {models} (Job {name})")
    if "Failed" in conditions:
        failed = conditions["Failed"]
        return ModelsState(False, "PullFailed", (
            f"Job {name} could not pull {models}: {failed.get('reason', '')} {failed.get('message', '')}".rstrip()
            + f"; see `kubectl logs job/{name}`, then fix spec.ollama.models or the llm models"
        ))
    return ModelsState(False, "PullingModels", f"Job {name} is pulling {models}; Ollama serves the models it has meanwhile")


def outdated_pull_jobs(jobs: list[dict[str, Any]], current: str) -> list[str]:
    """Names of this VoiceAgent's pull Jobs for earlier model lists (not those already being deleted)."""
    return sorted(
        job["metadata"]["name"] for job in jobs
        if job["metadata"]["name"] != current and not job["metadata"].get("deletionTimestamp")
    )
