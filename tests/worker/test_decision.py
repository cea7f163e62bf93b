"""decide(): a filler only once the answer is late for sure (or the session is consistently slow),
at most one per turn, varied, and only a phrase that ends before the answer is due. No room, no I/O."""

from __future__ import annotations

import random

import pytest

from agent_worker.decision import Candidate, Estimate, History, LatencyEstimator, Options, Turn, decide

STOCK = [Candidate(text, "stock", 0.0, 0.4) for text in ("Okay.", "Sure.", "One moment.")]
QUESTION = "what is the weather in Paris"
OPTIONS = Options(playout_delay=0.0)  # times at the worker are then times at the ear


def turn(*, now: float = 0.5, started: float | None = 0.1, first_token: float | None = None, ready: bool = False, text: str = QUESTION) -> Turn:
    return Turn(text, now=now, speech_ended_at=0.0, llm_started_at=started, llm_first_token_at=first_token, answer_audio_ready=ready)


SLOW = Estimate(llm_ttft=1.8, tts_ttfb=0.3, llm_ttft_quickest=1.4, tts_ttfb_quickest=0.25)


def test_a_consistently_slow_session_gets_a_filler_at_once():
    decision = decide(turn(), SLOW, History(), STOCK, OPTIONS)
    assert (decision.speak, decision.reason, decision.phrase.text) == (True, "answer_late", "Okay.")
    # the phrase must end before even the quickest recent answer: 0.1 + 1.4 + 0.25
    assert decision.answer_expected_after == pytest.approx(1.75)


def test_a_high_estimate_alone_waits_for_the_deadline_then_speaks_if_the_first_token_is_still_missing():
    mixed = Estimate(1.8, 0.3, llm_ttft_quickest=0.15, tts_ttfb_quickest=0.25)
    waiting = decide(turn(now=0.3), mixed, History(), STOCK, OPTIONS)
    # late_after 1.2 minus the TTS's usual 0.3 s: a first token after 0.9 cannot be heard before 1.2
    assert (waiting.speak, waiting.reason, waiting.recheck_at) == (False, "answer_soon", pytest.approx(0.9))
    late = decide(turn(now=0.9), mixed, History(), STOCK, OPTIONS)
    assert late.speak and late.answer_expected_after >= OPTIONS.late_after
    assert decide(turn(now=0.9), Estimate(1.8, 0.3), History(), STOCK, OPTIONS).speak  # no history: the same deadline


def test_past_the_deadline_the_phrase_ends_before_the_quickest_slow_answer_of_the_session():
    # slow answers of this session took 1.3 and 1.8 s to the first token: the next may come at 0.1 + 1.3 + 0.25
    mixed = Estimate(1.8, 0.3, llm_ttft_quickest=0.15, tts_ttfb_quickest=0.25, llm_ttft_samples=(0.15, 0.2, 1.3, 1.8))
    long_and_short = [Candidate("One moment.", "stock", 0.0, 0.66), Candidate("Okay.", "stock", 0.0, 0.3)]
    decision = decide(turn(now=0.9), mixed, History(), long_and_short, OPTIONS)
    assert decision.speak and decision.phrase.text == "Okay."
    assert decision.answer_expected_after == pytest.approx(1.65)

def test_lateness_is_judged_at_the_callers_ear_a_playout_delay_after_the_worker_sends():
    mixed = Estimate(1.8, 0.3, llm_ttft_quickest=0.15, tts_ttfb_quickest=0.25)
    over_webrtc = Options(playout_delay=0.15)
    # heard 0.15 s after it is sent: a first token missing at 1.2 - 0.15 - 0.3 cannot be heard before 1.2
    assert decide(turn(now=0.3), mixed, History(), STOCK, over_webrtc).recheck_at == pytest.approx(0.75)
    late = decide(turn(now=0.75), mixed, History(), STOCK, over_webrtc)
    # the answer is expected at the usual first token (0.1 + 1.8) plus the TTS's 0.3, heard 0.15 later
    assert late.speak and late.answer_expected_after == pytest.approx(2.35)
    assert not decide(turn(now=0.75), mixed, History(), STOCK, OPTIONS).speak
    # a first token at 0.8 is sent at 1.1 and heard at 1.25: late at the ear, though not at the
    # worker (no 0.4 s phrase ends before it, though)
    in_time_at_worker = decide(turn(now=0.8, first_token=0.8), mixed, History(), STOCK, OPTIONS)
    heard_late = decide(turn(now=0.8, first_token=0.8), mixed, History(), STOCK, over_webrtc)
    assert (in_time_at_worker.reason, heard_late.reason) == ("answer_soon", "no_phrase_fits")
    assert heard_late.answer_expected_after == pytest.approx(1.25)


def test_an_answer_whose_first_token_is_in_gets_no_filler():
    decision = decide(turn(first_token=0.3), SLOW, History(), STOCK, OPTIONS)
    assert (decision.speak, decision.reason, decision.recheck_at) == (False, "answer_soon", None)


def test_a_quick_session_is_looked_at_again_at_the_deadline():
    decision = decide(turn(now=0.3), Estimate(0.4, 0.3, 0.15, 0.25), History(), STOCK, OPTIONS)
    assert (decision.speak, decision.reason) == (False, "answer_soon")
    assert decision.recheck_at == pytest.approx(0.9)


