"""The VoiceAgent CRD, installed by helm on a real apiserver, admits every example and refuses bad
specs with the message of the schema constraint or CEL rule that caught them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from voiceagent_operator.crd import NAME_LENGTH_RULE
from kubernetes.client.exceptions import ApiException

from .harness.operator import REPO_ROOT, example
from .harness.voiceagents import Agents

pytestmark = pytest.mark.testbed

EXAMPLES = sorted(path.name for path in (REPO_ROOT / "manifests" / "examples").glob("*.yaml"))
GROQ = example("voiceagent.yaml")["spec"]


def changed(base: dict[str, Any] = GROQ, **paths: Any) -> dict[str, Any]:
    """`base` with nested keys set ("scaling__minReplicas" sets spec.scaling.minReplicas); DELETE removes one."""
    spec = copy.deepcopy(base)
    for path, value in paths.items():
        *parents, last = path.split("__")
        target = spec
        for part in parents:
            target = target.setdefault(part, {})
        if value is DELETE:
            target.pop(last, None)
        else:
            target[last] = value
    return spec


DELETE = object()

# (id, spec, the field the apiserver names, the message it gives)
BAD_SPECS = [
    ("no-image", changed(image=DELETE), "spec.image", "Required value"),
    ("image-not-a-string", changed(image=7), "spec.image", 'must be of type string'),
    ("no-livekit", changed(livekit=DELETE), "spec.livekit", "Required value"),
    ("no-livekit-secret", changed(livekit__credentialsSecret=DELETE), "spec.livekit.credentialsSecret", "Required value"),
    ("unknown-llm-provider", changed(llm__provider="anthropic"), "spec.llm.provider",
     'Unsupported value: "anthropic": supported values: "groq", "ollama", "openai"'),
    ("unknown-stt-provider", changed(stt__provider="whisper"), "spec.stt.provider",
     'Unsupported value: "whisper": supported values: "deepgram", "openai"'),
    ("unknown-tts-provider", changed(tts__provider="elevenlabs"), "spec.tts.provider", 'Unsupported value: "elevenlabs"'),
    ("unknown-pull-policy", changed(imagePullPolicy="Sometimes"), "spec.imagePullPolicy",
     'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"'),
    ("min-replicas-zero", changed(scaling__minReplicas=0), "spec.scaling.minReplicas", "should be greater than or equal to 1"),
    ("min-above-max", changed(scaling__minReplicas=5, scaling__maxReplicas=2), "spec.scaling",
     "scaling.minReplicas must not exceed scaling.maxReplicas"),
    ("target-rooms-zero", changed(scaling__targetActiveRoomsPerReplica=0), "spec.scaling.targetActiveRoomsPerReplica",
     "should be greater than or equal to 1"),
    ("scale-down-window-over-a-day", changed(scaling__scaleDownStabilizationSeconds=86401),
     "spec.scaling.scaleDownStabilizationSeconds", "should be less than or equal to 86400"),
    ("negative-scale-up-window", changed(scaling__scaleUpStabilizationSeconds=-1),
     "spec.scaling.scaleUpStabilizationSeconds", "should be greater than or equal to 0"),
    ("unknown-metrics-source", changed(scaling__metricsSource="hpa"), "spec.scaling.metricsSource",
     'Unsupported value: "hpa": supported values: "pods", "prometheus"'),
    ("prometheus-without-url", changed(scaling__metricsSource="prometheus"), "spec.scaling",
     "scaling.prometheusUrl is required when scaling.metricsSource is prometheus"),
    ("groq-without-key", changed(llm__credentialsSecret=DELETE), "spec.llm",
     "credentialsSecret is required for this provider (a Secret holding its API key)"),
    ("openai-llm-without-key-or-base-url", changed(llm={"provider": "openai"}), "spec.llm",
     "credentialsSecret is required for this provider (a Secret holding its API key)"),
    ("deepgram-without-key", changed(stt__credentialsSecret=DELETE), "spec.stt",
     "credentialsSecret is required for this provider (a Secret holding its API key)"),
    ("openai-tts-without-key", changed(tts__credentialsSecret=DELETE), "spec.tts",
     "credentialsSecret is required for this provider (a Secret holding its API key)"),
    ("ollama-without-backend", changed(llm={"provider": "ollama", "model": "llama3.1:8b"}), "spec",
     "llm.provider ollama needs ollama.enabled: true or llm.baseUrl"),
    ("fast-ollama-without-backend", changed(preResponse={"provider": "ollama", "model": "llama3.1:8b"}), "spec",
     "preResponse.provider ollama needs ollama.enabled: true or preResponse.baseUrl"),
    ("fast-provider-without-key", changed(preResponse={"provider": "openai", "model": "gpt-4o-mini"}), "spec",
     "preResponse.credentialsSecret is required when preResponse.provider differs from llm.provider"),
    ("pre-response-zero-words", changed(preResponse__maxWords=0), "spec.preResponse.maxWords",
     "should be greater than or equal to 1"),
    ("pre-response-too-many-words", changed(preResponse__maxWords=31), "spec.preResponse.maxWords",
     "should be less than or equal to 30"),
    ("too-many-gpus", changed(ollama={"gpu": {"count": 17}}), "spec.ollama.gpu.count", "should be less than or equal to 16"),
    ("unknown-retention-policy", changed(ollama={"storage": {"retentionPolicy": "Forever"}}),
     "spec.ollama.storage.retentionPolicy", 'Unsupported value: "Forever": supported values: "Retain", "Delete"'),
    ("metrics-port-out-of-range", changed(metricsPort=70000), "spec.metricsPort", "should be less than or equal to 65535"),
    ("grace-period-without-room-to-drain", changed(terminationGracePeriodSeconds=15), "spec.terminationGracePeriodSeconds",
     "should be greater than or equal to 16"),
    ("negative-replicas", changed(replicas=-1), "spec.replicas", "should be greater than or equal to 0"),
    ("bad-scrape-interval", changed(monitoring={"serviceMonitor": {"interval": "often"}}),
     "spec.monitoring.serviceMonitor.interval", "should match '^[0-9]+(ms|s|m|h)$'"),
    ("price-not-a-number", changed(pricing={"groq/llama": {"outputPerMillionTokens": "cheap"}}),
     "spec.pricing.groq/llama.outputPerMillionTokens", "must be of type number"),
    ("endpointing-max-below-min", changed(turnHandling={"endpointingMinDelay": 2.0, "endpointingMaxDelay": 1.0}),
     "spec.turnHandling", "endpointingMaxDelay must be at least endpointingMinDelay"),
]


@pytest.fixture(scope="module")
def admission(control_plane, operator_chart):
    """Dry-run requests only, in the chart's namespace: nothing is stored."""
    with control_plane.api_client() as api:
        yield Agents(api, operator_chart.namespace)


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_crd_admits_every_example(admission, name):
    document = example(name)

    admitted = admission.create(document["metadata"]["name"], document["spec"], dry_run=True)

    assert admitted["metadata"]["name"] == document["metadata"]["name"]
    assert admitted["spec"]["image"] == document["spec"]["image"]
    assert admitted["spec"]["scaling"]["metricsSource"] == "pods"  # a default filled in by the schema


