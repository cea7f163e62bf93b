"""The filler's text rules: short, one sentence, never an answer, never the previous filler."""

from __future__ import annotations

from agent_worker.preresponse import PreResponseOptions, clean_filler, filler_prompt, is_trivial


def test_filler_keeps_only_the_first_sentence():
    assert clean_filler("Sure, one moment. The capital is Paris.", max_words=8, previous=None) == "Sure, one moment."


def test_filler_is_cut_to_the_word_limit():
    assert clean_filler("Okay let me look that up for you right now please", max_words=4, previous=None) == "Okay let me look..."


def test_filler_holding_a_number_is_an_answer_and_is_rejected():
    assert clean_filler("It is 42.", max_words=8, previous=None) is None


def test_filler_equal_to_the_previous_one_is_rejected_whatever_the_case_or_punctuation():
    assert clean_filler("one moment", max_words=8, previous="One moment.") is None
    assert clean_filler("Got it.", max_words=8, previous="One moment.") == "Got it."


def test_empty_filler_is_rejected():
    assert clean_filler("   ", max_words=8, previous=None) is None


def test_turns_shorter_than_min_words_are_trivial():
    options = PreResponseOptions(min_words=3)
    assert is_trivial("thank you", options)
    assert not is_trivial("what time is it", options)


def test_prompt_states_the_word_limit_and_forbids_the_previous_filler():
    prompt = filler_prompt(PreResponseOptions(max_words=5), previous="One moment.")
    assert "at most 5 words" in prompt
    assert 'Do not say "One moment." again.' in prompt
    assert "Never answer" in prompt
