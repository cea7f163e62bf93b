"""Latency benchmark: no pre-response, the seed prototype's, and ours, side by side.

All three strategies run at once in one process, each in its own livekit AgentSession over the
real audio path, with the same scripted providers. Every latency is drawn from a log-normal
fitted to a published figure, keyed on the request (provider role + text), so the three
strategies see the very same provider delays turn by turn. Timing starts when livekit commits
the caller's turn (`on_user_turn_completed`); endpointing before that is the same for all.

    first_audio_ms   end of user turn -> first agent audio frame (filler or answer)
    answer_audio_ms  end of user turn -> first audio frame of the main answer
    overhead_ms      ours: first_audio minus what the providers were scripted to take after
                     the turn ended (fast LLM still to run, TTS unless the filler was cached)

Usage: python bench/latency.py [--turns N] [--out bench/results/latency.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit.agents import __version__ as livekit_version
from livekit.agents import llm

from agent_worker.agent import PreResponseAgent, TurnRecord
from agent_worker.call import ScriptedCall
from agent_worker.preresponse import PreResponseOptions
from agent_worker.scripted import ScriptedLLM, ScriptedSTT, ScriptedTTS, ScriptedVAD, last_user_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import percentiles  # noqa: E402


@dataclass(frozen=True)
class LogNormal:
    """A latency in seconds: median `p50`; spread from `p95` when published, else `sigma`."""

    p50: float
    p95: float | None = None
    sigma: float = 0.25

    @property
    def spread(self) -> float:
        return math.log(self.p95 / self.p50) / 1.645 if self.p95 else self.sigma

    def draw(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.p50), self.spread)


@dataclass(frozen=True)
class Profile:
    fast_ttft: LogNormal
    main_ttft: LogNormal
    tts_ttfb: LogNormal
    sources: tuple[str, ...]


UATGPT = "uatgpt.com 'AI Model Latency Comparison' (Groq, 500-token prompts): 8B p50 120/p95 250 ms, 70B p50 200/p95 400 ms"
KRABARENA = "krabarena.org claim 592e1fd1 (2026, Groq warm streamed ~700-token prompt, 337 ms proxy floor removed): 8B 157 ms, 70B 163 ms"
AURA2 = "Coval TTS benchmark 2026-05-04: Deepgram Aura-2 median time to first audio 313 ms"
TTS1HD = "Coval TTS benchmark 2026-05-04: OpenAI TTS-1-HD median time to first audio 2,295 ms"
SPREAD = "no p95 published: log-normal sigma 0.25 assumed"

PROFILES: dict[str, Profile] = {
    "groq_uatgpt_aura2": Profile(LogNormal(0.120, 0.250), LogNormal(0.200, 0.400), LogNormal(0.313), (UATGPT, AURA2, SPREAD)),
    "groq_krabarena_aura2": Profile(LogNormal(0.157), LogNormal(0.163), LogNormal(0.313), (KRABARENA, AURA2, SPREAD)),
    "groq_uatgpt_openai_tts1hd": Profile(LogNormal(0.120, 0.250), LogNormal(0.200, 0.400), LogNormal(2.295), (UATGPT, TTS1HD, SPREAD)),
}
# Not from the notes' sources, stated as assumptions: Groq streams several hundred tokens/s.
TOKEN_INTERVAL = {"fast": 1 / 750, "main": 1 / 275}
STT_FINAL_DELAY = 0.1  # before the turn is committed, so the same for every strategy
SECONDS_PER_CHAR = 0.06  # ~16 characters of speech per second
STRATEGIES = ("baseline", "seed", "preresponse")


def keyed_rng(*key: object) -> random.Random:
    return random.Random(json.dumps([str(k) for k in key]))


class KeyedLLM(ScriptedLLM):
    """Delays drawn per (profile, role, caller's words): identical across strategies."""

    def __init__(self, *args: Any, latency: LogNormal, key: str, role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._latency, self._key, self._role = latency, key, role

    def draw_delays(self, chat_ctx: llm.ChatContext) -> tuple[float, float]:
        return self._latency.draw(keyed_rng(self._key, self._role, last_user_text(chat_ctx))), TOKEN_INTERVAL[self._role]


class KeyedTTS(ScriptedTTS):
    def __init__(self, *, latency: LogNormal, key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._latency, self._key = latency, key

    def draw_ttfb(self, text: str) -> float:
        return self._latency.draw(keyed_rng(self._key, "tts", text))


def question(index: int) -> str:
    return f"tell me about question number {index} please"


def answer(chat_ctx: llm.ChatContext) -> str:
    return f"Here is the answer to {last_user_text(chat_ctx).split()[-2]}."


@dataclass
class TurnSample:
    first_audio: float
    answer_audio: float
    overhead: float | None
    end_of_speech_to_commit: float


@dataclass
class StrategyRun:
    name: str
    samples: list[TurnSample] = field(default_factory=list)


async def run_strategy(profile_name: str, profile: Profile, strategy: str, turns: int) -> StrategyRun:
    fast = KeyedLLM("One moment.", model="llama-3.1-8b-instant", provider="groq", latency=profile.fast_ttft, key=profile_name, role="fast")
    main = KeyedLLM(answer, model="llama-3.3-70b-versatile", provider="groq", latency=profile.main_ttft, key=profile_name, role="main")
    tts = KeyedTTS(latency=profile.tts_ttfb, key=profile_name, seconds_per_char=SECONDS_PER_CHAR)
    agent = PreResponseAgent(
        instructions="Be brief.",
        fast_llm=None if strategy == "baseline" else fast,
        options=PreResponseOptions(),
        strategy="sequential" if strategy == "seed" else "concurrent",
    )
    turn_handling = {"turn_detection": "vad", "interruption": {"mode": "vad", "resume_false_interruption": False}}
    stt = ScriptedSTT([question(i) for i in range(turns)], final_delay=STT_FINAL_DELAY)
    run = StrategyRun(strategy)
    async with ScriptedCall(agent, llm=main, stt=stt, tts=tts, vad=ScriptedVAD(), turn_handling=turn_handling) as call:
        for _ in range(turns):
            record = await call.turn(speech_seconds=0.5, timeout=30)
            run.samples.append(sample(record, fast, agent, strategy))
    return run


def sample(record: TurnRecord, fast: KeyedLLM, agent: PreResponseAgent, strategy: str) -> TurnSample:
    assert record.answer_audio_at is not None, f"no answer audio for {record.transcript!r}"
    answer_audio = record.answer_audio_at - record.committed_at
    filler_audio = record.filler_audio_at - record.committed_at if record.filler_audio_at else math.inf
    first_audio = min(answer_audio, filler_audio)
    overhead = None
    if strategy == "preresponse" and filler_audio <= answer_audio:
        started, scripted = max((t for t in fast.timings if t[0] <= record.committed_at + 0.001), default=(record.committed_at, 0.0))
        still_to_run = max(0.0, started + scripted - record.committed_at)
        cache = agent.filler_cache
        if cache is None or record.filler_text is None or cache.get(record.filler_text) is None:
            still_to_run += 0.0 if record.filler_text is None else fast_tts_ttfb(agent, record.filler_text)
        overhead = first_audio - still_to_run
    assert record.stopped_speaking_at is not None
    return TurnSample(first_audio, answer_audio, overhead, record.committed_at - record.stopped_speaking_at)


def fast_tts_ttfb(agent: PreResponseAgent, text: str) -> float:
    tts = agent.session.tts
    return tts.draw_ttfb(text) if isinstance(tts, KeyedTTS) else 0.0


def summarize(runs: list[StrategyRun]) -> dict[str, Any]:
    by_name: dict[str, list[TurnSample]] = {}
    for run in runs:
        by_name.setdefault(run.name, []).extend(run.samples)
    return {
        "strategies": {
            name: {
                "first_audio_ms": percentiles([s.first_audio for s in samples], 1000),
                "answer_audio_ms": percentiles([s.answer_audio for s in samples], 1000),
            }
            for name, samples in by_name.items()
        },
        "overhead_ms": percentiles([s.overhead for s in by_name.get("preresponse", []) if s.overhead is not None], 1000),
        "end_of_speech_to_commit_ms": percentiles([s.end_of_speech_to_commit for samples in by_name.values() for s in samples], 1000),
    }


async def benchmark(turns: int, profiles: dict[str, Profile]) -> dict[str, Any]:
    per_profile = max(1, turns // len(profiles))
    all_runs: list[StrategyRun] = []
    details: dict[str, Any] = {}
    for name, profile in profiles.items():
        runs = await asyncio.gather(*(run_strategy(name, profile, strategy, per_profile) for strategy in STRATEGIES))
        all_runs.extend(runs)
        details[name] = {**summarize(list(runs)), "sources": list(profile.sources)}
        print(f"{name}: {json.dumps(details[name]['strategies'])} overhead {details[name]['overhead_ms']}", file=sys.stderr)
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, livekit-agents {livekit_version}",
        "turns": per_profile * len(profiles),
        **summarize(all_runs),
        "profiles": details,
        "method": {
            "clock_starts": "when livekit commits the caller's turn (on_user_turn_completed); "
            "end_of_speech_to_commit_ms is the endpointing before that, the same for every strategy",
            "fast_llm_starts": "with the main LLM's preemptive request (final transcript), before the commit",
            "main_llm_starts": "preemptively, at the final transcript (livekit default), in every strategy; "
            "the seed invalidates it by editing the turn context",
            "token_interval_s": TOKEN_INTERVAL,
            "stt_final_delay_s": STT_FINAL_DELAY,
            "filler_cache": True,
            "date": time.strftime("%Y-%m-%d"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=60, help="turns per strategy, split over the profiles")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the seed strategy's invalidated preemptive replies warn every turn
    result = asyncio.run(benchmark(args.turns, PROFILES))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("turns", "strategies", "overhead_ms")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
