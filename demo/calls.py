"""The voice half: the real `agent-worker start` process configured as the operator configures its
pods, a scripted caller asking spoken questions through livekit-server, and the per-turn figures."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.integration.harness import processes
from tests.integration.harness.caller import HeardTurn, call
from tests.integration.harness.services import LiveKit
from tests.integration.harness.worker import worker_env

from .bed import Bed
from .shell import say
from .turns import Snapshot, Turn, heard, per_turn, snapshot

QUESTIONS = (
    "What is the capital of France?",
    "How far away is the moon?",
    "Can you recommend a good book to read?",
)


class Worker:
    """`agent-worker start` with the test bed's environment overlaid by the VoiceAgent's ConfigMap."""

    def __init__(self, bed: Bed, config: Mapping[str, str], log_dir: Path) -> None:
        self.metrics_port, self.health_port = processes.free_port(), processes.free_port()
        env = worker_env(bed.livekit, bed.model, bed.speech, metrics_port=self.metrics_port,
                         health_port=self.health_port)
        env.update(config)
        env.update(AGENT_METRICS_PORT=str(self.metrics_port), AGENT_HEALTH_PORT=str(self.health_port))
        self.process = processes.start("agent-worker", [
            str(processes.REPO_ROOT / ".venv" / "bin" / "agent-worker"), "start",
        ], log_dir, env=env)

    @property
    def metrics_address(self) -> str:
        return f"{processes.LOOPBACK}:{self.metrics_port}"

    def wait_registered(self, timeout: float = 120.0) -> None:
        processes.wait_until(lambda: "registered worker" in self.process.log_path.read_text(errors="replace"),
                             "the worker to register with livekit-server", self.process, timeout=timeout)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics_address}/metrics", timeout=5) as response:
            return response.read().decode()

    def stop(self) -> None:
        self.process.stop(timeout=20)


class Sampler:
    """Scrapes the worker's /metrics every `interval` seconds, stamped with time.monotonic()."""

    def __init__(self, worker: Worker, interval: float = 0.25) -> None:
        self._worker, self._interval = worker, interval
        self.samples: list[tuple[float, Snapshot]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self.take()
        self._thread.start()
        return self

    def take(self) -> None:
        taken = time.monotonic()
        self.samples.append((taken, snapshot(self._worker.scrape())))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.take()
            except OSError:
                pass

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def ask(livekit: LiveKit, worker: Worker, questions=QUESTIONS, room: str = "demo-call") -> list[Turn]:
    """One caller asks `questions` in one room; returns each turn as heard and as measured."""
    say(f"caller joins room {room!r} and asks {len(questions)} spoken questions")
    with Sampler(worker) as sampler:
        heard_turns: list[HeardTurn] = await call(livekit.url, livekit.api_key, livekit.api_secret, room,
                                                  list(questions), turn_timeout=60.0)
        await asyncio.sleep(2.0)  # the last turn's usage events arrive after its audio
        sampler.take()
    stages = per_turn(sampler.samples, [turn.speech_end for turn in heard_turns])
    return [heard(turn, stage) for turn, stage in zip(heard_turns, stages)]
