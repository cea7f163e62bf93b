"""bench/results/latency.json (written by `make bench-latency`) has the agreed shape and meets the
acceptance bar: every figure from the end of the caller's speech, filler and answer apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = json.loads((Path(__file__).parents[2] / "bench" / "results" / "latency.json").read_text())
PROFILES = RESULTS["profiles"]


def figures(profile: str, strategy: str) -> dict:
    return PROFILES[profile]["strategies"][strategy]


def test_results_state_the_machine_and_cover_the_agreed_profiles_and_strategies():
    assert RESULTS["machine"]["cores"] and RESULTS["turns_per_profile"] >= 20
    assert set(PROFILES) >= {"groq_like", "slow_main", "slow_tts", "mixed"}
    for profile in PROFILES.values():
        assert set(profile["strategies"]) == {"none", "always", "decided"}
        assert profile["sources"]


def test_slow_main_first_audio_is_at_most_040_of_no_preresponse_and_within_endpointing_plus_150_ms():
    ours, plain = figures("slow_main", "decided"), figures("slow_main", "none")
    assert ours["first_audio_ms"]["p50"] <= 0.4 * plain["first_audio_ms"]["p50"]
    endpointing = ours["commit_after_speech_end_ms"]["p50"]
    assert ours["first_audio_ms"]["p50"] <= endpointing + 150


@pytest.mark.parametrize("profile", ["groq_like", "slow_main", "slow_tts", "mixed"])
def test_the_answer_is_no_later_than_without_the_preresponse(profile):
    ours, plain = figures(profile, "decided"), figures(profile, "none")
    assert ours["answer_ms"]["p50"] <= plain["answer_ms"]["p50"] + 30
    assert ours["answer_ms"]["p95"] <= plain["answer_ms"]["p95"] + 80


def test_on_a_mixed_day_fillers_come_on_late_turns_and_not_on_quick_ones():
    judged = PROFILES["mixed"]["fillers_judged_by_the_plain_answer"]
    assert judged["late_turns"] and judged["early_turns"]
    assert judged["late_share_with_filler"] >= 0.95
    assert judged["early_share_with_filler"] <= 0.05


@pytest.mark.parametrize("profile", ["groq_like", "slow_main", "slow_tts", "mixed"])
def test_no_filler_is_cut_mid_word_and_none_repeats_on_consecutive_turns(profile):
    ours = figures(profile, "decided")
    assert ours["fillers_cut_mid_word"] == 0
    assert ours["identical_fillers_on_consecutive_turns"] == 0