def test_a_model_later_than_usual_is_expected_at_least_as_long_again_as_it_has_taken():
    # started at 0.1, usually 0.4 s to the first token, nothing by 1.0 (0.9 s): expected at 1.9, audio at 2.2
    decision = decide(turn(now=1.0), Estimate(0.4, 0.3), History(), STOCK, OPTIONS)
    assert decision.speak and decision.answer_expected_after == pytest.approx(2.2)


def test_no_phrase_fitting_yet_is_looked_at_again_when_the_answer_was_due():
    long_one = [Candidate("Let me look into that for you.", "fast_llm", 0.0, 1.5)]
    decision = decide(turn(now=1.0), Estimate(0.4, 0.3), History(), long_one, OPTIONS)
    assert (decision.speak, decision.reason) == (False, "no_phrase_fits")
    assert decision.recheck_at == pytest.approx(2.2)
    later = decide(turn(now=2.2), Estimate(0.4, 0.3), History(), long_one, OPTIONS)
    assert later.speak  # 2.1 s taken: expected 2.1 s more


def test_a_first_token_in_time_for_an_answer_before_late_after_keeps_the_filler_silent():
    decision = decide(turn(now=0.8, first_token=0.7), SLOW, History(), STOCK, OPTIONS)
    assert (decision.speak, decision.reason, decision.recheck_at) == (False, "answer_soon", None)


def test_no_filler_when_the_answer_audio_is_already_there():
    assert decide(turn(ready=True), SLOW, History(), STOCK, OPTIONS).reason == "answer_first"


def test_no_filler_on_a_trivial_turn():
    assert decide(turn(text="thank you"), SLOW, History(), STOCK, OPTIONS).reason == "trivial"


def test_never_the_previous_phrase():
    decision = decide(turn(), SLOW, History(previous_filler="okay"), STOCK, OPTIONS)
    assert decision.phrase.text == "Sure."


def test_spacing_between_fillers_is_configurable():
    spaced = Options(min_gap=8.0)
    assert decide(turn(now=5.0, started=4.6), SLOW, History("Sure.", last_filler_at=0.0), STOCK, spaced).reason == "too_soon"
    assert decide(turn(now=9.0, started=8.6), SLOW, History("Sure.", last_filler_at=0.0), STOCK, spaced).speak


def test_a_phrase_that_would_still_play_when_the_answer_is_due_is_not_said():
    long_one = [Candidate("Let me look into that for you.", "fast_llm", 0.0, 2.0)]
    decision = decide(turn(), SLOW, History(), long_one, OPTIONS)
    assert (decision.speak, decision.reason) == (False, "no_phrase_fits")


def test_a_phrase_still_to_be_synthesized_is_said_only_if_its_audio_comes_at_once():
    fresh = Candidate("Let me check that.", "fast_llm", 0.3, 0.6)
    decision = decide(turn(), SLOW, History(), [fresh, *STOCK], OPTIONS)
    assert decision.phrase.source == "stock"
    quick = Candidate("Let me check that.", "fast_llm", 0.1, 0.6)
    assert decide(turn(), SLOW, History(), [quick, *STOCK], OPTIONS).phrase == quick


@pytest.mark.parametrize("seed", range(20))
def test_property_a_spoken_filler_always_ends_before_the_answer_is_due_and_differs_from_the_last(seed):
    rng = random.Random(seed)
    for _ in range(200):
        now = rng.uniform(0.2, 2.0)
        quickest = rng.choice([(None, None), (rng.uniform(0.05, 2.0), rng.uniform(0.05, 1.5))])
        estimate = Estimate(rng.uniform(0.05, 3.0), rng.uniform(0.05, 2.5), *quickest)
        first_token = rng.choice([None, rng.uniform(0.1, now)])
        t = turn(now=now, started=rng.uniform(0.0, 0.2), first_token=first_token)
        previous = rng.choice([None, "Okay.", "Sure."])
        decision = decide(t, estimate, History(previous), STOCK, OPTIONS)
        if decision.speak:
            assert decision.answer_expected_after >= OPTIONS.late_after
            assert decision.phrase.text != previous
            assert now + decision.phrase.duration + OPTIONS.margin <= decision.answer_expected_after
        else:
            assert decision.reason in ("answer_soon", "no_phrase_fits")


def test_the_estimate_is_a_high_quantile_of_recent_requests_the_quickest_after_three_and_the_priors_before_any():
    estimator = LatencyEstimator(llm_prior=0.4, tts_prior=0.3)
    assert estimator.estimate() == Estimate(0.4, 0.3)
    for ttft in [1.8, 1.9]:
        estimator.observe_llm_ttft(ttft)
        estimator.observe_tts_ttfb(0.3)
    assert estimator.estimate().llm_ttft_quickest is None  # two requests do not make a session slow
    for ttft in [0.2] * 8:
        estimator.observe_llm_ttft(ttft)
        estimator.observe_tts_ttfb(0.3)
    estimate = estimator.estimate()
    assert estimate.llm_ttft >= 1.5  # one slow answer in ten is enough to expect slowness
    assert (estimate.llm_ttft_quickest, estimate.tts_ttfb_quickest) == (0.2, 0.3)  # but not to speak early
    assert estimate.llm_ttft_samples == (1.8, 1.9, *[0.2] * 8)
