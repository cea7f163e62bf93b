"""Several callers at once: the operator sees the rooms through Prometheus and scales the
VoiceAgent up at once; when the rooms end it waits out the scale-down stabilization window."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tests.integration.harness.caller import call
from tests.integration.harness.services import LiveKit

from .cluster import Cluster, Windows
from .shell import say

LOAD_QUESTION = "What time is it in Tokyo right now?"


@dataclass
class ScaleResult:
    scaled_up: bool
    scaled_down: bool
    peak_rooms: int
    peak_desired: int
    down_after: float | None  # seconds from the last room ending to the scale-down decision


async def _watch(cluster: Cluster, calls: asyncio.Future, start_desired: int) -> tuple[int, int, bool]:
    """Polls the VoiceAgent while the rooms are open; shows the first scale-up decision."""
    peak_rooms, peak_desired, shown = 0, start_desired, False
    while not calls.done():
        status = await asyncio.to_thread(cluster.status)
        rooms, desired = status.get("activeRooms", 0), status.get("desiredReplicas", start_desired)
        if rooms > peak_rooms or desired > peak_desired:
            say(f"operator observes {rooms} active rooms -> desired replicas {desired}")
        peak_rooms, peak_desired = max(peak_rooms, rooms), max(peak_desired, desired)
        if desired > start_desired and not shown:
            shown = True
            await asyncio.to_thread(cluster.get_va)
            await asyncio.to_thread(cluster.events, "ScaledUp")
        await asyncio.sleep(1.0)
    return peak_rooms, peak_desired, shown


async def show_scaling(cluster: Cluster, livekit: LiveKit, rooms: int, windows: Windows) -> ScaleResult:
    start_desired = cluster.status().get("desiredReplicas", 1)
    say(f"{rooms} callers open rooms at once (target {windows.target_rooms} rooms per worker, "
        f"max {windows.max_replicas} workers); Prometheus scrapes the worker every 2 s")
    calls = asyncio.gather(*(
        # A room needs to last only until the operator has seen it: 20 s at most for the answer.
        call(livekit.url, livekit.api_key, livekit.api_secret, f"demo-load-{n}", [LOAD_QUESTION],
             turn_timeout=20.0, join_timeout=90.0)
        for n in range(1, rooms + 1)
    ), return_exceptions=True)
    peak_rooms, peak_desired, scaled_up = await _watch(cluster, calls, start_desired)
    failures = [result for result in calls.result() if isinstance(result, BaseException)]
    ended = time.monotonic()
    say(f"all {rooms} rooms ended ({len(failures)} callers failed: {failures[:1]})" if failures
        else f"all {rooms} rooms ended")
    if not scaled_up:
        return ScaleResult(False, False, peak_rooms, peak_desired, None)
    try:
        await asyncio.to_thread(cluster.wait_for_status, lambda s: s.get("activeRooms", 0) == 0, "no active rooms", 30)
    except TimeoutError as error:
        say(str(error))
    cluster.get_va()
    say(f"no rooms now; the operator scales down only to the highest recommendation of the last "
        f"scaleDownStabilizationSeconds={windows.scale_down_seconds}")
    try:
        status = await asyncio.to_thread(cluster.wait_for_status, lambda s: s.get("desiredReplicas", 0) <= 1,
                                         "a scale-down to minReplicas", windows.scale_down_seconds + 45)
    except TimeoutError:
        reason = cluster.last_operator_warning()
        say(f"no scale-down within {windows.scale_down_seconds + 45} s; the operator's last warning: {reason or '(none)'}")
        return ScaleResult(True, False, peak_rooms, peak_desired, None)
    down_after = time.monotonic() - ended
    say(f"back to {status.get('desiredReplicas')} worker {down_after:.0f}s after the last room ended "
        f"(each step down only once the window holds no higher recommendation)")
    cluster.get_va()
    cluster.events("ScaledDown")
    return ScaleResult(True, True, peak_rooms, peak_desired, down_after)
