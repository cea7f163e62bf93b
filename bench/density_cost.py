"""Model cost per call-minute from the worker's own metrics (bench/results/cost.json).

One scripted standard call on the `ours` worker of bench/density.py: the worker as shipped, its LLMs
named as Groq's llama-3.3-70b-versatile (main) and llama-3.1-8b-instant (pre-response), TTS as
OpenAI tts-1, all answered by the scripted stand-ins. The cost is what the worker itself counts in
`agent_worker_cost_usd_total` at its price table (agent_worker.pricing.DEFAULT_PRICES), read from
its metrics endpoint before and after the call. Token counts come from the stand-in's usage (an
estimate: four prompt characters a token), so the LLM part is indicative; characters (TTS) and
audio minutes (STT) are exact.

STT: Deepgram's streaming API bills every minute of audio streamed, and livekit streams the
caller's track for the whole call; the worker counts the audio it streamed (to the stand-in's
Deepgram live endpoint). The call's minutes at deepgram/nova-3's price are shown beside it as a check.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from agent_worker.pricing import DEFAULT_PRICES
from bench.density_rig import QUESTIONS, STT_PRICE_KEY, Rig
from tests.integration.harness.caller import joined
from tests.integration.harness.processes import LOOPBACK

STANDARD_TURNS = 6
COST_METRIC = "agent_worker_cost_usd"
# Published bundled prices of voice-agent platforms, only those with a source we recorded.
REFERENCE_PRICES = [
    {"platform": "Deepgram Voice Agent API", "usd_per_minute": round(4.50 / 60, 4),
     "what": "$4.50 per hour, STT + LLM + TTS bundled",
     "source": "shared/NOTES.md (checked 2026-12-02), deepgram.com/pricing"},
    {"platform": "Vapi", "usd_per_minute": 0.05,
     "what": "platform fee only; STT, model, voice and telephony charged on top at cost",
     "source": "https://www.sigmamind.ai/blog/voice-ai-api-pricing-true-cost-per-minute-guide (citing Vapi's docs); "
               "shared/NOTES.md"},
]
NOT_VERIFIED = "Retell and Bland per-minute prices: not verified (no stored source with a current figure)"


def cost_by_part(metrics_url: str) -> dict[tuple[str, str, str], float]:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    parts: dict[tuple[str, str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        if family.name != COST_METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                parts[(labels["provider"], labels["model"], labels["kind"])] += sample.value
    return parts


async def standard_call(rig: Rig, samples: list) -> dict:
    worker = rig.workers["ours"]
    metrics_url = f"http://{LOOPBACK}:{worker.metrics_port}/metrics"
    room = f"cost-standard-{int(time.time())}"
    await rig.create_room(room, "ours")
    before = await asyncio.to_thread(cost_by_part, metrics_url)
    turns = []
    async with joined(rig.livekit.url, rig.livekit.api_key, rig.livekit.api_secret, room,
                      join_timeout=120.0) as conversation:
        started = time.monotonic()
        for index in range(STANDARD_TURNS):
            turns.append(await conversation.ask(QUESTIONS[index % len(QUESTIONS)], turn_timeout=30.0,
                                                samples=samples[index % len(samples)]))
        minutes = (time.monotonic() - started) / 60
    await rig.wait_idle(worker)
    await asyncio.sleep(2.0)  # the job process's last counters reach the exporter
    after = await asyncio.to_thread(cost_by_part, metrics_url)
    spent = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    llm = {f"{provider}/{model} {kind}": round(usd / minutes, 6)
           for (provider, model, kind), usd in sorted(spent.items()) if kind in ("input", "cached_input", "output") and usd}
    tts = sum(usd for (_, _, kind), usd in spent.items() if kind == "characters")
    stt = sum(usd for (_, _, kind), usd in spent.items() if kind == "audio")
    call_minutes_at_stt_price = (DEFAULT_PRICES[STT_PRICE_KEY].per_audio_minute or 0.0) * minutes
    total = sum(llm.values()) + (tts + stt) / minutes
    return {
        "method": (__doc__ or "").strip(),
        "standard_call": {"turns": len(turns), "answered": sum(t.answer_start is not None for t in turns),
                          "with_filler": sum(t.filler_start is not None for t in turns),
                          "call_minutes": round(minutes, 2)},
        "usd_per_call_minute": {
            "total": round(total, 5),
            "llm": llm,
            "tts openai/tts-1": round(tts / minutes, 5),
            f"stt {STT_PRICE_KEY} (streamed audio)": round(stt / minutes, 5),
            "stt at the call's minutes (a check, not in total)": round(call_minutes_at_stt_price / minutes, 5),
        },
        "prices": {key: DEFAULT_PRICES[key].model_dump(exclude_none=True) for key in (
            "groq/llama-3.3-70b-versatile", "groq/llama-3.1-8b-instant", "openai/tts-1", STT_PRICE_KEY)},
        "reference_platform_prices": REFERENCE_PRICES,
        "not_verified": NOT_VERIFIED,
    }
