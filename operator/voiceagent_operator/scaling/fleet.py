"""One observation of the whole fleet every VOICEAGENT_OBSERVE_SECONDS, on its own cadence.

Each VoiceAgent this replica reconciles registers where its rooms are read (`Target`). Every interval
the observer reads the rooms of all of them at once: one Prometheus query per Prometheus URL (usually
one for the whole fleet), or one scrape per ready pod through the operator's one HTTP session, at most
`concurrency` in flight and each bounded by the scrape timeout. It then asks `on_observed` whether that
VoiceAgent needs a reconciliation now (its rooms changed, or the policy would scale) and wakes it; so a
change in rooms is acted on within one interval, whatever the resync period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp

from .observe import PodRooms, ReadyPod, new_session, query_prometheus, rooms_from_query, scrape_pods

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """Where one VoiceAgent's active rooms are read."""

    namespace: str
    name: str
    metrics_port: int
    prometheus_url: str | None = None


# (namespace, VoiceAgent name) -> its ready worker pods, from the operator's cache.
PodsOf = Callable[[str, str], list[ReadyPod]]
# (uid, rooms) -> whether that VoiceAgent needs a reconciliation now.
OnObserved = Callable[[str, PodRooms], bool]


class Fleet:
    def __init__(self, interval: float, timeout: float, concurrency: int) -> None:
        self.interval, self.timeout, self.concurrency = interval, timeout, concurrency
        self.targets: dict[str, Target] = {}
        self.wakes: dict[str, asyncio.Event] = {}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, pods_of: PodsOf, on_observed: OnObserved) -> None:
        """Observe from now on (once: later calls do nothing)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(pods_of, on_observed), name="voiceagent fleet observer")

    def register(self, uid: str) -> asyncio.Event:
        """A VoiceAgent this replica now reconciles; the event is set when it should reconcile."""
        return self.wakes.setdefault(uid, asyncio.Event())

    def aim(self, uid: str, target: Target) -> None:
        if uid in self.wakes:
            self.targets[uid] = target

    def unregister(self, uid: str) -> None:
        self.targets.pop(uid, None)
        self.wakes.pop(uid, None)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session(self.timeout, self.concurrency)
        return self._session

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._session is not None:
            await self._session.close()

    async def observe_one(self, target: Target, pods: list[ReadyPod]) -> PodRooms:
        """One VoiceAgent's rooms now (its first reconciliation, before the next fleet observation)."""
        if not pods:
            return PodRooms({}, ())
        if target.prometheus_url:
            return rooms_from_query(await query_prometheus(self.session, target.prometheus_url), target.namespace, pods)
        return await scrape_pods(self.session, pods, target.metrics_port)

    async def observe_all(self, pods_of: PodsOf) -> dict[str, PodRooms]:
        targets = dict(self.targets)
        pods = {uid: pods_of(t.namespace, t.name) for uid, t in targets.items()}
        urls = {t.prometheus_url for t in targets.values() if t.prometheus_url}
        answers = dict(zip(urls, await asyncio.gather(*(query_prometheus(self.session, url) for url in urls))))
        scraped = [uid for uid, t in targets.items() if not t.prometheus_url]
        scrapes = await asyncio.gather(*(scrape_pods(self.session, pods[uid], targets[uid].metrics_port) for uid in scraped))
        observed = dict(zip(scraped, scrapes))
        for uid, target in targets.items():
            if target.prometheus_url:
                observed[uid] = rooms_from_query(answers[target.prometheus_url], target.namespace, pods[uid])
        return observed

    async def run(self, pods_of: PodsOf, on_observed: OnObserved) -> None:
        """Observe, wake the VoiceAgents that need it, wait out the rest of the interval; forever."""
        while True:
            started = time.monotonic()
            try:
                for uid, rooms in (await self.observe_all(pods_of)).items():
                    if uid in self.wakes and on_observed(uid, rooms):
                        self.wakes[uid].set()
            except Exception:  # one bad observation must not end observing
                log.exception("observing the fleet's active rooms failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
