"""The generated CRD: a structural schema with defaults, enums, CEL rules that agree with the operator."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import celpy
import kubernetes_validate
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceagent_operator.crd import crd_manifest, kopf_peering_crds, render
from voiceagent_operator.spec import CROSS_FIELD_RULES, VoiceAgentSpec

ROOT = Path(__file__).resolve().parents[2]
CHART_CRDS = ROOT / "charts/agent-worker/crds/crds.yaml"


def _version() -> dict[str, Any]:
    return crd_manifest()["spec"]["versions"][0]


def _schemas(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _schemas(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _schemas(schema[key], f"{path}[]")


def test_the_schema_is_structural() -> None:
    for path, schema in _schemas(_version()["schema"]["openAPIV3Schema"]):
        assert not {"anyOf", "$ref", "$defs", "title", "const"} & schema.keys(), path
        assert "type" in schema, f"{path} has no type"
        if schema["type"] == "object" and path != ".metadata":  # the apiserver owns metadata's schema
            assert {"properties", "additionalProperties", "x-kubernetes-preserve-unknown-fields"} & schema.keys(), path


def test_the_schema_carries_defaults_and_enums() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["terminationGracePeriodSeconds"]["default"] == 600
    assert spec["llm"]["properties"]["provider"]["enum"] == ["groq", "ollama", "openai"]
    assert spec["scaling"]["default"]["scaleDownStabilizationSeconds"] == 300
    assert spec["scaling"]["properties"]["metricsSource"]["enum"] == ["pods", "prometheus"]
    assert spec["tts"]["properties"]["provider"]["enum"] == ["openai"]
    assert spec["pricing"]["additionalProperties"]["properties"]["inputPerMillionTokens"]["minimum"] == 0


def test_every_cross_field_rule_is_in_the_schema_where_it_applies() -> None:
    root = _version()["schema"]["openAPIV3Schema"]
    for path, rules in CROSS_FIELD_RULES.items():
        node = root
        for part in path.split("."):
            node = node["properties"][part]
        assert [v["rule"] for v in node["x-kubernetes-validations"]] == [r.cel for r in rules]


def test_scale_and_status_subresources_and_printer_columns() -> None:
    version = _version()
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert version["subresources"]["status"] == {}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Ready", "Replicas", "Desired", "Rooms", "Age"]
    assert crd_manifest()["spec"]["names"]["shortNames"] == ["va"]


def test_the_crds_validate_against_the_kubernetes_schema() -> None:
    for crd in [crd_manifest(), *kopf_peering_crds()]:
        kubernetes_validate.validate(crd, "1.33", strict=True)


def test_the_chart_copy_of_the_crds_is_generated_from_the_code() -> None:
    expected = render([crd_manifest(), *kopf_peering_crds()])
    assert CHART_CRDS.read_text() == expected, "charts/agent-worker/crds is stale: run `make generate`"


# --- CEL and Python agree -------------------------------------------------------------------

_secret = st.one_of(st.none(), st.just("key"))
_url = st.one_of(st.none(), st.just("http://127.0.0.1:8000/v1"))


@st.composite
def raw_specs(draw: st.DrawFn) -> dict[str, Any]:
    def part(provider: st.SearchStrategy[str], **extra: Any) -> dict[str, Any]:
        values = {"provider": draw(provider), "credentialsSecret": draw(_secret), "baseUrl": draw(_url), **extra}
        return {k: v for k, v in values.items() if v is not None}

    llms = st.sampled_from(["groq", "ollama", "openai"])
    pre = part(st.one_of(st.none(), llms), enabled=draw(st.booleans()))
    low, high = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    scaling = {"minReplicas": low, "maxReplicas": high, "metricsSource": draw(st.sampled_from(["pods", "prometheus"]))}
    if draw(st.booleans()):
        scaling["prometheusUrl"] = "http://127.0.0.1:9090"
    return {
        "image": "x",
        "livekit": {"url": "ws://127.0.0.1:7880", "credentialsSecret": "lk"},
        "llm": part(llms),
        "preResponse": pre,
        "stt": part(st.sampled_from(["deepgram", "openai"])),
        "tts": part(st.just("openai")),
        "ollama": {"enabled": draw(st.booleans())},
        "scaling": scaling,
    }


_CEL = celpy.Environment()


@settings(max_examples=150, deadline=None)
@given(raw_specs())
def test_each_cel_rule_accepts_exactly_what_the_operator_accepts(raw: dict[str, Any]) -> None:
    model = VoiceAgentSpec.model_validate(raw)
    defaulted = model.model_dump(by_alias=True, exclude_none=True)  # the apiserver defaults before validating
    for path, rules in CROSS_FIELD_RULES.items():
        target_model: Any = model
        target_json: Any = defaulted
        for part in path.split(".")[1:]:
            target_model = getattr(target_model, {"preResponse": "pre_response"}.get(part, part))
            target_json = target_json[part]
        for rule in rules:
            program = _CEL.program(_CEL.compile(rule.cel))
            by_cel = bool(program.evaluate({"self": celpy.json_to_cel(target_json)}))
            assert by_cel == rule.check(target_model), (path, rule.cel, target_json)


def test_the_rendered_crd_file_is_plain_yaml() -> None:
    documents = list(yaml.safe_load_all(render([crd_manifest()])))
    assert documents == [crd_manifest()]
