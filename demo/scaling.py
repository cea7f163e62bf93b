"""Several callers at once: the operator sees their rooms through Prometheus and scales the
VoiceAgent's Deployment up, a second worker pod starts on the node and Prometheus finds it; when
the rooms end the operator waits out the scale-down stabilization window and the pod goes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from tests.integration.harness.caller import Conversation, joined
from tests.integration.harness.services import LiveKit

from .cluster import Cluster, Windows
from .monitoring import Prometheus
from .shell import say

LOAD_QUESTION = "What time is it in Tokyo right now?"
SCALE_UP_TIMEOUT = 300.0  # from the rooms opening to the new pods Ready: a worker pod starts in about a minute here


@dataclass
class ScaleResult:
    scaled_up: bool
    scaled_down: bool
    peak_rooms: int
    peak_desired: int
    peak_pods: int
    down_after: float | None  # seconds from the last room ending to the scale-down decision


async def _poll(fetch, done, what: str, timeout: float):
    """`fetch()` (a short blocking call, on a thread) every second until `done` holds for its value,
    which it returns; TimeoutError after `timeout` s. Short calls, so that Ctrl-C never waits long
    for a thread."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(fetch)
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen in {timeout:.0f} s (last seen: {value})")
        await asyncio.sleep(1.0)


async def _join(stack: contextlib.AsyncExitStack, livekit: LiveKit, room: str) -> Conversation | BaseException:
    try:
        return await stack.enter_async_context(joined(livekit.url, livekit.api_key, livekit.api_secret, room,
                                                      join_timeout=90.0))
    except Exception as error:
        return error


async def _watch_up(cluster: Cluster, start_desired: int) -> tuple[int, int, int, bool]:
    """Polls the VoiceAgent while the rooms are open until the operator has scaled up and as many
    worker pods are ready as it wants (or SCALE_UP_TIMEOUT); returns the peaks and whether it scaled."""
    peak_rooms, peak_desired, peak_pods, scaled_up = 0, start_desired, 1, False
    deadline = time.monotonic() + SCALE_UP_TIMEOUT
    while time.monotonic() < deadline:
        status = await asyncio.to_thread(cluster.status)
        rooms, desired = status.get("activeRooms", 0), status.get("desiredReplicas", start_desired)
        if rooms > peak_rooms or desired > peak_desired:
            say(f"operator observes {rooms} active rooms -> desired replicas {desired}")
        peak_rooms, peak_desired = max(peak_rooms, rooms), max(peak_desired, desired)
        if desired > start_desired and not scaled_up:
            scaled_up = True
            await asyncio.to_thread(cluster.get_va)
            await asyncio.to_thread(cluster.events, "ScaledUp")
            say("the Deployment's new worker pod starts on the node")
        if scaled_up:
            peak_pods = max(peak_pods, len(await asyncio.to_thread(cluster.worker_pods)))
            if peak_pods >= peak_desired:
                break
        await asyncio.sleep(1.0)
    return peak_rooms, peak_desired, peak_pods, scaled_up


async def _show_targets(prometheus: Prometheus, workers: int) -> None:
    """What Prometheus scrapes, once it has scraped `workers` worker pods (or after 20 s)."""
    def scraped(targets) -> bool:
        return sum(t.job == "agent-worker" and t.health == "up" for t in targets) >= workers

    try:
        targets = await _poll(prometheus.targets, scraped, f"Prometheus to scrape {workers} worker pods", 20)
    except TimeoutError:
        targets = await asyncio.to_thread(prometheus.targets)
    say("Prometheus scrapes the pods it found through the apiserver: " + "; ".join(f"{t.job} {t.pod} {t.address} {t.health}" for t in targets))


async def show_scaling(cluster: Cluster, prometheus: Prometheus, livekit: LiveKit, rooms: int,
                       windows: Windows) -> ScaleResult:
    start_desired = (await asyncio.to_thread(cluster.status)).get("desiredReplicas", 1)
    say(f"{rooms} callers open rooms at once (target {windows.target_rooms} room per worker pod, "
        f"max {windows.max_replicas} pods); Prometheus scrapes the worker pods every 2 s")
    async with contextlib.AsyncExitStack() as open_rooms:
        joins = await asyncio.gather(*(_join(open_rooms, livekit, f"demo-load-{n}") for n in range(1, rooms + 1)))
        callers = [caller for caller in joins if isinstance(caller, Conversation)]
        failures = [error for error in joins if not isinstance(error, Conversation)]
        say(f"{len(callers)} rooms open, each with an agent from the worker pod"
            + (f" ({len(failures)} callers failed to join: {failures[0]})" if failures else ""))
        questions = asyncio.gather(*(caller.ask(LOAD_QUESTION, turn_timeout=60.0) for caller in callers),
                                   return_exceptions=True)
        peak_rooms, peak_desired, peak_pods, scaled_up = await _watch_up(cluster, start_desired)
        if scaled_up:
            await asyncio.to_thread(cluster.get_pods)
            await _show_targets(prometheus, peak_pods)
        answers = await questions
    ended = time.monotonic()
    unanswered = [answer for answer in answers if isinstance(answer, BaseException) or answer.timed_out]
    say(f"all {rooms} rooms ended" + (f" ({len(unanswered)} load questions unanswered)" if unanswered else ""))
    if not scaled_up:
        return ScaleResult(False, False, peak_rooms, peak_desired, peak_pods, None)
    try:
        await _poll(cluster.status, lambda s: s.get("activeRooms", 0) == 0, "no active rooms", 30)
    except TimeoutError as error:
        say(str(error))
    await asyncio.to_thread(cluster.get_va)
    say(f"no rooms now; the operator scales down only to the highest recommendation of the last "
        f"scaleDownStabilizationSeconds={windows.scale_down_seconds}")
    try:
        status = await _poll(cluster.status, lambda s: s.get("desiredReplicas", 0) <= 1,
                             "a scale-down to minReplicas", windows.scale_down_seconds + 45)
    except TimeoutError:
        reason = await asyncio.to_thread(cluster.last_operator_warning)
        say(f"no scale-down within {windows.scale_down_seconds + 45} s; the operator's last warning: {reason or '(none)'}")
        return ScaleResult(True, False, peak_rooms, peak_desired, peak_pods, None)
    down_after = time.monotonic() - ended
    say(f"back to {status.get('desiredReplicas')} worker {down_after:.0f}s after the last room ended "
        f"(each step down only once the window holds no higher recommendation)")
    await asyncio.to_thread(cluster.get_va)
    await asyncio.to_thread(cluster.events, "ScaledDown")
    try:
        await _poll(cluster.pod_count, lambda count: count == 1, "the extra worker pod to exit", 90)
        await asyncio.to_thread(cluster.get_pods)
    except TimeoutError as error:
        say(str(error))
    return ScaleResult(True, True, peak_rooms, peak_desired, peak_pods, down_after)
