"""Active rooms per worker pod: scraped from each ready pod, or queried from Prometheus.

Pods are dialled at their own IP (`status.podIP`), never through a Service, so each answer is
attributable to one pod (and the deletion cost can be set per pod). One aiohttp session serves every
scrape of the operator, with a cap on connections in flight and a timeout per request; Prometheus is
asked once per observation for every VoiceAgent (`sum by (namespace, pod)`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent_worker.metric_names import ACTIVE_SESSIONS

log = logging.getLogger(__name__)

FLEET_QUERY = f"sum by (namespace, pod) ({ACTIVE_SESSIONS})"


@dataclass(frozen=True)
class PodRooms:
    """Rooms by ready pod name; `unknown` lists ready pods that did not answer."""

    rooms: dict[str, int]
    unknown: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(self.rooms.values())

    @property
    def complete(self) -> bool:
        return not self.unknown


@dataclass(frozen=True)
class ReadyPod:
    name: str
    ip: str


def is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    if pod.get("metadata", {}).get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def ready_pods(pods: list[dict[str, Any]]) -> list[ReadyPod]:
    return [ReadyPod(pod["metadata"]["name"], pod["status"]["podIP"]) for pod in pods if is_ready(pod)]


def active_sessions(exposition: str) -> int:
    """Sum of the active-sessions gauge's samples in one Prometheus text exposition.

    Only the gauge's own sample lines are parsed (`name value` or `name{labels} value [timestamp]`),
    so a large exposition costs one pass over its lines and no parse of the other families."""
    total = 0.0
    for line in exposition.splitlines():
        if not line.startswith(ACTIVE_SESSIONS):
            continue
        rest = line[len(ACTIVE_SESSIONS):]
        if rest[:1] == "{":
            rest = rest[rest.rindex("}") + 1:]
        elif rest[:1] not in (" ", "\t"):
            continue  # another metric whose name starts with ours
        value = float(rest.split()[0])
        if math.isfinite(value):
            total += value
    return round(total)


def new_session(timeout: float, concurrency: int) -> aiohttp.ClientSession:
    """The operator's one session for scrapes and queries: `concurrency` connections at most, `timeout` each."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        connector=aiohttp.TCPConnector(limit=concurrency, force_close=True),
    )


async def _scrape(session: aiohttp.ClientSession, pod: ReadyPod, port: int) -> int | None:
    url = f"http://{pod.ip}:{port}/metrics"
    try:
        async with session.get(url) as response:
            response.raise_for_status()
            return active_sessions(await response.text())
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        log.debug("cannot read active rooms from pod %s at %s: %s", pod.name, url, exc)
        return None


async def scrape_pods(session: aiohttp.ClientSession, pods: list[ReadyPod], port: int) -> PodRooms:
    counts = await asyncio.gather(*(_scrape(session, pod, port) for pod in pods))
    return PodRooms(
        rooms={pod.name: count for pod, count in zip(pods, counts) if count is not None},
        unknown=tuple(pod.name for pod, count in zip(pods, counts) if count is None),
    )


async def query_prometheus(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, str], int] | None:
    """Active rooms of every worker pod Prometheus knows, by (namespace, pod); None if it did not answer."""
    try:
        async with session.get(f"{url.rstrip('/')}/api/v1/query", params={"query": FLEET_QUERY}) as response:
            response.raise_for_status()
            body = await response.json()
        return {
            (item["metric"].get("namespace", ""), item["metric"].get("pod", "")): round(float(item["value"][1]))
            for item in body["data"]["result"]
        }
    except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError, TypeError) as exc:
        log.debug("cannot query active rooms from Prometheus at %s: %s", url, exc)
        return None


def rooms_from_query(by_pod: dict[tuple[str, str], int] | None, namespace: str, pods: list[ReadyPod]) -> PodRooms:
    """One VoiceAgent's ready pods matched against a fleet-wide answer (as a ServiceMonitor labels them)."""
    found = by_pod or {}
    return PodRooms(
        rooms={pod.name: found[(namespace, pod.name)] for pod in pods if (namespace, pod.name) in found},
        unknown=tuple(pod.name for pod in pods if (namespace, pod.name) not in found),
    )
