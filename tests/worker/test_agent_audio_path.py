"""PreResponseAgent over livekit's real audio path (scripted caller, VAD, STT, LLMs, TTS).

The pre-response hook only fires on the audio path, so every test here speaks: the caller's
voice goes through VAD and streaming STT, turns are committed by livekit's endpointing, and the
agent's audio is played out in real time by a speaker that records what the caller heard.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent_worker.agent import PreResponseAgent
from agent_worker.call import ScriptedCall
from agent_worker.decision import Options
from agent_worker.preresponse import FillerCache, PreResponseOptions
from agent_worker.scripted import ScriptedLLM, ScriptedSTT, ScriptedTTS, ScriptedVAD, last_user_text

QUESTION = "what colour is the sky"


def answer_to(chat_ctx) -> str:
    return f"Answer to {last_user_text(chat_ctx)}."


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts like a fresh pod: no stock phrase synthesized yet."""
    monkeypatch.setattr(FillerCache, "_memory", {})
    monkeypatch.setattr("agent_worker.preresponse.DEFAULT_CACHE_DIR", tmp_path)


def make_call(
    tmp_path: Path,
    *,
    main_ttft: float = 1.5,
    main_reply=answer_to,
    fast_reply: str = "One moment.",
    fast_ttft: float = 0.02,
    transcripts: tuple[str, ...] = (QUESTION,),
    seconds_per_char: float = 0.02,
    announce_filler=None,
    turn_handling: dict | None = None,
    **options,
) -> tuple[ScriptedCall, ScriptedLLM, ScriptedTTS]:
    fast = ScriptedLLM(fast_reply, ttft=fast_ttft, model="fast")
    tts = ScriptedTTS(ttfb=0.05, seconds_per_char=seconds_per_char)
    agent = PreResponseAgent(
        instructions="Be brief.", fast_llm=fast, options=PreResponseOptions(cache_dir=tmp_path, **options),
        announce_filler=announce_filler,
    )
    call = ScriptedCall(agent, llm=ScriptedLLM(main_reply, ttft=main_ttft), stt=ScriptedSTT(transcripts), tts=tts, vad=ScriptedVAD())
    if turn_handling:
        call.turn_handling.update(turn_handling)
    return call, fast, tts


async def test_a_late_answer_gets_one_filler_heard_whole_then_the_answer(tmp_path):
    call, _, _ = make_call(tmp_path)
    async with call:
        turn = await call.turn()
        assert (turn.filler_outcome, turn.decision.reason) == ("spoken", "answer_late")
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
        assert call.heard[0].filler_after < call.heard[0].answer_after


async def test_a_quick_answer_gets_no_filler(tmp_path):
    call, _, _ = make_call(tmp_path, main_ttft=0.05)
    async with call:
        turn = await call.turn()
        assert turn.filler_outcome == "skipped_answer_soon"
        assert len(call.speaker.playouts) == 1


async def test_no_filler_and_no_fast_llm_call_for_a_trivial_turn(tmp_path):
    call, fast, _ = make_call(tmp_path, transcripts=("thanks",))
    async with call:
        turn = await call.turn()
        assert turn.filler_outcome == "skipped_trivial"
        assert fast.requests == []
        assert call.history() == [("user", "thanks", False), ("assistant", "Answer to thanks.", False)]


async def test_a_started_filler_finishes_and_the_answer_follows_without_a_gap(tmp_path):
    # The session's main LLM has been slow, so a filler is said; this time the answer comes while it plays.
    call, _, _ = make_call(tmp_path, main_ttft=0.25, fast_reply="Good question.", seconds_per_char=0.05)
    for _ in range(3):  # three slow requests: a consistently slow session
        call.agent.estimator.observe_llm_ttft(2.5)
    async with call:
        turn = await call.turn()
        assert turn.filler_outcome == "spoken"
        filler, answer = call.speaker.playouts
        assert not filler.interrupted and filler.played == pytest.approx(filler.pushed)
        assert answer.starts_at - (filler.starts_at + filler.pushed) == pytest.approx(0.0, abs=0.03)


async def test_a_fast_llm_text_that_answers_is_replaced_by_a_stock_phrase(tmp_path):
    call, _, tts = make_call(tmp_path, fast_reply="Yes, it is open.")
    async with call:
        turn = await call.turn()
        assert (turn.filler_outcome, turn.filler_text) == ("spoken", "Okay.")
        assert "Yes, it is open." not in tts.texts


async def test_the_fast_llm_phrase_is_synthesized_through_the_sessions_text_transforms(tmp_path):
    call, _, tts = make_call(tmp_path, main_ttft=3.0, fast_reply="Let me **check** that.")
    for _ in range(3):  # three slow requests: a consistently slow session; a slow main model: there is time for the whole phrase
        call.agent.estimator.observe_llm_ttft(3.0)
    async with call:
        turn = await call.turn()
        assert (turn.filler_outcome, turn.filler_text) == ("spoken", "Let me **check** that.")
        assert "Let me check that." in tts.texts  # markdown filtered, as livekit does for answers


async def test_fillers_on_consecutive_turns_never_repeat(tmp_path):
    call, _, _ = make_call(tmp_path, transcripts=(QUESTION, "and what colour is grass", "and what colour is snow"))
    async with call:
        said = [(await call.turn()).filler_text for _ in range(3)]
    assert said[0] == "One moment."
    assert all(a != b for a, b in zip(said, said[1:])), said


