"""Shared fixtures for the operator tests: example specs, owners, kmock and the Kopf runtime on it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator

# The operator reads its options at import: resync fast, scrape briefly, serve metrics on a free port.
from loopback import free_port

OPERATOR_METRICS_PORT = free_port(["127.0.0.1"])
os.environ.update(
    VOICEAGENT_RESYNC_SECONDS="0.25",
    VOICEAGENT_SCRAPE_TIMEOUT_SECONDS="1",
    VOICEAGENT_METRICS_PORT=str(OPERATOR_METRICS_PORT),
)

import kmock  # noqa: E402
import kopf  # noqa: E402
import pytest  # noqa: E402
import aiohttp  # noqa: E402
from cluster import NAMESPACE, VOICEAGENTS, ApplyingEmulator, declare_resources, eventually, write_kubeconfig  # noqa: E402
from va_examples import groq_spec  # noqa: E402

import voiceagent_operator.handlers  # noqa: E402,F401  (registers the handlers with Kopf)
from voiceagent_operator.naming import Owner  # noqa: E402
from voiceagent_operator.spec import GROUP, PLURAL, VERSION, VoiceAgentSpec, parse_spec  # noqa: E402


@pytest.fixture
def owner() -> Owner:
    return Owner(name="support", namespace="voice", uid="uid-1")


@pytest.fixture
def spec() -> VoiceAgentSpec:
    return parse_spec(groq_spec())


@pytest.fixture
def monitoring() -> bool:
    """Whether the fake apiserver serves monitoring.coreos.com ServiceMonitors (parametrize to change)."""
    return False


@pytest.fixture
async def api(monitoring: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[kmock.KubernetesEmulator]:
    async with ApplyingEmulator() as emulator, kmock.Server(emulator):
        declare_resources(emulator, monitoring=monitoring)
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(emulator.url))))
        yield emulator


@pytest.fixture
async def operator(api: kmock.KubernetesEmulator) -> AsyncIterator[kmock.KubernetesEmulator]:
    """The real Kopf runtime with the operator's handlers, cluster-wide as `voiceagent-operator run` runs it.

    Kopf cancels every task that appeared while it ran ("hung" tasks) when it stops; pytest-asyncio
    tears fixtures down in a new task, so that task (and kmock's) must be on Kopf's ignore list.
    """
    stop, ready = asyncio.Event(), asyncio.Event()
    ignored = set(asyncio.all_tasks())
    tasks = await kopf.spawn_tasks(standalone=True, clusterwide=True, stop_flag=stop, ready_flag=ready, memo=kopf.Memo())
    runner = asyncio.create_task(kopf.run_tasks(tasks, ignored=ignored))
    await asyncio.wait_for(ready.wait(), 10)
    yield api
    await delete_all_voiceagents(api)  # their timers stop cleanly, none is re-spawned mid-shutdown
    ignored.update(task for task in asyncio.all_tasks() if task is not runner and task not in tasks)
    stop.set()
    await asyncio.wait_for(runner, 30)


async def delete_all_voiceagents(api: kmock.KubernetesEmulator) -> None:
    names = [name for (resource, _, name), o in api.objects.items() if resource == kmock.resource(VOICEAGENTS) and not o.deleted]
    async with aiohttp.ClientSession() as session:
        for name in names:
            await session.delete(f"{api.url}/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{name}")
    await eventually(lambda: not any(
        resource == kmock.resource(VOICEAGENTS) and not o.deleted for (resource, _, _), o in api.objects.items()
    ), timeout=5)
