"""Keyless demo: real livekit audio-path sessions with scripted stand-ins for the cloud providers.

The scripted models are priced as the Groq/Deepgram/OpenAI models they stand in for, with
latencies in the range of published figures (see bench/latency.py), so the table shows what a
caller would hear and what it would cost:

    python -m agent_worker.demo --turns 4      (or: agent-worker demo, make demo-offline)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from dataclasses import dataclass

from .agent import PreResponseAgent
from .call import ScriptedCall
from .config import DEFAULT_INSTRUCTIONS
from .metrics import SessionRecorder
from .preresponse import PreResponseOptions
from .pricing import PriceTable
from .scripted import ScriptedLLM, ScriptedSTT, ScriptedTTS, ScriptedVAD, last_user_text

QUESTIONS = [
    "what is the weather like in Paris today",
    "can you book me a table for two tonight",
    "thanks",
    "how long does it take to fly to Tokyo",
    "and what about the time difference there",
]


def _answer(chat_ctx: object) -> str:
    question = last_user_text(chat_ctx)  # type: ignore[arg-type]
    if len(question.split()) < 3:
        return "You're welcome."
    return f"Here is what I found about {question.split()[-1]}."


@dataclass
class Providers:
    main: ScriptedLLM
    fast: ScriptedLLM
    stt: ScriptedSTT
    tts: ScriptedTTS


def scripted_providers(questions: list[str], *, seed: int = 7) -> Providers:
    """Stand-ins named and priced as the production defaults, with Groq-like latencies."""
    rng = random.Random(seed)
    return Providers(
        main=ScriptedLLM(_answer, model="llama-3.3-70b-versatile", provider="groq",
                         ttft=lambda: rng.lognormvariate(-1.2, 0.4), token_interval=0.004, prompt_tokens=420),
        fast=ScriptedLLM("Let me check.", model="llama-3.1-8b-instant", provider="groq",
                         ttft=lambda: rng.lognormvariate(-2.1, 0.4), token_interval=0.0015, prompt_tokens=160),
        stt=ScriptedSTT(questions, model="nova-3", provider="deepgram", final_delay=0.08),
        tts=ScriptedTTS(model="tts-1", provider="openai", ttfb=lambda: rng.lognormvariate(-1.15, 0.3), seconds_per_char=0.06),
    )


async def run_demo(turns: int, out: object = sys.stdout) -> dict[str, object]:
    questions = (QUESTIONS * (turns // len(QUESTIONS) + 1))[:turns]
    providers = scripted_providers(questions)
    recorder = SessionRecorder(PriceTable(), room="demo")
    for role, model in (("main", providers.main), ("fast", providers.fast)):
        recorder.watch_llm(model, role=role, provider=model.provider, model=model.model)
    recorder.watch_stt(providers.stt, provider=providers.stt.provider, model=providers.stt.model)
    recorder.watch_tts(providers.tts, provider=providers.tts.provider, model=providers.tts.model)
    agent = PreResponseAgent(instructions=DEFAULT_INSTRUCTIONS, fast_llm=providers.fast, options=PreResponseOptions(), observer=recorder)
    call = ScriptedCall(agent, llm=providers.main, stt=providers.stt, tts=providers.tts, vad=ScriptedVAD())
    print(f"{'turn':<4} {'caller said':<44} {'filler':>8} {'answer':>8}  {'pre-response':<22} {'tokens':>10} {'cost USD':>11}", file=out)
    recorder.start()
    async with call:
        call.session.on("conversation_item_added", lambda ev: recorder.on_conversation_item(ev.item))
        for index in range(turns):
            before = recorder.summary()
            record = await call.turn(speech_seconds=0.6)
            after = recorder.summary()
            tokens = _llm_tokens(after) - _llm_tokens(before)
            cost = after["cost_usd"]["total"] - before["cost_usd"]["total"]  # type: ignore[index]
            heard = call.heard[-1]
            filler_ms, answer_ms = _ms(heard.filler_after), _ms(heard.answer_after)
            spoken = f"{record.filler_outcome}: {record.filler_text or '-'}"
            print(f"{index + 1:<4} {record.transcript[:44]:<44} {filler_ms:>8} {answer_ms:>8}  {spoken[:22]:<22} {tokens:>10} {cost:>11.7f}", file=out)
    summary = recorder.finish("demo finished")
    print(f"\nfiller/answer: ms from the end of the caller's speech to the first frame the caller heard of each. "
          f"Session total: {summary['cost_usd']['total']:.7f} USD.", file=out)  # type: ignore[index]
    return summary


def _llm_tokens(summary: dict[str, object]) -> int:
    return sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in summary["usage"])  # type: ignore[union-attr,attr-defined]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-worker demo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("agent_worker.session").setLevel(logging.INFO)
    asyncio.run(run_demo(args.turns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
