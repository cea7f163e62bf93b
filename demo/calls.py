"""The voice half: a scripted caller asking spoken questions through livekit-server, answered by a
worker pod on the real node, and the per-turn figures from that pod's /metrics."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Sequence

from tests.integration.harness.caller import HeardTurn, call
from tests.integration.harness.services import LiveKit

from .shell import say
from .turns import Snapshot, Turn, combined, heard, per_turn, snapshot

QUESTIONS = (
    "What is the capital of France?",
    "How far away is the moon?",
    "Can you recommend a good book to read?",
)


class Sampler:
    """Scrapes the worker pods' /metrics every `interval` seconds, summed over the pods and stamped
    with time.monotonic(). A pod that does not answer one scrape is left out of it."""

    def __init__(self, metrics_urls: Sequence[str], interval: float = 0.5) -> None:
        self._urls, self._interval = list(metrics_urls), interval
        self.samples: list[tuple[float, Snapshot]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self.take()
        self._thread.start()
        return self

    def take(self) -> None:
        taken = time.monotonic()
        scrapes = []
        for url in self._urls:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    scrapes.append(snapshot(response.read().decode()))
            except OSError:
                pass
        if scrapes:
            self.samples.append((taken, combined(scrapes)))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.take()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def ask(livekit: LiveKit, metrics_urls: Sequence[str], questions=QUESTIONS, room: str = "demo-call") -> list[Turn]:
    """One caller asks `questions` in one room; returns each turn as heard and as the worker pods
    at `metrics_urls` measured it."""
    say(f"caller joins room {room!r} and asks {len(questions)} spoken questions")
    with Sampler(metrics_urls) as sampler:
        if not sampler.samples:
            raise RuntimeError(f"no worker pod answered at {', '.join(metrics_urls)}")
        heard_turns: list[HeardTurn] = await call(livekit.url, livekit.api_key, livekit.api_secret, room,
                                                  list(questions), turn_timeout=60.0, join_timeout=90.0)
        await asyncio.sleep(2.0)  # the last turn's usage events arrive after its audio
        await asyncio.to_thread(sampler.take)
    stages = per_turn(sampler.samples, [turn.speech_end for turn in heard_turns])
    return [heard(turn, stage) for turn, stage in zip(heard_turns, stages)]
