"""Fillers never hide failures: a failing main LLM closes the session on the same turn as without
the pre-response, and an empty answer after a filler is followed by a spoken recovery line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent_worker.agent import PreResponseAgent
from agent_worker.call import ScriptedCall
from agent_worker.preresponse import RECOVERY_LINE, FillerCache, PreResponseOptions
from agent_worker.scripted import ScriptedLLM, ScriptedSTT, ScriptedTTS, ScriptedVAD

QUESTIONS = [f"tell me about topic number {n} please" for n in range(8)]


class Outcomes:
    def __init__(self) -> None:
        self.preresponses: list[str] = []
        self.answers: list[tuple[str, bool]] = []

    def on_preresponse(self, outcome: str, latency: float | None) -> None:
        self.preresponses.append(outcome)

    def on_answer(self, outcome: str, recovered: bool) -> None:
        self.answers.append((outcome, recovered))


@pytest.fixture(autouse=True)
def fresh_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FillerCache, "_memory", {})


def slow_call(tmp_path: Path, main: ScriptedLLM, *, preresponse: bool) -> tuple[ScriptedCall, Outcomes]:
    outcomes = Outcomes()
    agent = PreResponseAgent(
        instructions="Be brief.", fast_llm=None, observer=outcomes,
        options=PreResponseOptions(enabled=preresponse, cache_dir=tmp_path),
    )
    for _ in range(3):  # three slow requests: a consistently slow session; this session's main model has been slow: fillers are due
        agent.estimator.observe_llm_ttft(2.0)
    call = ScriptedCall(agent, llm=main, stt=ScriptedSTT(list(QUESTIONS)), tts=ScriptedTTS(seconds_per_char=0.02), vad=ScriptedVAD())
    return call, outcomes


async def turns_until_closed(tmp_path: Path, *, preresponse: bool) -> tuple[int, Outcomes]:
    call, outcomes = slow_call(tmp_path, ScriptedLLM("never said", ttft=1.0, failures=100), preresponse=preresponse)
    closed = asyncio.Event()
    async with call:
        call.session.on("close", lambda _: closed.set())
        for number in range(1, len(QUESTIONS) + 1):
            await call.caller.say(0.4)
            try:
                await asyncio.wait_for(closed.wait(), timeout=2.5)
                return number, outcomes
            except TimeoutError:
                continue
    raise AssertionError(f"the session never closed; fillers {outcomes.preresponses}")


async def test_a_failing_main_llm_closes_the_session_on_the_same_turn_with_or_without_fillers(tmp_path):
    without, _ = await turns_until_closed(tmp_path / "off", preresponse=False)
    with_fillers, outcomes = await turns_until_closed(tmp_path / "on", preresponse=True)
    assert outcomes.preresponses.count("spoken") >= without - 1  # the fillers were heard...
    assert with_fillers == without  # ...and hid nothing
    assert ("failed", True) in outcomes.answers  # each failed answer after a filler was owned up to


async def test_an_empty_answer_after_a_filler_is_followed_by_the_recovery_line(tmp_path):
    call, outcomes = slow_call(tmp_path, ScriptedLLM("", ttft=1.5), preresponse=True)
    async with call:
        turn = await call.turn(until_answer=False, timeout=15)
        await call.wait_quiet(lambda: turn.answer_outcome is not None, timeout=15)
        assert turn.filler_outcome == "spoken"
        assert (turn.answer_outcome, turn.recovered) == ("empty", True)
        assert outcomes.answers == [("empty", True)]
        assert call.history()[-1] == ("assistant", RECOVERY_LINE, False)
        assert len(call.speaker.playouts) == 2  # the filler, then the recovery line


async def test_an_empty_answer_without_a_filler_is_counted_but_not_apologized_for(tmp_path):
    call, outcomes = slow_call(tmp_path, ScriptedLLM("", ttft=0.05), preresponse=True)
    call.agent.estimator = type(call.agent.estimator)(llm_prior=0.05, tts_prior=0.05)
    async with call:
        turn = await call.turn(until_answer=False, timeout=15)
        await call.wait_quiet(lambda: turn.answer_outcome is not None, timeout=15)
        assert turn.filler_outcome != "spoken"
        assert outcomes.answers == [("empty", False)]
        assert call.speaker.playouts == []
