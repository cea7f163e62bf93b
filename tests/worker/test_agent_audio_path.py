"""PreResponseAgent over livekit's real audio path (scripted caller, VAD, STT, LLMs, TTS).

The pre-response hook only fires on the audio path, so every test here speaks: the caller's
voice goes through VAD and streaming STT, turns are committed by livekit's endpointing, and the
agent's audio is played out in real time by a speaker that records what the caller heard.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_worker.agent import PreResponseAgent, Strategy
from agent_worker.call import ScriptedCall
from agent_worker.preresponse import PreResponseOptions
from agent_worker.scripted import ScriptedLLM, ScriptedSTT, ScriptedTTS, ScriptedVAD, last_user_text

QUESTION = "what colour is the sky"


def answer_to(chat_ctx) -> str:
    return f"Answer to {last_user_text(chat_ctx)}."


def make_call(
    *,
    main_ttft: float = 0.6,
    fast_reply: str = "One moment.",
    fast_ttft: float = 0.02,
    transcripts: tuple[str, ...] = (QUESTION,),
    options: PreResponseOptions | None = None,
    with_fast: bool = True,
    seconds_per_char: float = 0.02,
    strategy: Strategy = "concurrent",
    announce_filler=None,
) -> tuple[ScriptedCall, ScriptedLLM, ScriptedTTS]:
    fast = ScriptedLLM(fast_reply, ttft=fast_ttft, model="fast")
    tts = ScriptedTTS(ttfb=0.05, seconds_per_char=seconds_per_char)
    agent = PreResponseAgent(
        instructions="Be brief.", fast_llm=fast if with_fast else None, options=options or PreResponseOptions(), strategy=strategy,
        announce_filler=announce_filler,
    )
    call = ScriptedCall(agent, llm=ScriptedLLM(answer_to, ttft=main_ttft), stt=ScriptedSTT(transcripts), tts=tts, vad=ScriptedVAD())
    return call, fast, tts


async def test_filler_is_heard_first_then_the_answer_when_the_main_model_is_slow():
    call, _, _ = make_call(main_ttft=0.8)
    async with call:
        turn = await call.turn()
        assert turn.filler_outcome == "spoken"
        heard = [(p.interrupted, p.pushed) for p in call.speaker.playouts]
        assert heard == [
            (False, pytest.approx(len("One moment.") * 0.02, abs=0.03)),
            (False, pytest.approx(len(f"Answer to {QUESTION}.") * 0.02, abs=0.03)),
        ]
        assert call.history() == [
            ("user", QUESTION, False),
            ("assistant", "One moment.", False),
            ("assistant", f"Answer to {QUESTION}.", False),
        ]
        assert turn.filler_audio_at - turn.committed_at < 0.05  # cached stock phrase, text prepared early


async def answer_latency(with_fast: bool) -> tuple[float, list[bool], str | None]:
    call, _, _ = make_call(
        main_ttft=0.3, fast_reply="Let me look into that for you.", with_fast=with_fast,
        options=PreResponseOptions(use_cache=False), seconds_per_char=0.06,
    )
    async with call:
        turn = await call.turn()
        return turn.answer_audio_at - turn.committed_at, [p.interrupted for p in call.speaker.playouts], turn.filler_outcome


async def test_answer_is_not_delayed_by_a_filler_still_playing():
    without_filler, _, _ = await answer_latency(with_fast=False)
    with_filler, interrupted, outcome = await answer_latency(with_fast=True)
    assert outcome == "cut"
    assert interrupted == [True, False]  # the 1.8 s filler stopped, the answer played whole
    assert abs(with_filler - without_filler) < 0.05


async def test_a_cut_filler_is_kept_in_history_only_as_far_as_it_was_heard():
    call, _, _ = make_call(main_ttft=0.9, fast_reply="Let me look into that for you.", options=PreResponseOptions(use_cache=False), seconds_per_char=0.08)
    async with call:
        await call.turn()
        fillers = [(text, interrupted) for role, text, interrupted in call.history() if role == "assistant" and not text.startswith("Answer")]
        assert len(fillers) == 1
        text, interrupted = fillers[0]
        assert interrupted
        assert text and "Let me look into that for you.".startswith(text) and text != "Let me look into that for you."


async def test_no_filler_and_no_fast_llm_call_for_a_trivial_turn():
    call, fast, _ = make_call(transcripts=("thanks",))
    async with call:
        turn = await call.turn()
        assert turn.filler_outcome == "skipped_trivial"
        assert fast.requests == []
        assert call.history() == [("user", "thanks", False), ("assistant", "Answer to thanks.", False)]


async def test_filler_is_dropped_when_the_answer_audio_is_ready_first():
    call, _, _ = make_call(main_ttft=0.02, fast_ttft=0.8)
    async with call:
        turn = await call.turn()
        assert turn.filler_outcome == "skipped_answer_first"
        assert len(call.speaker.playouts) == 1
        assert call.history() == [("user", QUESTION, False), ("assistant", f"Answer to {QUESTION}.", False)]


async def test_filler_that_answers_the_question_is_never_spoken():
    call, _, tts = make_call(fast_reply="It is 42.", options=PreResponseOptions(use_cache=False))
    async with call:
        turn = await call.turn()
        assert turn.filler_outcome == "skipped_invalid"
        assert tts.texts == [f"Answer to {QUESTION}."]


async def test_a_cached_stock_phrase_stands_in_for_an_unusable_filler():
    call, _, _ = make_call(fast_reply="It is 42.")
    async with call:
        turn = await call.turn()
        assert (turn.filler_outcome, turn.filler_text) == ("spoken", "Okay.")


async def test_filler_never_repeats_the_previous_one():
    call, fast, _ = make_call(transcripts=(QUESTION, "and what colour is grass"))
    async with call:
        first, second = await call.turn(), await call.turn()
        assert (first.filler_text, second.filler_text) == ("One moment.", "Okay.")
        assert 'Do not say "One moment." again.' in fast.requests[-1].items[0].text_content


async def test_filler_is_cut_to_the_configured_word_limit():
    call, _, tts = make_call(fast_reply="Okay I am going to look that up for you", options=PreResponseOptions(max_words=4, use_cache=False))
    async with call:
        turn = await call.turn()
        assert turn.filler_text == "Okay I am going..."
        assert tts.texts[0] == "Okay I am going..."


async def test_barge_in_on_the_filler_interrupts_the_filler_and_the_answer():
    call, _, _ = make_call(
        main_ttft=2.0, fast_reply="Let me look into that for you.", options=PreResponseOptions(use_cache=False),
        transcripts=(QUESTION, "never mind what time is it"), seconds_per_char=0.08,
    )
    async with call:
        await call.caller.say(0.4)
        while not call.speaker.playouts:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        await call.caller.say(0.7)
        await call.wait_quiet(lambda: len(call.agent.turns) == 2, timeout=10)
        first, second = call.agent.turns
        assert first.filler_outcome == "interrupted"
        assert first.answer_audio_at is None
        answers = [text for role, text, _ in call.history() if role == "assistant" and text.startswith("Answer")]
        assert answers == ["Answer to never mind what time is it."]
        assert call.speaker.playouts[0].interrupted


async def test_barge_in_on_the_answer_keeps_only_the_words_heard():
    long_answer = "The sky looks blue because air scatters short wavelengths of sunlight far more than long ones."
    call, _, _ = make_call(main_ttft=0.05, with_fast=False, transcripts=(QUESTION, "stop please stop now"), seconds_per_char=0.06)
    call.llm = ScriptedLLM(lambda ctx: long_answer if "sky" in last_user_text(ctx) else "Okay.", ttft=0.05)
    async with call:
        await call.caller.say(0.4)
        while not call.speaker.playouts:
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)
        await call.caller.say(0.7)
        await call.wait_quiet(lambda: len(call.agent.turns) == 2, timeout=10)
        role, text, interrupted = call.history()[1]
        assert (role, interrupted) == ("assistant", True)
        assert text and long_answer.startswith(text.rstrip()) and len(text) < len(long_answer)


async def test_the_seed_strategy_answers_only_after_the_whole_filler():
    call, _, _ = make_call(main_ttft=0.1, strategy="sequential", seconds_per_char=0.05)
    async with call:
        await call.turn()
        filler, answer = call.speaker.playouts
        assert answer.starts_at >= filler.starts_at + filler.pushed - 0.01


async def test_text_input_gets_no_filler_and_costs_no_fast_llm_call():
    from livekit.agents import AgentSession

    fast = ScriptedLLM("One moment.", ttft=0.01)
    agent = PreResponseAgent(instructions="Be brief.", fast_llm=fast, options=PreResponseOptions(use_cache=False))
    async with AgentSession(llm=ScriptedLLM(answer_to, ttft=0.01)) as session:
        await session.start(agent)
        result = await session.run(user_input=QUESTION)
        result.expect.next_event().is_message(role="assistant")
    assert fast.requests == []
    assert agent.turns == []


async def test_the_filler_is_announced_when_it_starts_to_play_and_never_when_it_is_dropped():
    announced: list[str] = []
    call, _, _ = make_call(main_ttft=0.8, announce_filler=announced.append)
    async with call:
        await call.turn()
    assert announced == ["One moment."]

    dropped: list[str] = []
    call, _, _ = make_call(main_ttft=0.02, fast_ttft=0.8, announce_filler=dropped.append)
    async with call:
        turn = await call.turn()
    assert turn.filler_outcome == "skipped_answer_first"
    assert dropped == []