@pytest.mark.parametrize(("spec", "field", "message"), [case[1:] for case in BAD_SPECS],
                         ids=[case[0] for case in BAD_SPECS])
def test_the_crd_refuses_a_bad_spec_naming_the_field_and_the_rule(admission, spec, field, message):
    with pytest.raises(ApiException) as refused:
        admission.create("bad", spec, dry_run=True)

    assert refused.value.status == 422
    causes = json.loads(refused.value.body)["details"]["causes"]
    assert any(cause["field"] == field and message in cause["message"] for cause in causes), causes


def test_the_crd_refuses_an_unknown_field_under_strict_field_validation(admission):
    with pytest.raises(ApiException) as refused:
        admission.create("bad", changed(replica=3), dry_run=True)

    assert refused.value.status == 400
    assert 'strict decoding error: unknown field "spec.replica"' in json.loads(refused.value.body)["message"]


def test_the_bad_spec_table_covers_every_cel_rule():
    """Each CEL rule of the CRD's schema appears in the table by its message."""
    crd = yaml.safe_load_all((REPO_ROOT / "charts" / "agent-worker" / "crds" / "crds.yaml").read_text())
    rule_messages = set(cel_messages(next(iter(crd))))

    assert len(BAD_SPECS) >= 20
    name_rule = NAME_LENGTH_RULE["message"]  # on metadata, not the spec: test_operator_changes.py refuses a long name
    assert name_rule in rule_messages
    assert rule_messages - {name_rule} <= {message for *_, message in BAD_SPECS}


def cel_messages(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [rule["message"] for rule in node.get("x-kubernetes-validations", [])]
        return found + [m for value in node.values() for m in cel_messages(value)]
    if isinstance(node, list):
        return [m for value in node for m in cel_messages(value)]
    return []
