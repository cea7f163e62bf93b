"""The operator under the real Kopf runtime, against kmock: create, update, no-op, scale, delete, bad spec."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import kmock
import pytest
from cluster import NAMESPACE, SERVICE_MONITORS, VOICEAGENTS, eventually, obj, voiceagent, writes
from kubelet import crash_loop, err_image_pull, image_pull_back_off, running, worker_pod
from loopback import exposition, free_port, metrics_endpoints, pod
from va_examples import REACTIVE, groq_spec, ollama_spec

from voiceagent_operator import handlers, metrics
from voiceagent_operator.builders import desired_children
from voiceagent_operator.builders.ollama_pull import ollama_pull_job
from voiceagent_operator.naming import DELETION_COST_ANNOTATION, Owner, labels, selector_string
from voiceagent_operator.scaling.deletion_cost import SAFE_TO_EVICT_ANNOTATION
from voiceagent_operator.spec import parse_spec

VA_PATH = f"/apis/{VOICEAGENTS.rsplit('/', 1)[0]}/namespaces/{NAMESPACE}/voiceagents"
RESYNC = 0.25  # VOICEAGENT_RESYNC_SECONDS in conftest
OBSERVE = 0.25


@pytest.fixture
def resync() -> float:
    """The resync period (parametrize to change)."""
    return RESYNC


@pytest.fixture(autouse=True)
def observe_fast(monkeypatch: pytest.MonkeyPatch, resync: float) -> None:
    """The fleet observation as often as the resync (set before the operator starts)."""
    monkeypatch.setattr(handlers.OPTIONS, "observe_seconds", OBSERVE)
    monkeypatch.setattr(handlers.OPTIONS, "resync_seconds", resync)


pytestmark = pytest.mark.usefixtures("observe_fast", "operator")


async def send(api: kmock.KubernetesEmulator, method: str, path: str, body: Any = None) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{api.url}{path}", json=body) as response:
            assert response.status < 300, await response.text()


async def create(api: kmock.KubernetesEmulator, name: str, spec: dict[str, Any]) -> None:
    await send(api, "POST", VA_PATH, voiceagent(name, spec))


async def change_spec(api: kmock.KubernetesEmulator, name: str, delta: dict[str, Any], generation: int) -> None:
    """A spec edit as one merge patch (None removes a key), bumping the generation as the apiserver would."""
    await send(api, "PATCH", f"{VA_PATH}/{name}", {"metadata": {"generation": generation}, "spec": delta})


def status(api: kmock.KubernetesEmulator, name: str) -> dict[str, Any]:
    return (obj(api, VOICEAGENTS, name) or {}).get("status") or {}


def condition(api: kmock.KubernetesEmulator, name: str, kind: str) -> dict[str, Any]:
    return next((c for c in status(api, name).get("conditions", []) if c["type"] == kind), {})


def events(api: kmock.KubernetesEmulator, reason: str) -> list[dict[str, Any]]:
    return [r.data for r in api if r.method.value == "POST" and r.url.path.endswith("/events") and r.data.get("reason") == reason]


async def settled(api: kmock.KubernetesEmulator, name: str) -> None:
    """Wait until the first reconciliation has written its status."""
    await eventually(lambda: status(api, name).get("selector"))
    await eventually(lambda: condition(api, name, "Ready"))


async def test_creating_a_voiceagent_creates_its_owned_children_and_reports_status(api) -> None:
    await create(api, "support", groq_spec())
    await settled(api, "support")
    children = {
        "v1/configmaps": "support-worker-config",
        "v1/services": "support-worker",
        "policy/v1/poddisruptionbudgets": "support-worker",
        "apps/v1/deployments": "support-worker",
    }
    for resource, name in children.items():
        child = await eventually(lambda: obj(api, resource, name))
        assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-support", resource
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "voiceagent-operator"
    assert obj(api, "apps/v1/deployments", "support-worker")["spec"]["replicas"] == 1
    assert all(w.startswith("PATCH") or "/events" in w or w.startswith("POST /apis/agentworker.io") for w in writes(api))
    current = status(api, "support")
    assert current["desiredReplicas"] == 1
    assert current["selector"] == selector_string(Owner("support", NAMESPACE, "uid-support"))
    assert condition(api, "support", "Ready")["status"] == "False"  # no worker pod is ready in kmock
    assert condition(api, "support", "Degraded")["status"] == "False"
    assert condition(api, "support", "Degraded")["observedGeneration"] == 1
    missing = condition(api, "support", "MonitoringReady")
    assert (missing["status"], missing["reason"]) == ("False", "ServiceMonitorAPIMissing")
    assert condition(api, "support", "OllamaReady")["reason"] == "Disabled"


async def test_a_resync_of_an_unchanged_voiceagent_reads_and_writes_nothing(api) -> None:
    await create(api, "support", groq_spec())
    await settled(api, "support")
    await asyncio.sleep(4 * RESYNC)  # let Kopf's own bookkeeping after the create handler finish
    mark, reconciled = len(list(api)), reconciles()
    await asyncio.sleep(8 * RESYNC)
    new = list(api)[mark:]
    assert reconciles() - reconciled >= 4, "the VoiceAgent was reconciled every resync period"
    reads = [f"GET {r.url.path}" for r in new if r.method.value == "GET" and "watch" not in r.params]
    assert reads == [], "children and pods come from the watches"
    assert writes(api, since=mark) == []


def reconciles() -> float:
    return sum(metrics.RECONCILES.labels(outcome)._value.get() for outcome in ("ok", "degraded"))


async def test_a_spec_change_updates_the_children_and_the_observed_generation(api) -> None:
    await create(api, "support", groq_spec())
    await settled(api, "support")

    def config_hash() -> str:
        template = obj(api, "apps/v1/deployments", "support-worker")["spec"]["template"]
        return template["metadata"]["annotations"]["agentworker.io/config-hash"]

    before = config_hash()
    await change_spec(api, "support", {"instructions": "Answer in French."}, generation=2)
    await eventually(lambda: obj(api, "v1/configmaps", "support-worker-config")["data"].get("AGENT_INSTRUCTIONS") == "Answer in French.")
    await eventually(lambda: config_hash() != before)  # the workers roll to pick the new settings up
    await eventually(lambda: condition(api, "support", "Ready").get("observedGeneration") == 2)
    assert status(api, "support")["observedGeneration"] == 2


async def test_an_invalid_spec_degrades_and_leaves_the_children_untouched(api) -> None:
    await create(api, "support", groq_spec())
    await settled(api, "support")
    deployment = obj(api, "apps/v1/deployments", "support-worker")
    await change_spec(api, "support", {"scaling": {"minReplicas": 6, "maxReplicas": 2}}, generation=2)
    degraded = await eventually(lambda: condition(api, "support", "Degraded").get("status") == "True" and condition(api, "support", "Degraded"))
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.scaling" in degraded["message"] and "minReplicas" in degraded["message"]
    assert degraded["observedGeneration"] == 2
    await asyncio.sleep(3 * RESYNC)
    assert obj(api, "apps/v1/deployments", "support-worker") == deployment
    assert len(events(api, "InvalidSpec")) == 1, "one Warning event, not one per resync"


async def test_a_voiceagent_born_invalid_gets_no_children(api) -> None:
    await create(api, "broken", groq_spec(llm={"provider": "groq"}))
    await eventually(lambda: condition(api, "broken", "Degraded").get("status") == "True")
    assert "spec.llm" in condition(api, "broken", "Degraded")["message"]
    assert obj(api, "apps/v1/deployments", "broken-worker") is None


@pytest.mark.parametrize("monitoring", [True])
async def test_a_service_monitor_is_created_when_its_api_is_served(api) -> None:
    await create(api, "support", groq_spec(monitoring={"serviceMonitor": {"labels": {"release": "prom"}}}))
    monitor = await eventually(lambda: obj(api, SERVICE_MONITORS, "support-worker"))
    assert monitor["metadata"]["labels"]["release"] == "prom"
    await eventually(lambda: condition(api, "support", "MonitoringReady").get("status") == "True")
    await change_spec(api, "support", {"monitoring": {"serviceMonitor": {"enabled": False}}}, generation=2)
    await eventually(lambda: obj(api, SERVICE_MONITORS, "support-worker") is None)
    await eventually(lambda: condition(api, "support", "MonitoringReady").get("reason") == "Disabled")


def pull_job(name: str, spec: dict[str, Any]) -> str:
    return ollama_pull_job(Owner(name, NAMESPACE, f"uid-{name}"), parse_spec(spec))["metadata"]["name"]


async def test_ollama_is_created_reported_and_removed_keeping_its_models(api) -> None:
    await create(api, "local", ollama_spec())
    # The children are applied side by side: each appears on its own.
    await eventually(lambda: obj(api, "apps/v1/deployments", "local-ollama"))
    await eventually(lambda: obj(api, "v1/services", "local-ollama"))
    await eventually(lambda: obj(api, "v1/persistentvolumeclaims", "local-ollama-models"))
    job = pull_job("local", ollama_spec())
    await eventually(lambda: obj(api, "batch/v1/jobs", job))
    # The Job has no status yet (no Job controller here): the models are being pulled.
    await eventually(lambda: condition(api, "local", "OllamaReady").get("reason") == "PullingModels")
    assert job in condition(api, "local", "OllamaReady")["message"]
    assert condition(api, "local", "Ready")["reason"] == "ModelsNotPulled"
    await send(api, "PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/local-ollama", {"status": {"readyReplicas": 1}})
    await asyncio.sleep(3 * RESYNC)
    assert condition(api, "local", "OllamaReady")["reason"] == "PullingModels", "a serving pod is not enough"
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
    await send(api, "PATCH", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}", {"status": {"conditions": [failed]}})
    await eventually(lambda: condition(api, "local", "OllamaReady").get("reason") == "PullFailed")
    assert f"kubectl logs job/{job}" in condition(api, "local", "OllamaReady")["message"]
    assert condition(api, "local", "Ready")["reason"] == "ModelsNotPulled"
    complete = {"type": "Complete", "status": "True"}
    await send(api, "PATCH", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}", {"status": {"conditions": [complete]}})
    await eventually(lambda: condition(api, "local", "OllamaReady").get("status") == "True")
    assert condition(api, "local", "OllamaReady")["reason"] == "ModelsPulled"
    assert condition(api, "local", "Ready")["reason"] == "NoWorkerReady"  # Ollama no longer holds Ready back

    # A new model list: a new Job, the earlier list's Job deleted, Ready held back until it is pulled.
    more = ollama_spec(ollama={**ollama_spec()["ollama"], "models": ["nomic-embed-text", "all-minilm"]})
    await change_spec(api, "local", {"ollama": {"models": ["nomic-embed-text", "all-minilm"]}}, generation=2)
    second = pull_job("local", more)
    await eventually(lambda: obj(api, "batch/v1/jobs", second))
    await eventually(lambda: obj(api, "batch/v1/jobs", job) is None)
    await eventually(lambda: condition(api, "local", "OllamaReady").get("reason") == "PullingModels")
    await eventually(lambda: [e for e in events(api, "Deleted") if job in e.get("message", "")])
    await asyncio.sleep(3 * RESYNC)
    assert len([e for e in events(api, "Deleted") if job in e.get("message", "")]) == 1, "deleted once, not per resync"

    switch_to_groq = {"llm": {"provider": "groq", "credentialsSecret": "groq", "model": None}, "ollama": {"enabled": False}}
    await change_spec(api, "local", switch_to_groq, generation=3)
    await eventually(lambda: obj(api, "apps/v1/deployments", "local-ollama") is None)
    await eventually(lambda: obj(api, "v1/services", "local-ollama") is None)  # removed at once with the Deployment
    await eventually(lambda: obj(api, "batch/v1/jobs", second) is None)
    assert obj(api, "v1/persistentvolumeclaims", "local-ollama-models") is not None, "Retain keeps the models"


@pytest.mark.parametrize("resync", [120.0])
async def test_a_pull_job_that_finishes_is_reported_without_waiting_for_the_resync(api) -> None:
    await create(api, "local", ollama_spec())
    job = pull_job("local", ollama_spec())
    await eventually(lambda: condition(api, "local", "OllamaReady").get("reason") == "PullingModels")
    await send(api, "PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/local-ollama", {"status": {"readyReplicas": 1}})
    await send(api, "PATCH", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}",
               {"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    await eventually(lambda: condition(api, "local", "OllamaReady").get("reason") == "ModelsPulled", timeout=5)


def groq_children() -> list[dict[str, Any]]:
    return desired_children(Owner("support", NAMESPACE, "uid-support"), parse_spec(groq_spec()), 1, monitoring_api=False).present


async def test_deleting_a_voiceagent_stops_its_reconciliation_and_leaves_children_to_the_gc(api) -> None:
    await create(api, "support", groq_spec())
    await settled(api, "support")
    # Kopf posts Events in the background: on a loaded machine the first reconciliation's may come late.
    await eventually(lambda: len(events(api, "Created")) == 1)
    created = events(api, "Created")[0]["message"]
    assert [part.split(":")[0] for part in created.split("; ")] == [
        f"{child['kind']}/{child['metadata']['name']}" for child in groq_children()], "one Event names every child"
    await send(api, "DELETE", f"{VA_PATH}/support")
    await eventually(lambda: obj(api, VOICEAGENTS, "support") is None)  # Kopf released its timer's finalizer
    mark = len(list(api))
    await asyncio.sleep(4 * RESYNC)
    assert writes(api, since=mark) == [], "no reconciliation re-creates anything"
    assert obj(api, "apps/v1/deployments", "support-worker")["metadata"]["ownerReferences"][0]["uid"] == "uid-support"


# --- autoscaling ------------------------------------------------------------------------------


async def add_worker_pods(api: kmock.KubernetesEmulator, ips: list[str]) -> None:
    worker_labels = labels(Owner("support", NAMESPACE, "uid-support"), "worker")
    for i, ip in enumerate(ips):
        await send(api, "POST", f"/api/v1/namespaces/{NAMESPACE}/pods", in_namespace(pod(f"support-worker-{i}", ip, labels=worker_labels)))


def in_namespace(body: dict[str, Any]) -> dict[str, Any]:
    """As the apiserver stores it (kmock keeps a posted body as it is)."""
    body["metadata"]["namespace"] = NAMESPACE
    return body


def replicas(api: kmock.KubernetesEmulator) -> int | None:
    deployment = obj(api, "apps/v1/deployments", "support-worker")
    return deployment["spec"]["replicas"] if deployment else None


async def test_workers_scale_on_active_rooms_and_idle_pods_are_marked_for_removal_first(api) -> None:
    ips = ["127.0.3.1", "127.0.3.2"]
    rooms: dict[str, str | int] = {ips[0]: exposition(0), ips[1]: exposition(0)}
    port = free_port(ips)
    scaling = {"minReplicas": 1, "maxReplicas": 5, "targetActiveRoomsPerReplica": 3, "scaleDownStabilizationSeconds": 1,
               **REACTIVE}
    async with metrics_endpoints(rooms, port):
        await add_worker_pods(api, ips)
        await create(api, "support", groq_spec(metricsPort=port, scaling=scaling))
        await settled(api, "support")
        assert replicas(api) == 1
        rooms[ips[0]], rooms[ips[1]] = exposition(4, 3), exposition(2)
        await eventually(lambda: replicas(api) == 3)  # ceil(9 / 3)
        await eventually(lambda: status(api, "support").get("activeRooms") == 9)
        assert status(api, "support")["desiredReplicas"] == 3
        assert status(api, "support")["lastScaleTime"]
        up = await eventually(lambda: events(api, "ScaledUp"))
        assert "1 -> 3" in up[0]["message"] and up[0]["type"] == "Normal"

        rooms[ips[0]], rooms[ips[1]] = exposition(0), exposition(2)
        await eventually(lambda: replicas(api) == 1, timeout=10)
        pods = {n: obj(api, "v1/pods", n)["metadata"]["annotations"] for n in ("support-worker-0", "support-worker-1")}
        assert DELETION_COST_ANNOTATION not in pods["support-worker-0"]  # idle: no cost (0), so it goes first
        assert SAFE_TO_EVICT_ANNOTATION not in pods["support-worker-0"]
        assert pods["support-worker-1"][DELETION_COST_ANNOTATION] == "2"
        assert pods["support-worker-1"][SAFE_TO_EVICT_ANNOTATION] == "false"  # busy: node autoscalers leave it
        order = [w for w in writes(api) if "/pods/" in w or "deployments/support-worker" in w]
        assert max(i for i, w in enumerate(order) if w.endswith("/pods/support-worker-1")) < len(order) - 1
        assert order[-1].endswith("deployments/support-worker"), "the costs are set before the scale-down"
        down = await eventually(lambda: events(api, "ScaledDown"))
        assert "3 -> 1" in down[0]["message"]


@pytest.mark.parametrize("resync", [120.0])
async def test_a_change_in_rooms_is_acted_on_within_the_observation_interval_not_the_resync_period(api) -> None:
    ips = ["127.0.6.1"]
    rooms: dict[str, str | int] = {ips[0]: exposition(0)}
    scaling = {"maxReplicas": 5, "targetActiveRoomsPerReplica": 1, **REACTIVE}
    async with metrics_endpoints(rooms) as port:
        await add_worker_pods(api, ips)
        await create(api, "support", groq_spec(metricsPort=port, scaling=scaling))
        await settled(api, "support")
        assert replicas(api) == 1
        rooms[ips[0]] = exposition(3)
        started = asyncio.get_running_loop().time()
        await eventually(lambda: replicas(api) == 3, timeout=5)
        await eventually(lambda: status(api, "support").get("activeRooms") == 3, timeout=5)
    assert asyncio.get_running_loop().time() - started < 5, "well within the 120 s resync"


async def test_an_unreachable_pod_blocks_scale_down_but_not_scale_up(api) -> None:
    ips = ["127.0.4.1", "127.0.4.2"]
    rooms: dict[str, str | int] = {ips[0]: exposition(7), ips[1]: 503}
    port = free_port(ips)
    scaling = {"maxReplicas": 5, "targetActiveRoomsPerReplica": 2, "scaleDownStabilizationSeconds": 0, **REACTIVE}
    async with metrics_endpoints(rooms, port):
        await add_worker_pods(api, ips)
        await create(api, "support", groq_spec(metricsPort=port, scaling=scaling))
        await eventually(lambda: replicas(api) == 4)
        rooms[ips[0]] = exposition(0)
        await asyncio.sleep(6 * RESYNC)
        assert replicas(api) == 4


async def test_workers_that_cannot_start_degrade_the_voiceagent_once_and_nothing_is_removed(api) -> None:
    worker_labels = labels(Owner("support", NAMESPACE, "uid-support"), "worker")
    serving_ip = "127.0.5.1"
    async with metrics_endpoints({serving_ip: exposition(1)}) as port:
        old = worker_pod("support-worker-5f6d-a", running(), ip=serving_ip, labels=worker_labels)
        new = worker_pod("support-worker-7d9c-b", image_pull_back_off(), ip=None, labels=worker_labels)
        for body in (old, new):
            await send(api, "POST", f"/api/v1/namespaces/{NAMESPACE}/pods", in_namespace(body))
        await create(api, "support", groq_spec(metricsPort=port))
        await eventually(lambda: obj(api, "apps/v1/deployments", "support-worker"))
        rollout = {"status": {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 1}}
        await send(api, "PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/support-worker", rollout)

        degraded = await eventually(lambda: condition(api, "support", "Degraded").get("status") == "True" and condition(api, "support", "Degraded"))
        assert degraded["reason"] == "ImagePullFailed"
        assert degraded["message"].startswith("pod support-worker-7d9c-b: container agent-worker image ")
        await eventually(lambda: condition(api, "support", "Progressing").get("reason") == "ImagePullFailed")
        await eventually(lambda: condition(api, "support", "Ready").get("status") == "True")  # the old worker serves

        pod_path = f"/api/v1/namespaces/{NAMESPACE}/pods/support-worker-7d9c-b"
        await send(api, "PATCH", pod_path, {"status": {"containerStatuses": [err_image_pull()]}})  # the kubelet retries
        await eventually(lambda: "not found" in condition(api, "support", "Degraded")["message"])
        await asyncio.sleep(4 * RESYNC)
        assert len(events(api, "ImagePullFailed")) == 1, "one Warning event, not one per resync or retry"
        assert replicas(api) == 1
        assert not [w for w in writes(api) if w.startswith("DELETE")]

        await send(api, "PATCH", pod_path, {"status": {"containerStatuses": [crash_loop(message="agent-worker: bad")]}})
        crashing = await eventually(lambda: condition(api, "support", "Degraded").get("reason") == "WorkerCrashing" and condition(api, "support", "Degraded"))
        assert crashing["message"].endswith("CrashLoopBackOff: last exit code 2 (Error): agent-worker: bad")
        assert len(await eventually(lambda: events(api, "WorkerCrashing"))) == 1

        await send(api, "PATCH", pod_path, {"status": {"containerStatuses": [running()]}})
        await eventually(lambda: condition(api, "support", "Degraded").get("reason") == "AsExpected")
        assert condition(api, "support", "Degraded")["status"] == "False"
        assert condition(api, "support", "Progressing")["reason"] != "WorkerCrashing"


async def test_kubectl_scale_pins_the_worker_count(api) -> None:
    await create(api, "support", groq_spec())
    await settled(api, "support")
    await send(api, "PATCH", f"{VA_PATH}/support", {"metadata": {"generation": 2}, "spec": {"replicas": 4}})
    await eventually(lambda: replicas(api) == 4)
    await eventually(lambda: status(api, "support").get("desiredReplicas") == 4)


async def test_the_operator_serves_its_metrics(api) -> None:
    metrics_port = os.environ["VOICEAGENT_METRICS_PORT"]  # set by conftest before the operator loads

    await create(api, "support", groq_spec())
    await settled(api, "support")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            text = await response.text()
    assert "voiceagent_operator_reconciles_total" in text
    assert 'voiceagent_operator_desired_replicas{namespace="voice",voiceagent="support"} 1.0' in text
