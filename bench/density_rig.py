"""The rig of bench/density.py: livekit-server, the scripted providers and the two workers (ours
and the plain baseline), each worker confined to one core; rooms with explicit dispatch; memory
samples; the scripted standard call behind bench/results/cost.json."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from livekit import api

from bench import density_proc as proc
from tests.integration.harness import processes, services
from tests.integration.harness.processes import LOOPBACK, free_port, http_status, wait_until
from tests.integration.harness.worker import REGISTERED, WORKER_BIN, worker_env

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = (
    "What is the weather like in Paris today?",
    "How far away is the moon from the earth?",
    "Can you recommend a good book to read?",
)
MAIN_MODEL, FAST_MODEL = "llama-3.3-70b-versatile", "llama-3.1-8b-instant"
STT_PRICE_KEY = "deepgram/nova-3"  # the worker's default STT, streamed as in production
# Scripted provider latencies (seconds), from published figures in ../shared/NOTES.md: Groq warm
# streamed TTFT 8B p50 157 ms / 70B 163-200 ms; a first-audio TTS near ElevenLabs Turbo's 264 ms
# (Coval, 2026-05-04); Deepgram's live API, a final transcript 300 ms after the speech ends.
SCRIPT = {"main_ttft": 0.2, "fast_ttft": 0.15, "stt": 0.3, "tts_ttfb": 0.25}
VARIANT_ARGV = {
    "ours": [str(WORKER_BIN), "start", "--log-level", "INFO"],
    "plain": [sys.executable, "-m", "livekit.agents", "start", str(ROOT / "bench" / "density_plain.py"),
              "--log-level", "INFO"],
}
# The worker (or the plain agent) with one setting changed: what each default saves or costs.
VARIANT_ENV = {
    "ours-thread": {"AGENT_JOB_EXECUTOR": "thread"},  # every call a thread of the worker's process
    "plain-thread": {"AGENT_JOB_EXECUTOR": "thread"},
    "ours-24k": {"AGENT_AUDIO_SAMPLE_RATE": "24000"},
    "ours-no-agc": {"AGENT_AUTO_GAIN_CONTROL": "false"},
    # livekit's job memory monitor on (as by default), with a limit no call reaches
    "ours-memory-monitor": {"AGENT_JOB_MEMORY_LIMIT_MB": "65536"},
}
VARIANTS = ("ours", "plain", *VARIANT_ENV)
MAX_SESSIONS = 64  # load = sessions / 64: livekit-server keeps dispatching to the one worker


def _mean(values: list[float]) -> float | None:
    """Rounded to 0.1; None without values (no job processes: calls run as threads)."""
    return round(sum(values) / len(values), 1) if values else None


def say(message: str) -> None:
    print(f">> bench-density: {message}", flush=True)


@dataclass
class WorkerTree:
    variant: str
    process: processes.Process
    health_port: int
    metrics_port: int

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.health_port}/worker", timeout=5) as response:
            return json.load(response)


class Rig:
    def __init__(self, workdir: Path, worker_core: int, variants: list[str]) -> None:
        self.workdir, self.worker_core, self.variants = workdir, worker_core, variants
        self.log_dir = workdir / "logs"
        self.script = SCRIPT
        self.workers: dict[str, WorkerTree] = {}
        self._started: list[processes.Process] = []

    async def __aenter__(self) -> Rig:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.livekit = services.start_livekit(self.workdir, self.log_dir)
        self._started.append(self.livekit.process)
        port = free_port()
        providers = processes.start("scripted-providers", [
            sys.executable, str(ROOT / "tests" / "integration" / "harness" / "scripted_providers.py"), f"--port={port}",
            f"--model={MAIN_MODEL}={SCRIPT['main_ttft']}", f"--model={FAST_MODEL}={SCRIPT['fast_ttft']}",
            f"--fast-model={FAST_MODEL}", f"--stt={SCRIPT['stt']}", f"--tts-ttfb={SCRIPT['tts_ttfb']}",
        ], self.log_dir, cwd=ROOT)
        self._started.append(providers)
        processes.wait_for_http(f"http://{LOOPBACK}:{port}/health", providers, timeout=60)
        self.providers_url = f"http://{LOOPBACK}:{port}/v1"
        self.api = api.LiveKitAPI(self.livekit.http_url, self.livekit.api_key, self.livekit.api_secret)
        for variant in self.variants:
            self.workers[variant] = await asyncio.to_thread(self._launch, variant)
        say(f"livekit-server {self.livekit.url}, providers {self.providers_url}, workers "
            + ", ".join(f"{v} pid {w.pid} on core {proc.affinity(w.pid)}" for v, w in self.workers.items()))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.api.aclose()
        for worker in self.workers.values():
            worker.process.stop(timeout=20)
        for process in reversed(self._started):
            process.stop()

    def env(self, variant: str, **extra: str) -> dict[str, str]:
        model = services.ModelServer(self.providers_url, MAIN_MODEL, None)  # type: ignore[arg-type]
        speech = services.SpeechServer(self.providers_url, None)  # type: ignore[arg-type]
        return worker_env(
            self.livekit, model, speech, metrics_port=free_port(), health_port=free_port(),
            AGENT_NAME=f"density-{variant}", AGENT_MAX_SESSIONS=str(MAX_SESSIONS),
            AGENT_LLM_PROVIDER="groq", AGENT_LLM_MODEL=MAIN_MODEL, AGENT_LLM_BASE_URL=self.providers_url,
            AGENT_FAST_LLM_PROVIDER="groq", AGENT_FAST_LLM_MODEL=FAST_MODEL, AGENT_FAST_LLM_BASE_URL=self.providers_url,
            AGENT_STT_PROVIDER="deepgram", AGENT_STT_BASE_URL=f"{self.providers_url}/listen",
            AGENT_TTS_MODEL="tts-1", AGENT_LLM_TIMEOUT="10", GROQ_API_KEY="scripted-stand-in",
            AGENT_PRERESPONSE_ENABLED="false" if variant.startswith("plain") else "true",
            **VARIANT_ENV.get(variant, {}),
            **extra,
        )

    def _launch(self, variant: str) -> WorkerTree:
        env = self.env(variant)
        argv = ["taskset", "--cpu-list", str(self.worker_core), *VARIANT_ARGV[variant.split("-")[0]]]  # "ours-24k" runs "ours"
        process = processes.start(f"worker-{variant}", argv, self.log_dir, env=env, cwd=ROOT)
        self._started.append(process)
        worker = WorkerTree(variant, process, int(env["AGENT_HEALTH_PORT"]), int(env["AGENT_METRICS_PORT"]))
        wait_until(lambda: http_status(f"http://{LOOPBACK}:{worker.health_port}/") == 200
                   and REGISTERED in process.log_text(),
                   f"the {variant} worker to register with livekit-server", process, 120)
        return worker

    async def create_room(self, room: str, variant: str) -> None:
        """The room, dispatched explicitly to the variant's worker (both are registered)."""
        await self.api.room.create_room(api.CreateRoomRequest(
            name=room, empty_timeout=30, agents=[api.RoomAgentDispatch(agent_name=f"density-{variant}")]))

    async def wait_idle(self, worker: WorkerTree, timeout: float = 60.0) -> None:
        """Until the worker's calls have ended (their job processes shut down)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (await asyncio.to_thread(worker.status)).get("active_jobs", 0) == 0:  # JSON omits a zero
                return
            await asyncio.sleep(0.5)
        say(f"{worker.variant}: jobs still active {timeout:.0f} s after the callers left")

    async def sample_memory(self, worker: WorkerTree, n: int, after: float = 8.0) -> dict:
        """The tree's memory `after` seconds into the window: per process, and per call."""
        await asyncio.sleep(after)
        rows = []
        for pid in proc.tree(worker.pid):
            memory = proc.memory(pid)
            if memory is not None:
                rows.append({"pid": pid, "ppid": proc.parent(pid), "cmd": proc.cmdline(pid)[:80],
                             "pss_mib": round(memory.pss_mib, 1), "unique_mib": round(memory.unique_mib, 1)})
        jobs = [row for row in rows if proc.is_job_process(row["pid"])]
        active = sorted(jobs, key=lambda row: row["unique_mib"], reverse=True)[:n]
        total_pss = sum(row["pss_mib"] for row in rows)
        pss_mean = _mean([row["pss_mib"] for row in active])
        return {
            "tree_pss_mib": round(total_pss, 1),
            "job_processes": len(jobs),  # none when the calls run as threads (AGENT_JOB_EXECUTOR=thread)
            "job_unique_mib_mean": _mean([row["unique_mib"] for row in active]),
            "job_pss_mib_mean": pss_mean,
            "mb_per_call": None if pss_mean is None else round(pss_mean * 1.048576, 1),
            "tree_pss_mb_per_call": round(total_pss * 1.048576 / n, 1),
            "processes": rows,
        }

    async def standard_call(self, samples: list) -> dict:
        from bench.density_cost import standard_call

        return await standard_call(self, samples)
