"""Active rooms per worker pod: scraped from each ready pod, or queried from Prometheus.

Pods are dialled at their own IP (`status.podIP`), never through a Service, so each answer is
attributable to one pod (and the deletion cost can be set per pod).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agent_worker.metric_names import ACTIVE_SESSIONS

from ..spec import Scaling

log = logging.getLogger(__name__)


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


def is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    if pod.get("metadata", {}).get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def active_sessions(exposition: str) -> int:
    """Sum of the active-sessions gauge's samples in one Prometheus text exposition."""
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        if family.name == ACTIVE_SESSIONS:
            total += sum(sample.value for sample in family.samples)
    return round(total)


async def _scrape(session: aiohttp.ClientSession, pod: dict[str, Any], port: int) -> int | None:
    url = f"http://{pod['status']['podIP']}:{port}/metrics"
    try:
        async with session.get(url) as response:
            response.raise_for_status()
            return active_sessions(await response.text())
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        log.debug("cannot read active rooms from pod %s at %s: %s", pod["metadata"]["name"], url, exc)
        return None


async def scrape_pods(pods: list[dict[str, Any]], port: int, timeout: float) -> PodRooms:
    ready = [pod for pod in pods if is_ready(pod)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        counts = await asyncio.gather(*(_scrape(session, pod, port) for pod in ready))
    names = [pod["metadata"]["name"] for pod in ready]
    return PodRooms(
        rooms={name: count for name, count in zip(names, counts) if count is not None},
        unknown=tuple(name for name, count in zip(names, counts) if count is None),
    )


async def query_prometheus(pods: list[dict[str, Any]], url: str, namespace: str, timeout: float) -> PodRooms:
    """One instant query, `sum by (pod)`, matched against the ready pods (as a ServiceMonitor labels them)."""
    names = [pod["metadata"]["name"] for pod in pods if is_ready(pod)]
    query = f'sum by (pod) ({ACTIVE_SESSIONS}{{namespace="{namespace}"}})'
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(f"{url.rstrip('/')}/api/v1/query", params={"query": query}) as response:
                response.raise_for_status()
                body = await response.json()
        by_pod = {item["metric"].get("pod"): round(float(item["value"][1])) for item in body["data"]["result"]}
    except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError, TypeError) as exc:
        log.debug("cannot query active rooms from Prometheus at %s: %s", url, exc)
        return PodRooms(rooms={}, unknown=tuple(names))
    return PodRooms(
        rooms={name: by_pod[name] for name in names if name in by_pod},
        unknown=tuple(name for name in names if name not in by_pod),
    )


async def observe(
    pods: list[dict[str, Any]], scaling: Scaling | None, metrics_port: int, namespace: str, timeout: float
) -> PodRooms:
    if scaling is not None and scaling.metrics_source == "prometheus" and scaling.prometheus_url:
        return await query_prometheus(pods, scaling.prometheus_url, namespace, timeout)
    return await scrape_pods(pods, metrics_port, timeout)
