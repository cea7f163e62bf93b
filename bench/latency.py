"""Latency benchmark at the caller's ear: no pre-response, a filler on every turn, and ours, side by side.

All strategies of a profile run at once in one process, each in its own livekit AgentSession over
the real audio path, with the same scripted providers. Every latency is drawn from a log-normal
fitted to a published figure, keyed on the request (profile, role, caller's words), so the
strategies see the very same provider delays turn by turn. The worker's default turn handling is
used (VAD minimum silence, endpointing min_delay; the turn detector's "finished" answer is stood in
by VAD endpointing, since the scripted caller's voice is a tone). Every figure starts at the end
of the caller's speech (its last voiced frame) and ends at the first frame the caller hears:

    filler_ms        the filler's first frame (turns with a filler)
    answer_ms        the answer's first frame
    first_audio_ms   whichever came first

Strategies: `none` (no pre-response), `always` (a filler whenever one can be said: late_after=0),
`decided` (the worker as shipped). Usage: python bench/latency.py [--turns N] [--out ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit.agents import __version__ as livekit_version
from livekit.agents import llm

from agent_worker.agent import PreResponseAgent
from agent_worker.call import Heard, ScriptedCall
from agent_worker.config import Settings
from agent_worker.decision import Options
from agent_worker.preresponse import PreResponseOptions
from agent_worker.scripted import ScriptedLLM, ScriptedSTT, ScriptedTTS, ScriptedVAD, last_user_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import machine, percentiles  # noqa: E402


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

SLOW_MAIN = "assumed: a self-hosted 70B or a long-context request, time to first token p50 1.5 s (the issue's 1.5-2 s answer)"
PROFILES: dict[str, Profile] = {
    "groq_like": Profile(LogNormal(0.120, 0.250), LogNormal(0.200, 0.400), LogNormal(0.313), (UATGPT, AURA2, SPREAD)),
    "slow_main": Profile(LogNormal(0.120, 0.250), LogNormal(1.5, 2.0), LogNormal(0.313), (UATGPT, SLOW_MAIN, AURA2, SPREAD)),
    "slow_tts": Profile(LogNormal(0.120, 0.250), LogNormal(0.200, 0.400), LogNormal(2.295), (UATGPT, TTS1HD, SPREAD)),
}
# The mixed day: each turn is Groq-like or slow-main, drawn per question (the same in every strategy).
MIXED = "mixed"
# Not from the notes' sources, stated as assumptions: Groq streams several hundred tokens/s.
TOKEN_INTERVAL = {"fast": 1 / 750, "main": 1 / 275}
STT_FINAL_DELAY = 0.1  # before the turn is committed, so the same for every strategy
SECONDS_PER_CHAR = 0.06  # ~16 characters of speech per second
STRATEGIES = {"none": None, "always": 0.0, "decided": Settings.model_fields["preresponse_late_after"].default}
DEFAULTS = {name: Settings.model_fields[name].default for name in ("vad_min_silence", "endpointing_min_delay", "endpointing_max_delay")}


def keyed_rng(*key: object) -> random.Random:
    return random.Random(json.dumps([str(k) for k in key]))


class KeyedLLM(ScriptedLLM):
    """Delays drawn per (profile, role, caller's words): identical across strategies."""

    def __init__(self, *args: Any, latency: LogNormal, key: str, role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._latency, self._key, self._role = latency, key, role

    def draw_delays(self, chat_ctx: llm.ChatContext) -> tuple[float, float]:
        words = last_user_text(chat_ctx)
        latency = self._latency
        if self._key == MIXED:
            latency = PROFILES[keyed_rng(MIXED, words).choice(["groq_like", "slow_main"])].main_ttft if self._role == "main" else latency
        return latency.draw(keyed_rng(self._key, self._role, words)), TOKEN_INTERVAL[self._role]


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
class StrategyRun:
    name: str
    heard: list[Heard] = field(default_factory=list)


async def run_strategy(profile_name: str, profile: Profile, strategy: str, turns: int) -> StrategyRun:
    fast = KeyedLLM("One moment.", model="llama-3.1-8b-instant", provider="groq", latency=profile.fast_ttft, key=profile_name, role="fast")
    main = KeyedLLM(answer, model="llama-3.3-70b-versatile", provider="groq", latency=profile.main_ttft, key=profile_name, role="main")
    tts = KeyedTTS(latency=profile.tts_ttfb, key=profile_name, seconds_per_char=SECONDS_PER_CHAR)
    late_after = STRATEGIES[strategy]
    options = PreResponseOptions(enabled=late_after is not None, decision=Options(late_after=late_after or 0.0),
                                 cache_dir=Path(tempfile.mkdtemp(prefix=f"bench-{strategy}-")))
    agent = PreResponseAgent(instructions="Be brief.", fast_llm=fast if late_after is not None else None, options=options)
    turn_handling = {
        "turn_detection": "vad",
        "endpointing": {"min_delay": DEFAULTS["endpointing_min_delay"], "max_delay": DEFAULTS["endpointing_max_delay"]},
        "interruption": {"mode": "vad", "resume_false_interruption": False},
    }
    stt = ScriptedSTT([question(i) for i in range(turns)], final_delay=STT_FINAL_DELAY)
    vad = ScriptedVAD(min_silence=DEFAULTS["vad_min_silence"])
    run = StrategyRun(strategy)
    async with ScriptedCall(agent, llm=main, stt=stt, tts=tts, vad=vad, turn_handling=turn_handling) as call:
        for _ in range(turns):
            await call.turn(speech_seconds=0.5, timeout=30)
        run.heard = call.heard
    return run


def ms(values: list[float | None]) -> dict[str, float | None]:
    return percentiles([v for v in values if v is not None], 1000)


def summarize(run: StrategyRun) -> dict[str, Any]:
    fillers = [h for h in run.heard if h.filler is not None]
    texts = [h.record.filler_text for h in run.heard]
    return {
        "first_audio_ms": ms([h.first_audio_after for h in run.heard]),
        "answer_ms": ms([h.answer_after for h in run.heard]),
        "filler_ms": ms([h.filler_after for h in fillers]),
        "turns": len(run.heard),
        "fillers": len(fillers),
        "fillers_cut_mid_word": sum(h.filler.interrupted for h in fillers if h.filler),
        "identical_fillers_on_consecutive_turns": sum(1 for a, b in zip(texts, texts[1:]) if a and a == b),
        "commit_after_speech_end_ms": ms([h.record.committed_at - h.record.stopped_speaking_at
                                          for h in run.heard if h.record.stopped_speaking_at]),
    }


def judged_by_the_answer_without_filler(runs: dict[str, StrategyRun]) -> dict[str, Any]:
    """Fillers on turns whose no-pre-response answer came late (>= 1.2 s) and early (<= 0.8 s)."""
    late = early = late_with = early_with = 0
    for plain, ours in zip(runs["none"].heard, runs["decided"].heard):
        after = plain.answer_after
        if after is None:
            continue
        if after >= 1.2:
            late, late_with = late + 1, late_with + (ours.filler is not None)
        elif after <= 0.8:
            early, early_with = early + 1, early_with + (ours.filler is not None)
    return {"late_turns": late, "late_turns_with_filler": late_with, "early_turns": early, "early_turns_with_filler": early_with,
            "late_share_with_filler": round(late_with / late, 3) if late else None,
            "early_share_with_filler": round(early_with / early, 3) if early else None}


async def benchmark(turns: int) -> dict[str, Any]:
    details: dict[str, Any] = {}
    profiles = {**PROFILES, MIXED: PROFILES["groq_like"]}
    for name, profile in profiles.items():
        runs = await asyncio.gather(*(run_strategy(name, profile, strategy, turns) for strategy in STRATEGIES))
        by_name = {run.name: run for run in runs}
        details[name] = {"strategies": {run.name: summarize(run) for run in runs},
                         "fillers_judged_by_the_plain_answer": judged_by_the_answer_without_filler(by_name),
                         "sources": list(profile.sources) + ([SLOW_MAIN] if name == MIXED else [])}
        print(f"{name}: {json.dumps(details[name]['strategies']['decided'])}", file=sys.stderr)
    return {
        "machine": machine(livekit_agents=livekit_version),
        "conditions": "2 shared cores; other sessions were running tests at the same time (load average in `load_average`)",
        "load_average": os.getloadavg(),
        "turns_per_profile": turns,
        "profiles": details,
        "method": {
            "clock": "the scripted caller's perf_counter: from its last voiced frame to the first frame of each segment played",
            "turn_handling": {"detector": "VAD endpointing standing in for the detector's 'finished'", **DEFAULTS},
            "fast_llm_starts": "with the main LLM's preemptive request (final transcript), before the commit",
            "token_interval_s": TOKEN_INTERVAL,
            "stt_final_delay_s": STT_FINAL_DELAY,
            "date": time.strftime("%Y-%m-%d"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=20, help="turns per profile and strategy")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the seed strategy's invalidated preemptive replies warn every turn
    result = asyncio.run(benchmark(args.turns))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({name: p["strategies"] for name, p in result["profiles"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
