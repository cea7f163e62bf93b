"""The filler's text rules: short, one sentence, never an answer, never the previous filler."""

from __future__ import annotations

import asyncio
import time

import pytest
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm

from agent_worker.preresponse import (
    PreResponseOptions,
    clean_filler,
    filler_prompt,
    generate_filler_text,
    holds_the_filler,
)
from agent_worker.scripted import ScriptedLLM


def test_filler_keeps_only_the_first_sentence():
    assert clean_filler("Sure, one moment. The capital is Paris.", max_words=8, previous=None) == "Sure, one moment."


def test_filler_over_the_word_limit_is_rejected_not_cut():
    assert clean_filler("Okay let me look that up for you right now please", max_words=4, previous=None) is None


def test_filler_holding_a_number_is_an_answer_and_is_rejected():
    assert clean_filler("It is 42.", max_words=8, previous=None) is None


def test_filler_equal_to_the_previous_one_is_rejected_whatever_the_case_or_punctuation():
    assert clean_filler("one moment", max_words=8, previous="One moment.") is None
    assert clean_filler("Got it.", max_words=8, previous="One moment.") == "Got it."


def test_empty_filler_is_rejected():
    assert clean_filler("   ", max_words=8, previous=None) is None


def test_prompt_states_the_word_limit_and_forbids_the_previous_filler():
    prompt = filler_prompt(PreResponseOptions(max_words=5), previous="One moment.")
    assert "at most 5 words" in prompt
    assert 'Do not say "One moment." again.' in prompt
    assert "Never answer" in prompt and "never apologize" in prompt


@pytest.mark.parametrize(
    ("start", "decided"),
    [
        ("Sure", False),
        ("Sure.", False),  # "Sure.5" could follow: the sentence has not visibly ended
        ("Sure. ", True),
        ("Sure. The", True),
        ("one two three four", False),
        ("one two three four fi", True),  # a fifth word has begun: the first four are whole
    ],
)
def test_the_start_of_a_reply_holds_the_filler_once_its_first_sentence_or_word_limit_is_passed(start, decided):
    assert holds_the_filler(start, max_words=4) is decided


async def test_filler_text_is_ready_at_the_end_of_its_first_sentence_and_the_request_is_still_billed_in_full():
    fast = ScriptedLLM("Sure, one moment. " + "and then many more words " * 10, ttft=0.0, token_interval=0.05)
    usage: list[int] = []
    fast.on("metrics_collected", lambda ev: usage.append(ev.completion_tokens))
    ctx = llm.ChatContext()
    ctx.add_message(role="user", content="what is the weather in Paris")
    started = time.monotonic()

    text = await generate_filler_text(fast, ctx, max_words=8)

    assert time.monotonic() - started < 0.5  # three words in, not the whole 53-word reply (2.6 s)
    assert clean_filler(text, max_words=8, previous=None) == "Sure, one moment."
    deadline = time.monotonic() + 10
    while not usage and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert usage == [53]  # the rest was read in the background: every token is counted


async def test_filler_request_uses_the_connection_options_it_is_given():
    seen: list[APIConnectOptions] = []

    class Recording(ScriptedLLM):
        def chat(self, *, chat_ctx, conn_options=DEFAULT_API_CONNECT_OPTIONS, **kwargs):
            seen.append(conn_options)
            return super().chat(chat_ctx=chat_ctx, conn_options=conn_options, **kwargs)

    options = APIConnectOptions(timeout=45.0)
    await generate_filler_text(Recording("Okay."), llm.ChatContext(), max_words=8, conn_options=options)

    assert seen == [options]
