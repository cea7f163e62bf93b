"""The spec model: defaults, types and the cross-field rules, each error naming its field."""

from __future__ import annotations

import pytest
from va_examples import groq_spec, ollama_spec

from voiceagent_operator.spec import SpecError, parse_spec



def test_a_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(groq_spec())
    assert spec.termination_grace_period_seconds == 600
    assert spec.metrics_port == 9100
    assert spec.scaling.scale_down_stabilization_seconds == 300
    assert spec.scaling.metrics_source == "pods"
    assert spec.monitoring.service_monitor.enabled is True
    assert spec.ollama.enabled is False
    assert spec.ollama.storage.retention_policy == "Retain"


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (groq_spec(scaling={"minReplicas": 5, "maxReplicas": 2}), "spec.scaling", "minReplicas"),
        (groq_spec(scaling={"metricsSource": "prometheus"}), "spec.scaling", "prometheusUrl"),
        (groq_spec(llm={"provider": "ollama"}), "spec", "ollama.enabled"),
        (groq_spec(llm={"provider": "groq"}), "spec.llm", "credentialsSecret"),
        (groq_spec(stt={"provider": "deepgram"}), "spec.stt", "credentialsSecret"),
        (groq_spec(tts={"provider": "openai"}), "spec.tts", "credentialsSecret"),
        (groq_spec(preResponse={"provider": "openai"}), "spec", "preResponse.credentialsSecret"),
        (groq_spec(preResponse={"provider": "ollama"}), "spec", "preResponse.provider ollama"),
        (groq_spec(llm={"provider": "anthropic", "credentialsSecret": "x"}), "spec.llm.provider", "groq"),
        (groq_spec(scaling={"minReplicas": 0}), "spec.scaling.minReplicas", "greater than or equal to 1"),
        (groq_spec(pricing={"groq": {"inputPerMillionTokens": 1}}), "spec.pricing.groq", "provider/model"),
        (groq_spec(pricing={"groq/x": {"inputPerMillionTokens": -1}}), "spec.pricing.groq/x.inputPerMillionTokens", "0"),
        (groq_spec(pricing={"groq/x": {"perToken": 1}}), "spec.pricing.groq/x.perToken", "not permitted"),
    ],
)
def test_an_invalid_spec_is_reported_with_the_field_that_is_wrong(raw: dict, field: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_missing_required_fields_are_named() -> None:
    raw = groq_spec()
    del raw["livekit"]["credentialsSecret"]
    with pytest.raises(SpecError, match=r"spec\.livekit\.credentialsSecret"):
        parse_spec(raw)


@pytest.mark.parametrize(
    "raw",
    [
        ollama_spec(),
        groq_spec(llm={"provider": "ollama", "baseUrl": "http://127.0.0.1:11434/v1"}, preResponse={"provider": "ollama"}),
        groq_spec(stt={"provider": "openai", "baseUrl": "http://127.0.0.1:8000/v1"}),
        groq_spec(preResponse={"enabled": False, "provider": "openai"}),
        groq_spec(scaling={"metricsSource": "prometheus", "prometheusUrl": "http://127.0.0.1:9090"}),
    ],
)
def test_specs_that_satisfy_every_rule_parse(raw: dict) -> None:
    parse_spec(raw)