async def test_the_answer_does_not_repeat_the_acknowledgement(tmp_path):
    call, _, _ = make_call(tmp_path, fast_reply="Sure.", main_reply=lambda ctx: "Sure, the sky is blue.")
    async with call:
        turn = await call.turn()
        assert turn.filler_text == "Sure."
        assert turn.answer_text == "The sky is blue."


async def test_with_preemptive_tts_an_answer_ready_before_the_commit_gets_no_filler(tmp_path):
    call, _, _ = make_call(
        tmp_path, main_ttft=0.05, decision=Options(late_after=0.0),
        turn_handling={"endpointing": {"min_delay": 0.6, "max_delay": 1.0}, "preemptive_generation": {"preemptive_tts": True}},
    )
    async with call:
        turn = await call.turn()
        assert turn.filler_outcome == "skipped_answer_first"
        assert len(call.speaker.playouts) == 1


async def test_barge_in_on_the_filler_interrupts_the_filler_and_the_answer(tmp_path):
    call, _, _ = make_call(
        tmp_path, main_ttft=3.0, fast_reply="Let me look into that for you.",
        transcripts=(QUESTION, "never mind what time is it"), seconds_per_char=0.12,
    )
    for _ in range(3):  # three slow requests: a consistently slow session
        call.agent.estimator.observe_llm_ttft(3.0)
    async with call:
        await call.caller.say(0.4)
        while not call.speaker.playouts:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        await call.caller.say(0.7)
        await call.wait_quiet(lambda: len(call.agent.turns) == 2 and call.agent.turns[1].answer_audio_at, timeout=15)
        first, _second = call.agent.turns
        assert first.filler_outcome == "interrupted"
        assert first.answer_audio_at is None
        answers = [text for role, text, _ in call.history() if role == "assistant" and text.startswith("Answer")]
        assert answers == ["Answer to never mind what time is it."]
        assert call.speaker.playouts[0].interrupted


async def test_barge_in_on_the_answer_keeps_only_the_words_heard(tmp_path):
    long_answer = "The sky looks blue because air scatters short wavelengths of sunlight far more than long ones."
    call, _, _ = make_call(tmp_path, main_ttft=0.05, transcripts=(QUESTION, "stop please stop now"), seconds_per_char=0.06)
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


async def test_text_input_gets_no_filler_and_costs_no_fast_llm_call(tmp_path):
    from livekit.agents import AgentSession

    fast = ScriptedLLM("One moment.", ttft=0.01)
    agent = PreResponseAgent(instructions="Be brief.", fast_llm=fast, options=PreResponseOptions(use_cache=False))
    async with AgentSession(llm=ScriptedLLM(answer_to, ttft=0.01)) as session:
        await session.start(agent)
        result = await session.run(user_input=QUESTION)
        result.expect.next_event().is_message(role="assistant")
    assert fast.requests == []
    assert agent.turns == []


async def test_the_filler_is_announced_when_it_starts_to_play_and_never_when_none_is_said(tmp_path):
    announced: list[str] = []
    call, _, _ = make_call(tmp_path, announce_filler=announced.append)
    async with call:
        await call.turn()
    assert announced == ["One moment."]

    quiet: list[str] = []
    call, _, _ = make_call(tmp_path, main_ttft=0.05, announce_filler=quiet.append)
    async with call:
        turn = await call.turn()
    assert turn.filler_outcome == "skipped_answer_soon"
    assert quiet == []


async def test_a_new_call_starts_from_the_main_llms_times_in_the_pods_earlier_calls(tmp_path):
    # livekit runs each call in a fresh process: what the pod's earlier calls measured of the
    # main LLM is in the shared folder, so a slow model is known from the new call's first turn.
    def filler_after_commit(turn) -> float:
        return turn.filler_audio_at - turn.committed_at

    earlier, _, _ = make_call(tmp_path, transcripts=(QUESTION, "and what about tomorrow then", "is it windy there"))
    async with earlier:
        cold = [await earlier.turn() for _ in range(3)]
    later, _, _ = make_call(tmp_path)
    async with later:
        warm = await later.turn()

    (log,) = tmp_path.glob("llm-ttft-*.log")
    assert [float(line) for line in log.read_text().split()] == [pytest.approx(1.5, abs=0.1)] * 4
    assert [turn.filler_outcome for turn in cold + [warm]] == ["spoken"] * 4
    assert cold[0].decision.recheck_at is None  # the decision that spoke came at a recheck ...
    assert filler_after_commit(cold[0]) > 0.3  # ... after waiting for a first token due at once
    assert filler_after_commit(warm) < 0.1  # the new call speaks at its first commit


async def test_an_answer_that_only_repeats_the_filler_is_answered_not_apologized_for(tmp_path):
    # A small model may answer with the acknowledgement itself: the caller heard it as the filler.
    call, _, _ = make_call(tmp_path, fast_reply="Sure.", main_reply=lambda ctx: "Sure!")
    async with call:
        turn = await call.turn(until_answer=False, timeout=15)
        await call.wait_quiet(lambda: turn.answer_outcome is not None, timeout=15)
        assert (turn.filler_text, turn.answer_outcome, turn.recovered) == ("Sure.", "answered", False)
        assert [p.interrupted for p in call.speaker.playouts] == [False]  # the filler alone, no recovery line
