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
from tests.integration.harness.worker import Worker, launch_worker

from .bed import Bed
from .shell import say
from .turns import Snapshot, Turn, heard, per_turn, snapshot

QUESTIONS = (
    "What is the capital of France?",
    "How far away is the moon?",
    "Can you recommend a good book to read?",
)


def start_worker(bed: Bed, config: Mapping[str, str], log_dir: Path) -> Worker:
    """`agent-worker start --dev` with the VoiceAgent's ConfigMap over the test bed's environment.

    `--dev` is livekit's development mode: no idle job processes kept warm and no CPU-load limit
    on the jobs taken. Here the worker shares two cores with the model, the cluster and the
    callers; in production it stops taking jobs at 70 % CPU, and the operator adds workers."""
    def start(name: str, argv: list[str], env: dict[str, str]) -> processes.Process:
        return processes.start(name, [*argv, "--dev"], log_dir, env=env)

    overrides = {key: value for key, value in config.items() if key not in ("AGENT_METRICS_PORT", "AGENT_HEALTH_PORT")}
    # The worker's capacity is the operator's business here (rooms per worker). livekit judges it by
    # CPU, read from the cgroup, which on this machine is the whole machine's, other programs'
    # included; NUM_CPUS (livekit's setting for misreported quotas) and no threshold keep it open.
    overrides.update(AGENT_LOAD_THRESHOLD="inf", NUM_CPUS="64")
    return launch_worker(start, bed.livekit, bed.model, bed.speech, timeout=120.0, **overrides)


class Sampler:
    """Scrapes the worker's /metrics every `interval` seconds, stamped with time.monotonic()."""

    def __init__(self, worker: Worker, interval: float = 0.5) -> None:
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
        with urllib.request.urlopen(self._worker.metrics_url, timeout=5) as response:
            self.samples.append((taken, snapshot(response.read().decode())))

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
                                                  list(questions), turn_timeout=60.0, join_timeout=60.0)
        await asyncio.sleep(2.0)  # the last turn's usage events arrive after its audio
        sampler.take()
    stages = per_turn(sampler.samples, [turn.speech_end for turn in heard_turns])
    return [heard(turn, stage) for turn, stage in zip(heard_turns, stages)]
