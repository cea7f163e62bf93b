"""bench/results/latency.json (written by `make bench-latency`) has the agreed shape and meets the acceptance bar."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = json.loads((Path(__file__).parents[2] / "bench" / "results" / "latency.json").read_text())
STRATEGIES = RESULTS["strategies"]


def test_results_have_the_agreed_shape():
    assert isinstance(RESULTS["machine"], str) and RESULTS["turns"] > 0
    assert set(STRATEGIES) == {"baseline", "seed", "preresponse"}
    for figures in STRATEGIES.values():
        assert set(figures) == {"first_audio_ms", "answer_audio_ms"}
        assert all(set(figures[key]) == {"p50", "p95"} for key in figures)
    assert set(RESULTS["overhead_ms"]) == {"p50", "p95"}


def test_preresponse_halves_the_time_to_first_audio_at_least():
    assert STRATEGIES["preresponse"]["first_audio_ms"]["p50"] <= 0.5 * STRATEGIES["baseline"]["first_audio_ms"]["p50"]


def test_preresponse_does_not_delay_the_answer_by_more_than_20_ms():
    assert STRATEGIES["preresponse"]["answer_audio_ms"]["p50"] <= STRATEGIES["baseline"]["answer_audio_ms"]["p50"] + 20


def test_our_overhead_p95_is_at_most_15_ms():
    assert RESULTS["overhead_ms"]["p95"] <= 15


def test_the_seed_strategy_answers_measurably_later_than_ours():
    assert STRATEGIES["seed"]["answer_audio_ms"]["p50"] >= STRATEGIES["preresponse"]["answer_audio_ms"]["p50"] + 100


def test_every_profile_cites_its_sources():
    for profile in RESULTS["profiles"].values():
        assert profile["sources"] and all(isinstance(source, str) and source for source in profile["sources"])
