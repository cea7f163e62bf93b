"""Metrics after a real scripted call: every value exact, fast and main under their own labels.

One call of four turns runs once for the module (through livekit's audio path, with a
SessionRecorder attached exactly as in production); each test then checks one fact about
what the Prometheus registry and the session's JSON log line hold afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter
import tempfile
from pathlib import Path
import json
import logging
from dataclasses import dataclass, field

import pytest
from prometheus_client import REGISTRY

from agent_worker.agent import PreResponseAgent
from agent_worker.call import ScriptedCall
from agent_worker.metrics import SessionRecorder
from agent_worker.preresponse import RECOVERY_LINE, STOCK_PHRASES, FillerCache, PreResponseOptions
from agent_worker.pricing import PriceTable
from agent_worker.scripted import ScriptedLLM, ScriptedSTT, ScriptedTTS, ScriptedVAD, last_user_text

MAIN_MODEL = {"provider": "groq", "model": "llama-3.3-70b-versatile"}
FAST_MODEL = {"provider": "groq", "model": "llama-3.1-8b-instant"}
MAIN, FAST = {**MAIN_MODEL, "role": "main"}, {**FAST_MODEL, "role": "fast"}
STT = {"provider": "deepgram", "model": "nova-3"}
TTS = {"provider": "openai", "model": "tts-1"}
TRANSCRIPTS = ("what colour is the sky", "and what colour is grass", "thanks", "tell me a long story please", "stop")
LONG_ANSWER = "Once upon a time a small boat sailed across a very wide and very calm sea for many days."
SPEECH_SECONDS = 0.4

SAMPLES = [
    ("agent_worker_llm_prompt_tokens_total", MAIN), ("agent_worker_llm_cached_tokens_total", MAIN),
    ("agent_worker_llm_completion_tokens_total", MAIN), ("agent_worker_llm_prompt_tokens_total", FAST),
    ("agent_worker_llm_completion_tokens_total", FAST), ("agent_worker_llm_cached_tokens_total", FAST),
    ("agent_worker_llm_ttft_seconds_count", MAIN), ("agent_worker_llm_ttft_seconds_count", FAST),
    ("agent_worker_llm_ttft_seconds_sum", MAIN), ("agent_worker_llm_ttft_seconds_sum", FAST),
    ("agent_worker_llm_duration_seconds_count", MAIN), ("agent_worker_llm_duration_seconds_count", FAST),
    ("agent_worker_stt_audio_seconds_total", STT), ("agent_worker_stt_duration_seconds_count", STT),
    ("agent_worker_tts_characters_total", TTS), ("agent_worker_tts_ttfb_seconds_count", TTS),
    ("agent_worker_turns_total", {}), ("agent_worker_sessions_total", {}), ("agent_worker_interruptions_total", {}),
    ("agent_worker_turn_latency_seconds_count", {}), ("agent_worker_end_of_utterance_delay_seconds_count", {}),
    ("agent_worker_transcription_delay_seconds_count", {}), ("agent_worker_preresponse_latency_seconds_count", {}),
    ("agent_worker_preresponses_total", {"outcome": "spoken"}), ("agent_worker_preresponses_total", {"outcome": "failed"}),
    ("agent_worker_preresponses_total", {"outcome": "skipped_trivial"}),
    ("agent_worker_preresponses_total", {"outcome": "skipped_answer_soon"}),
    ("agent_worker_preresponses_total", {"outcome": "interrupted"}),
    ("agent_worker_answers_total", {"outcome": "answered"}), ("agent_worker_answers_total", {"outcome": "interrupted"}),
    ("agent_worker_provider_errors_total", {**FAST, "recoverable": "false"}),
    ("agent_worker_active_sessions", {}),
] + [("agent_worker_cost_usd_total", {**m, "kind": k}) for m in (MAIN_MODEL, FAST_MODEL) for k in ("input", "cached_input", "output")] + [
    ("agent_worker_cost_usd_total", {**STT, "kind": "audio"}), ("agent_worker_cost_usd_total", {**TTS, "kind": "characters"}),
]


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot() -> dict[tuple[str, str], float]:
    return {(name, json.dumps(labels, sort_keys=True)): sample(name, labels) for name, labels in SAMPLES}


@dataclass
class CallResult:
    deltas: dict[tuple[str, str], float]
    active_during_call: float
    main: ScriptedLLM
    fast: ScriptedLLM
    tts: ScriptedTTS
    turns: list
    log_lines: list[dict] = field(default_factory=list)

    def delta(self, name: str, **labels: str) -> float:
        return self.deltas[(name, json.dumps(labels, sort_keys=True))]


def answer(chat_ctx) -> str:
    question = last_user_text(chat_ctx)
    return LONG_ANSWER if "story" in question else f"Answer to {question}."


async def scripted_call(log_lines: list[dict]) -> CallResult:
    main = ScriptedLLM(answer, model=MAIN["model"], provider="groq", ttft=0.8, prompt_tokens=400, cached_tokens=100)
    fast = ScriptedLLM("One moment.", model=FAST["model"], provider="groq", ttft=0.02, prompt_tokens=150, failures=1)
    stt = ScriptedSTT(TRANSCRIPTS, model="nova-3", provider="deepgram")
    tts = ScriptedTTS(model="tts-1", provider="openai", seconds_per_char=0.03)
    recorder = SessionRecorder(PriceTable(), room="metrics-test")
    recorder.watch_llm(main, **MAIN)
    recorder.watch_llm(fast, **FAST)
    recorder.watch_stt(stt, **STT)
    recorder.watch_tts(tts, **TTS)
    FillerCache._memory.clear()  # a fresh pod: the stock phrases are synthesized in this call
    options = PreResponseOptions(cache_dir=Path(tempfile.mkdtemp(prefix="metrics-test-fillers-")))
    agent = PreResponseAgent(instructions="Be brief.", fast_llm=fast, options=options, observer=recorder)
    before = snapshot()
    recorder.start()
    active = sample("agent_worker_active_sessions", {})
    async with ScriptedCall(agent, llm=main, stt=stt, tts=tts, vad=ScriptedVAD()) as call:
        call.session.on("conversation_item_added", lambda ev: recorder.on_conversation_item(ev.item))
        for _ in TRANSCRIPTS[:3]:
            await call.turn(SPEECH_SECONDS)
        await call.caller.say(SPEECH_SECONDS)  # the long story, interrupted by the caller
        while not (len(agent.turns) == 4 and call.session.agent_state == "speaking"
                   and call.session.current_speech is agent._reply_handle):  # the story itself is playing
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.6)
        await call.caller.say(0.7)
        await call.wait_quiet(lambda: len(agent.turns) == 5)
    recorder.finish("test over")
    after = snapshot()
    deltas = {key: after[key] - before[key] for key in after}
    return CallResult(deltas, active, main, fast, tts, agent.turns, log_lines)


class _JsonLines(logging.Handler):
    def __init__(self, sink: list[dict]) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(json.loads(record.getMessage()))


@pytest.fixture(scope="module")
def result() -> CallResult:
    lines: list[dict] = []
    handler = _JsonLines(lines)
    session_log = logging.getLogger("agent_worker.session")
    session_log.addHandler(handler)
    session_log.setLevel(logging.INFO)
    try:
        return asyncio.run(scripted_call(lines))
    finally:
        session_log.removeHandler(handler)


def completion_tokens(texts: list[str]) -> int:
    return sum(len(t.split()) for t in texts)


def main_replies(result: CallResult) -> list[str]:
    return [answer(ctx) for ctx in result.main.requests]


def test_the_call_went_as_scripted(result):
    outcomes = [t.filler_outcome for t in result.turns]
    assert outcomes[2] == outcomes[4] == "skipped_trivial"
    assert all(o in ("spoken", "skipped_answer_soon") for o in outcomes[:2] + outcomes[3:4]), outcomes
    said = [t.filler_text for t in result.turns if t.filler_text]
    assert all(a != b for a, b in zip(said, said[1:]))  # never the same twice in a row
    assert [t.answer_outcome for t in result.turns] == ["answered", "answered", "answered", "interrupted", "answered"]
    assert len(result.main.requests) == 5 and len(result.fast.requests) == 3


def test_main_llm_tokens_are_counted_once_per_request(result):
    assert result.delta("agent_worker_llm_prompt_tokens_total", **MAIN) == 5 * 400
    assert result.delta("agent_worker_llm_cached_tokens_total", **MAIN) == 5 * 100
    assert result.delta("agent_worker_llm_completion_tokens_total", **MAIN) == completion_tokens(main_replies(result))


def test_fast_llm_usage_is_recorded_under_its_own_model_and_role(result):
    # three fast calls: the first failed (no usage); the third's repeated "One moment." was billed, then replaced
    assert result.delta("agent_worker_llm_prompt_tokens_total", **FAST) == 2 * 150
    assert result.delta("agent_worker_llm_completion_tokens_total", **FAST) == 2 * 2
    assert result.delta("agent_worker_llm_cached_tokens_total", **FAST) == 0
    assert result.delta("agent_worker_llm_ttft_seconds_count", **FAST) == 2
    assert result.delta("agent_worker_llm_duration_seconds_count", **FAST) == 2
    assert result.delta("agent_worker_llm_ttft_seconds_count", **MAIN) == 5


def test_llm_time_to_first_token_is_observed_per_role_at_its_scripted_value(result):
    assert result.delta("agent_worker_llm_ttft_seconds_sum", **MAIN) == pytest.approx(5 * 0.8, abs=0.1)
    assert result.delta("agent_worker_llm_ttft_seconds_sum", **FAST) == pytest.approx(2 * 0.02, abs=0.05)


def test_cost_is_tokens_times_the_published_price(result):
    completion = completion_tokens(main_replies(result))
    assert result.delta("agent_worker_cost_usd_total", **MAIN_MODEL, kind="input") == pytest.approx(5 * 300 * 0.59 / 1e6)
    assert result.delta("agent_worker_cost_usd_total", **MAIN_MODEL, kind="cached_input") == pytest.approx(5 * 100 * 0.59 / 1e6)
    assert result.delta("agent_worker_cost_usd_total", **MAIN_MODEL, kind="output") == pytest.approx(completion * 0.79 / 1e6)
    assert result.delta("agent_worker_cost_usd_total", **FAST_MODEL, kind="input") == pytest.approx(2 * 150 * 0.05 / 1e6)
    assert result.delta("agent_worker_cost_usd_total", **FAST_MODEL, kind="output") == pytest.approx(2 * 2 * 0.08 / 1e6)


def test_speech_to_text_seconds_and_cost(result):
    heard = 4 * SPEECH_SECONDS + 0.7
    assert result.delta("agent_worker_stt_audio_seconds_total", **STT) == pytest.approx(heard, abs=1e-6)
    assert result.delta("agent_worker_stt_duration_seconds_count", **STT) == 5
    assert result.delta("agent_worker_cost_usd_total", **STT, kind="audio") == pytest.approx(heard / 60 * 0.0059)


def test_text_to_speech_characters_include_the_cached_fillers_once(result):
    characters = sum(len(text) for text in result.tts.texts)
    assert set(STOCK_PHRASES) <= set(result.tts.texts)
    assert result.delta("agent_worker_tts_characters_total", **TTS) == characters
    assert result.delta("agent_worker_tts_ttfb_seconds_count", **TTS) == len(result.tts.texts)
    assert result.delta("agent_worker_cost_usd_total", **TTS, kind="characters") == pytest.approx(characters * 15 / 1e6)


def test_turns_latencies_and_interruptions(result):
    assert result.delta("agent_worker_turns_total") == 5
    assert result.delta("agent_worker_turn_latency_seconds_count") == 5
    assert result.delta("agent_worker_interruptions_total") == 1
    assert result.delta("agent_worker_end_of_utterance_delay_seconds_count") == 5
    assert result.delta("agent_worker_transcription_delay_seconds_count") == 5


def test_preresponse_and_answer_outcomes_are_counted_once_per_turn(result):
    for outcome, count in Counter(t.filler_outcome for t in result.turns).items():
        assert result.delta("agent_worker_preresponses_total", outcome=outcome) == count
    spoken = sum(t.filler_outcome == "spoken" for t in result.turns)
    assert result.delta("agent_worker_preresponse_latency_seconds_count") == spoken
    assert result.delta("agent_worker_answers_total", outcome="answered") == 4
    assert result.delta("agent_worker_answers_total", outcome="interrupted") == 1
    assert result.log_lines[0]["answers"] == {"answered": 4, "interrupted": 1}


def test_a_provider_error_is_counted_under_the_failing_model(result):
    assert result.delta("agent_worker_provider_errors_total", **FAST, recoverable="false") == 1


def test_active_sessions_is_one_during_the_call_and_back_to_zero_after(result):
    assert result.active_during_call == 1
    assert result.delta("agent_worker_sessions_total") == 1
    assert result.delta("agent_worker_active_sessions") == 0


def test_one_json_log_line_per_session_with_usage_and_cost(result):
    (line,) = result.log_lines
    assert line["event"] == "session_finished" and line["turns"] == 5 and line["interruptions"] == 1
    usage = {(u["role"], u["model"]): u for u in line["usage"]}
    assert usage[("fast", FAST["model"])]["prompt_tokens"] == 2 * 150
    assert usage[("main", MAIN["model"])]["prompt_tokens"] == 5 * 400
    counted = sum(v for (name, _), v in result.deltas.items() if name == "agent_worker_cost_usd_total")
    assert line["cost_usd"]["total"] == pytest.approx(counted)
