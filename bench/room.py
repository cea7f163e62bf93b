"""What a caller hears over real WebRTC, with and without the pre-response: `make bench-room`
(needs `make testbed`; not part of `make test`). Writes bench/results/room.json.

The real `agent-worker start` registers with livekit-server; a caller (LiveKit rtc, espeak-ng
voice) joins a room and asks spoken questions; the worker hears them through the local speech
server's streaming STT (Deepgram's live API), answers with the test bed's Ollama model and speaks through its TTS. Measured on the
caller's clock, from the end of its speech:

- first audio: the first agent audio heard (the filler when there is one);
- answer: the first audio of the answer itself.

Strategies, run in alternating rounds (one call of `--questions` turns each) so that both see the
same machine: `preresponse` (the worker as shipped) and `no_preresponse`
(AGENT_PRERESPONSE_ENABLED=false). The test bed has one small CPU model for both roles, so the
main LLM is reached through a proxy that answers `--main-delay` seconds later, standing in for a
70B beside an 8B (as in the tests and the demo). Everything runs in a loopback-only network
namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, percentiles  # noqa: E402
from tests.integration.harness import network, processes, services  # noqa: E402
from tests.integration.harness.caller import HeardTurn, call  # noqa: E402
from tests.integration.harness.worker import VOICE_MAX_TOKENS, launch_worker, slower_model, voice_model  # noqa: E402

QUESTIONS = (
    "What is the weather like in Paris today?",
    "How far away is the moon from the earth?",
    "Can you recommend a good book to read?",
)
STRATEGIES = {
    "preresponse": {},
    "no_preresponse": {"AGENT_PRERESPONSE_ENABLED": "false"},
}


def say(message: str) -> None:
    print(f">> bench-room: {message}", flush=True)


def summary(turns: list[HeardTurn]) -> dict:
    first = [t.first_audio_ms for t in turns if t.first_audio_ms is not None]
    answer = [t.answer_ms for t in turns if t.answer_ms is not None]
    return {
        "turns": len(turns),
        "pods_first_turn_first_audio_ms": turns[0].first_audio_ms if turns else None,
        "timed_out": sum(t.timed_out for t in turns),
        "with_filler": sum(t.filler_start is not None for t in turns),
        "first_audio_ms": {**percentiles(first), "n": len(first)},
        "answer_ms": {**percentiles(answer), "n": len(answer)},
        "samples": [{"question": t.question, "first_audio_ms": t.first_audio_ms, "filler_ms": t.filler_ms,
                     "answer_ms": t.answer_ms, "filler": t.filler_text, "answer": t.answer_text}
                    for t in turns],
    }


async def one_call(livekit: services.LiveKit, model: services.ModelServer, speech: services.SpeechServer,
                   log_dir: Path, name: str, env: dict[str, str], questions: list[str]) -> list[HeardTurn]:
    # Started and stopped on this thread: the harness ties a program's life to its starting thread.
    worker = launch_worker(functools.partial(processes.start, log_dir=log_dir), livekit, model, speech,
                           name=name, **env)
    try:
        return await call(livekit.url, livekit.api_key, livekit.api_secret, f"bench-{uuid.uuid4().hex[:8]}",
                          questions, turn_timeout=60.0)
    finally:
        worker.stop()


async def run(args: argparse.Namespace, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    log_dir = workdir / "logs"
    livekit = services.start_livekit(workdir, log_dir)
    model_server = services.start_ollama(workdir, log_dir)
    speech = services.start_speech_server(log_dir)
    try:
        model = await asyncio.to_thread(voice_model, model_server)
        say(f"livekit-server {livekit.url}, Ollama {model_server.base_url} ({model}), speech {speech.base_url}")
        turns: dict[str, list[HeardTurn]] = {name: [] for name in STRATEGIES}
        questions = list(QUESTIONS[: args.questions])
        async with slower_model(model_server.base_url, args.main_delay) as main_base_url:
            for round_ in range(args.rounds):
                order = list(STRATEGIES) if round_ % 2 == 0 else list(reversed(STRATEGIES))
                for strategy in order:
                    # One worker per call, as a pod's successive calls each get a fresh job
                    # process: a strategy's workers share the pod's folder (fillers, LLM times).
                    env = {"AGENT_LLM_MODEL": model, "AGENT_LLM_BASE_URL": main_base_url,
                           "AGENT_FAST_LLM_MODEL": model, "AGENT_PRERESPONSE_CACHE_DIR": str(workdir / f"pod-{strategy}"),
                           **STRATEGIES[strategy]}
                    heard = await one_call(livekit, model_server, speech, log_dir,
                                           f"worker-{strategy}-{round_}", env, questions)
                    turns[strategy] += heard
                    say(f"round {round_ + 1}/{args.rounds} {strategy}: first audio "
                        f"{[t.first_audio_ms for t in heard]} ms, answer {[t.answer_ms for t in heard]} ms")
    finally:
        for process in (speech.process, model_server.process, livekit.process):
            process.stop()

    results = {name: summary(strategy_turns) for name, strategy_turns in turns.items()}
    ours, baseline = results["preresponse"], results["no_preresponse"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    return {
        "machine": machine(
            livekit_server="v1.13.5 (--dev, loopback)", ollama="v0.17.4 (CPU)",
            model=f"gemma-3-270m Q4_K_M ({model}: greedy, at most {VOICE_MAX_TOKENS} tokens)",
            livekit_agents=metadata.version("livekit-agents"),
            speech="espeak-ng TTS (OpenAI's API), pocketsphinx streaming STT (Deepgram's live API; testbed/speech_server.py)",
            shared="every program shares the machine's cores: STT, the model and WebRTC compete",
        ),
        "method": {
            "clock": "caller's time.monotonic(), from the end of its spoken question to the first agent audio "
                     "frame above the silence threshold",
            "answer_after_a_filler": "the start of the burst of audio (after 0.25 s of silence) under way when the "
                                     "answer's transcript arrived, or the next one: transcripts reach the caller "
                                     "70-160 ms after the audio they go with (tests/integration/harness/caller.py)",
            "main_model_delay_s": args.main_delay,
            "rounds": args.rounds,
            "questions_per_call": len(questions),
            "order": "strategies alternate which goes first in each round",
            "pod": "a new worker process for each call, all of a strategy's sharing one cache folder (AGENT_PRERESPONSE_"
                   "CACHE_DIR), as a pod's successive calls do: the stock phrases and the main LLM's recent times to "
                   "first token; the pod's very first turn knows neither (pods_first_turn_first_audio_ms)",
            "stt": "Deepgram's live API (livekit-plugins-deepgram) at the speech server: pocketsphinx decoding as the "
                   "caller speaks, final after 0.3 s of non-speech",
        },
        "strategies": results,
        "ratios": {
            "first_audio_p50_preresponse_over_none": ratio(ours["first_audio_ms"]["p50"],
                                                           baseline["first_audio_ms"]["p50"]),
            "answer_p50_preresponse_over_none": ratio(ours["answer_ms"]["p50"], baseline["answer_ms"]["p50"]),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=8, help="calls per strategy (default 8)")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), choices=range(1, len(QUESTIONS) + 1),
                        help=f"spoken questions per call (default {len(QUESTIONS)})")
    parser.add_argument("--main-delay", type=float, default=2.0,
                        help="seconds the main model answers later than the fast one (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "room.json")
    parser.add_argument("--keep", type=Path, help="keep the programs' logs in this folder")
    args = parser.parse_args()
    if os.environ.get("TESTBED_HOST_NETWORK") != "1" and not network.in_closed_network():
        network.isolate_to_loopback()
    started = time.monotonic()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-room-"))
    results = asyncio.run(run(args, workdir))
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    if args.keep is None and not any(result["timed_out"] for result in results["strategies"].values()):
        shutil.rmtree(workdir)
    else:
        say(f"the programs' logs are in {workdir / 'logs'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for name, result in results["strategies"].items():
        say(f"{name}: first audio p50 {result['first_audio_ms']['p50']} ms p95 {result['first_audio_ms']['p95']} ms, "
            f"answer p50 {result['answer_ms']['p50']} ms, {result['with_filler']}/{result['turns']} with a filler, "
            f"{result['timed_out']} timed out")
    say(f"ratios {results['ratios']}; wrote {args.out}")


if __name__ == "__main__":
    main()
