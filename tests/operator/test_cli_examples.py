"""The command line, the example VoiceAgents and the operator image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from tools import ROOT

from agent_worker.config import env_name
from voiceagent_operator.builders import desired_children
from voiceagent_operator.builders.worker_config import config_data, secret_env
from voiceagent_operator.cli import main, run_arguments
from voiceagent_operator.crd import crd_manifest, kopf_peering_crds, render
from voiceagent_operator.naming import Owner
from voiceagent_operator.spec import CROSS_FIELD_RULES, VoiceAgentSpec, parse_spec

EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


def test_run_defaults_to_all_namespaces_a_liveness_endpoint_and_mandatory_peering() -> None:
    assert run_arguments([]) == [
        "run", "-m", "voiceagent_operator.handlers", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz",
        "--peering=voiceagent-operator",
    ]
    assert [a for a in run_arguments(["--peering=release-b"]) if "peering" in a] == ["--peering=release-b"]
    assert [a for a in run_arguments(["-P", "release-b"]) if "peering" in a] == []  # kopf reads `-P NAME` itself
    assert not [a for a in run_arguments(["--standalone"]) if "peering" in a]
    scoped = run_arguments(["--namespace=voice", "--liveness=http://127.0.0.1:9999/healthz", "--standalone"])
    assert "--all-namespaces" not in scoped and scoped.count("--namespace=voice") == 1
    assert [a for a in scoped if a.startswith("--liveness")] == ["--liveness=http://127.0.0.1:9999/healthz"]


def test_crds_command_prints_the_generated_crds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    assert capsys.readouterr().out == render([crd_manifest(), *kopf_peering_crds()])


def test_an_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "run" in capsys.readouterr().err


def test_the_examples_are_the_three_documented_setups() -> None:
    assert [path.name for path in EXAMPLES] == ["voiceagent-local.yaml", "voiceagent-ollama.yaml", "voiceagent.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_passes_the_schema_rules_and_builds_its_children(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert (document["apiVersion"], document["kind"]) == ("agentworker.io/v1alpha1", "VoiceAgent")
    spec = parse_spec(document["spec"])
    defaulted: dict[str, Any] = VoiceAgentSpec.model_validate(document["spec"]).model_dump(by_alias=True, exclude_none=True)
    cel = celpy.Environment()
    for rule_path, rules in CROSS_FIELD_RULES.items():
        target = defaulted
        for part in rule_path.split(".")[1:]:
            target = target[part]
        for rule in rules:
            assert cel.program(cel.compile(rule.cel)).evaluate({"self": celpy.json_to_cel(target)}), (path.name, rule.cel)
    owner = Owner(document["metadata"]["name"], "voice", "uid")
    assert desired_children(owner, spec, 1, monitoring_api=True).present


def test_the_local_example_reaches_loopback_servers_without_provider_keys() -> None:
    document = yaml.safe_load((ROOT / "manifests" / "examples" / "voiceagent-local.yaml").read_text())
    owner, spec = Owner("local", "voice", "uid"), parse_spec(document["spec"])
    data = config_data(owner, spec)
    for variable in ("llm_base_url", "fast_llm_base_url", "stt_base_url", "tts_base_url"):
        assert data[env_name(variable)].startswith("http://127.0.0.1:"), variable
    assert [item["name"] for item in secret_env(owner, spec)] == ["LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"]


def test_the_ollama_example_asks_for_gpus_and_a_retained_model_volume() -> None:
    spec = parse_spec(yaml.safe_load((ROOT / "manifests" / "examples" / "voiceagent-ollama.yaml").read_text())["spec"])
    assert spec.ollama.enabled and spec.ollama.gpu.count >= 1
    assert spec.ollama.storage.retention_policy == "Retain"


def test_the_operator_image_runs_as_a_numeric_non_root_user() -> None:
    dockerfile = (ROOT / "operator" / "Dockerfile").read_text()
    assert "USER ${UID}:${UID}" in dockerfile and "ARG UID=10001" in dockerfile
    assert 'ENTRYPOINT ["voiceagent-operator"]' in dockerfile
