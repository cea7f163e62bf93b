"""`is_safe_filler`: a filler only acknowledges. It never answers, states a fact, says yes or no,
asks, refuses or apologizes; anything it rejects is replaced by a stock phrase."""

from __future__ import annotations

import pytest

from agent_worker.preresponse import STOCK_PHRASES, is_safe_filler

SAFE = [
    "Okay.", "Sure.", "Right.", "Got it.", "Let me check.", "One moment.", "Good question.", "Alright.",
    "OK.", "Okay, one moment.", "Sure, let me check.", "Let me check that.", "Let me check that for you.",
    "Let me look into that.", "Let me look into it.", "Let me look that up.", "Let me pull that up.",
    "Let me find out.", "Let me think.", "Let me see.", "Let's see.", "Hmm, let me see.", "Hmm, let me think.",
    "One second.", "Just a second.", "Just a moment.", "Just a sec.", "One sec.", "Give me a second.",
    "Give me a moment.", "Give me a minute.", "Bear with me.", "Bear with me a moment.", "Hold on.",
    "Hold on a second.", "On it.", "Checking now.", "Checking.", "Looking into it now.", "Looking into that.",
    "I'll check.", "I'll check that for you.", "I'll look into that.", "I will check.", "I'm checking.",
    "I'm looking into it.", "Great question.", "Interesting question.", "Good one.", "Thanks for asking.",
    "Thank you for asking.", "Got it, one moment.", "Understood.", "Noted.", "Gotcha.", "Sure thing.",
    "Okay, let me take a look.", "Let me take a look.", "Alright, let me check.", "Right, one moment.",
    "Sure, give me a second.", "Okay, let me look into that for you.", "Let me check on that.",
    "Let\u2019s see.", "  Okay.  ", "Well, let me think.",
]

UNSAFE = [
    # answers and facts
    "Paris.", "It is open.", "Yes, it is open.", "The shop opens at nine.", "It's sunny today.",
    "The capital of France is Paris.", "It is 42.", "Forty two.", "About three hundred thousand kilometres.",
    "Mars.", "Blue.", "The sky is blue.", "It costs ten dollars.", "Tomorrow.", "At 9 am.", "In Tokyo.",
    "Your order has shipped.", "The meeting is cancelled.", "That's right.", "That is correct.",
    "Exactly.", "Correct.", "Absolutely.", "Definitely.", "Indeed.", "True.", "False.", "Of course it is.",
    # yes / no
    "Yes.", "No.", "Yeah.", "Yep.", "Nope.", "Nah.", "Yes, one moment.", "No, let me check.",
    # questions
    "What planet?", "Which one?", "Can you repeat that?", "What do you mean", "Could you say that again?",
    "Do you mean today?", "Where are you?", "Sure?", "Okay?", "Why do you ask",
    # refusals
    "I can't help with that.", "I cannot do that.", "I won't do that.", "I'm not able to help.",
    "I am unable to answer.", "That is not allowed.", "I don't know.", "No idea.",
    # apologies
    "Sorry.", "I'm sorry.", "I'm sorry, I can't help with that.", "Apologies.", "My apologies.",
    "Unfortunately not.", "I'm afraid not.", "Sorry, one moment.",
    # not a filler at all
    "", "   ", "Okay okay okay okay okay okay okay okay okay okay okay.",
]


def test_the_table_is_large_enough():
    assert len(SAFE) >= 60 and len(UNSAFE) >= 60


@pytest.mark.parametrize("text", SAFE)
def test_an_acknowledgement_is_safe(text):
    assert is_safe_filler(text)


@pytest.mark.parametrize("text", UNSAFE)
def test_an_answer_fact_question_refusal_or_apology_is_not(text):
    assert not is_safe_filler(text)


def test_every_stock_phrase_is_safe():
    assert all(is_safe_filler(phrase) for phrase in STOCK_PHRASES)
