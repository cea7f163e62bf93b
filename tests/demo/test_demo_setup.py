"""The demo's waterfall, its Prometheus configuration and its VoiceAgent."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.cluster import Windows, demo_prices, voiceagent
from demo.monitoring import RULES, config
from demo.plot import Bar, render, waterfall
from demo.turns import Stages, Turn
from tests.integration.harness.control_plane import ControlPlane, write_kubeconfig
from tests.integration.harness.node import placement
from tests.integration.harness.services import LiveKit, ModelServer, SpeechServer
from voiceagent_operator.spec import parse_spec

TURN = Turn("q", 0.9, 1.7, "Okay.", "Yes.", Stages(eou=0.5, stt=0.4, llm_main=0.3, llm_fast=0.1, tts=0.2, tokens=9, cost=1e-6))


def test_the_waterfall_places_each_stage_after_the_caller_stopped_speaking():
    bars = waterfall(TURN)

    assert [b.label for b in bars] == ["end of utterance", "speech-to-text", "fast LLM first token",
                                       "main LLM first token", "TTS first audio", "filler heard", "answer heard"]
    by_label = {b.label: b for b in bars}
    assert by_label["main LLM first token"] == Bar("main LLM first token", 0.4, pytest.approx(0.7), False)
    assert by_label["TTS first audio"].start == pytest.approx(0.7) and by_label["TTS first audio"].end == pytest.approx(0.9)
    assert by_label["answer heard"] == Bar("answer heard", 0.0, 1.7, True)


def test_stages_the_worker_did_not_measure_are_left_out_of_the_waterfall():
    bare = Turn("q", None, 1.0, "", "Yes.", Stages(None, None, None, None, None, 0, 0.0))

    assert [b.label for b in waterfall(bare)] == ["answer heard"]


def test_the_waterfall_is_written_as_a_png(tmp_path: Path):
    path = render([TURN, TURN], tmp_path / "turns.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _plane(tmp_path: Path) -> ControlPlane:
    ca, cert, key = (tmp_path / name for name in ("ca.crt", "admin.crt", "admin.key"))
    kubeconfig = write_kubeconfig(tmp_path / "admin.kubeconfig", "https://127.0.0.1:6443", ca, cert=cert, key=key)
    return ControlPlane(tmp_path, "https://127.0.0.1:6443", ca, kubeconfig, etcd_url="")


def test_prometheus_finds_the_worker_and_operator_pods_through_the_apiserver_and_loads_the_charts_rules(
        tmp_path: Path):
    settings = config(_plane(tmp_path), "voice", "agent-worker")

    workers, operator = settings["scrape_configs"]
    assert (workers["job_name"], operator["job_name"]) == ("agent-worker", "voiceagent-operator")
    for job, namespace in ((workers, "voice"), (operator, "agent-worker")):
        (discovery,) = job["kubernetes_sd_configs"]
        assert discovery["role"] == "pod" and discovery["api_server"] == "https://127.0.0.1:6443"
        assert discovery["namespaces"] == {"names": [namespace]}
        # What the operator's query reads: sum by (pod) (...{namespace="voice"}).
        assert {r.get("target_label") for r in job["relabel_configs"]} >= {"namespace", "pod"}
    assert settings["rule_files"] == [str(RULES)] and RULES.exists()


def test_prometheus_scrapes_the_chart_operator_pod_at_its_metrics_port_only(tmp_path: Path):
    _, operator = config(_plane(tmp_path), "voice", "agent-worker")["scrape_configs"]

    keep = {r["source_labels"][0]: r["regex"] for r in operator["relabel_configs"] if r.get("action") == "keep"}
    assert keep["__meta_kubernetes_pod_label_app_kubernetes_io_component"] == "operator"
    assert keep["__meta_kubernetes_pod_container_port_name"] == "metrics"


def test_the_demo_voiceagent_is_the_local_example_on_the_real_node_pointed_at_this_run_autoscaled_from_prometheus():
    livekit = LiveKit("ws://127.0.0.1:7", "http://127.0.0.1:7", "k", "s", None)
    model = ModelServer("http://127.0.0.1:8/v1", "gemma3-270m", None)
    body = voiceagent(livekit, model, ("gemma3-270m-demo-answer", "gemma3-270m-demo-filler"),
                      SpeechServer("http://127.0.0.1:9/v1", None), "http://10.88.0.1:10", Windows(),
                      main_base_url="http://10.88.0.1:11/v1")

    spec = parse_spec(body["spec"])
    assert body["metadata"]["name"] == "local" and spec.image == "ghcr.io/agent-worker/agent-worker:0.1.0"
    # Pods reach the servers at the node address, and run only on the real node.
    assert spec.livekit.url == "ws://10.88.0.1:7"
    assert spec.llm.base_url == "http://10.88.0.1:11/v1" and spec.pre_response.base_url == "http://10.88.0.1:8/v1"
    assert spec.stt.base_url == spec.tts.base_url == "http://10.88.0.1:9/v1"
    assert body["spec"]["nodeSelector"] == placement()["nodeSelector"]
    assert body["spec"]["tolerations"] == placement()["tolerations"]
    assert spec.scaling.metrics_source == "prometheus" and spec.scaling.prometheus_url == "http://10.88.0.1:10"
    assert (spec.scaling.target_active_rooms_per_replica, spec.scaling.max_replicas) == (1, 2)
    assert spec.scaling.scale_down_stabilization_seconds == Windows().scale_down_seconds
    assert (spec.llm.model, spec.pre_response.model) == ("gemma3-270m-demo-answer", "gemma3-270m-demo-filler")
    assert set(spec.pricing) == set(demo_prices("gemma3-270m-demo-answer", "gemma3-270m-demo-filler"))
    assert spec.pricing["ollama/gemma3-270m-demo-answer"].output_per_million_tokens > 0
    # livekit's CPU-based load would see the whole machine: the pod's load is its sessions.
    assert {"name": "AGENT_MAX_SESSIONS", "value": "4"} in body["spec"]["env"]
