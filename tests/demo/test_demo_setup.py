"""The demo's waterfall, its Prometheus wiring and its VoiceAgent."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.cluster import Windows, demo_prices, voiceagent
from demo.monitoring import RELABEL, config, target_groups
from demo.plot import Bar, render, waterfall
from demo.turns import Stages, Turn
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


def test_prometheus_labels_the_worker_as_a_service_monitor_would():
    groups = target_groups("voice", {"local-worker-abc": "127.0.0.1:9100"})

    assert groups == [{"targets": ["127.0.0.1:9100"], "labels": {
        "__meta_kubernetes_namespace": "voice", "__meta_kubernetes_pod_name": "local-worker-abc"}}]
    assert {r["target_label"] for r in RELABEL} == {"namespace", "pod"}  # what the operator's query reads
    assert config(Path("/t.json"))["scrape_configs"][0]["relabel_configs"] == RELABEL


def test_prometheus_targets_must_be_on_loopback():
    with pytest.raises(ValueError, match="not on loopback"):
        target_groups("voice", {"p": "10.0.0.1:9100"})


def test_the_demo_voiceagent_is_the_local_example_pointed_at_this_run_autoscaled_from_prometheus():
    body = voiceagent(LiveKit("ws://127.0.0.1:7", "http://127.0.0.1:7", "k", "s", None),
                      ModelServer("http://127.0.0.1:8/v1", "gemma3-270m", None), ("gemma3-270m-demo-answer", "gemma3-270m-demo-filler"),
                      SpeechServer("http://127.0.0.1:9/v1", None), "http://127.0.0.1:10", Windows(),
                      main_base_url="http://127.0.0.1:11/v1")

    spec = parse_spec(body["spec"])
    assert spec.livekit.url == "ws://127.0.0.1:7"
    assert spec.llm.base_url == "http://127.0.0.1:11/v1" and spec.pre_response.base_url == "http://127.0.0.1:8/v1"
    assert spec.stt.base_url == spec.tts.base_url == "http://127.0.0.1:9/v1"
    assert spec.scaling.metrics_source == "prometheus" and spec.scaling.prometheus_url == "http://127.0.0.1:10"
    assert spec.scaling.scale_down_stabilization_seconds == Windows().scale_down_seconds
    assert (spec.llm.model, spec.pre_response.model) == ("gemma3-270m-demo-answer", "gemma3-270m-demo-filler")
    assert set(spec.pricing) == set(demo_prices("gemma3-270m-demo-answer", "gemma3-270m-demo-filler"))
    assert spec.pricing["ollama/gemma3-270m-demo-answer"].output_per_million_tokens > 0
