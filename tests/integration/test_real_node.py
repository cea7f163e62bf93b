"""The product as users run it, on the test bed's real kubelet node (harness/node.py): `helm install`
runs the operator image as a restricted pod; a VoiceAgent runs worker pods from the worker image
that answer a caller over WebRTC; Prometheus discovers and scrapes them; the operator scales on
their rooms; a pod serving a live call is scaled away and, separately, rolled, and the caller
keeps talking through it; a bad image or a crashing worker is reported and replaces nothing.

The tests of this module run in order on one fleet (module fixture) and one VoiceAgent.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.stream import stream

from .harness import network
from .harness.caller import HeardTurn
from .harness.fleet import OPERATOR_IMAGE, Fleet, in_thread, node_spec, pod_scrape_config, running_fleet, wait_for_pods
from .harness.processes import wait_until
from .harness.voiceagents import WORKER_SELECTOR
from .harness.worker import slower_model, voice_model
from .test_worker_room import eventually, promql

pytestmark = pytest.mark.testbed

RELEASE, CHART_NAMESPACE, AGENTS_NAMESPACE, AGENT = "fleet", "fleet", "voice", "local"
WORKER_IMAGE = "ghcr.io/agent-worker/agent-worker"
SELECTOR = WORKER_SELECTOR.format(name=AGENT)
# The main model stands in for a 70B beside an 8B (as in test_worker_room): a fixed delay later.
MAIN_MODEL_DELAY = 2.0
# How long the caller goes on talking after its pod was told to stop, and the questions it asks.
TALK_AFTER_STOP = 30.0
QUESTIONS = [
    "What is the weather like in Paris today?",
    "How far away is the moon from the earth?",
    "Can you book a table for two tonight?",
    "What time does the museum open tomorrow?",
]
# livekit-agents logs one JSON object per line in `start` mode; these levels are errors.
ERROR_LEVELS = {"ERROR", "CRITICAL"}


@pytest.fixture(scope="module")
def fleet(control_plane, node, livekit_server, testbed_workdir) -> Iterator[Fleet]:
    with running_fleet(control_plane, node, livekit_server, testbed_workdir / "fleet", release=RELEASE,
                       chart_namespace=CHART_NAMESPACE, agents_namespace=AGENTS_NAMESPACE) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def main_model(model_server) -> str:
    return voice_model(model_server)


@pytest.fixture(scope="module")
def main_model_url(model_server) -> Iterator[str]:
    """The slower main model, as pods reach it, for the whole module (each test has its own loop)."""
    with in_thread(slower_model(model_server.base_url, MAIN_MODEL_DELAY, host=network.NODE_IP)) as url:
        yield url


def ready(pod: k8s.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def live_workers(fleet: Fleet) -> list[k8s.V1Pod]:
    pods = fleet.agents.core.list_namespaced_pod(AGENTS_NAMESPACE, label_selector=SELECTOR).items
    return sorted(pods, key=lambda p: p.metadata.creation_timestamp)


def pod_named(fleet: Fleet, name: str) -> k8s.V1Pod | None:
    return next((p for p in live_workers(fleet) if p.metadata.name == name), None)


def serving_pod(fleet: Fleet, room: str) -> str:
    """The worker pod whose job serves `room` (its log names the room once the job starts)."""
    found: list[str] = []

    def located() -> bool:
        found[:] = [pod for pod in fleet.logs.pods() if room in fleet.logs.text(pod, "agent-worker")]
        return len(found) == 1

    wait_until(located, f"one worker pod's log to name room {room}", timeout=30)
    return found[0]


def answered(turn: HeardTurn) -> bool:
    return not turn.timed_out and bool(turn.answer_text) and turn.answer_start is not None


def error_lines(text: str) -> list[str]:
    errors = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if re.search(r"\b(ERROR|CRITICAL)\b|Traceback", line):
                errors.append(line)
            continue
        if isinstance(record, dict) and str(record.get("level", "")).upper() in ERROR_LEVELS:
            errors.append(line)
    return errors


def test_helm_install_runs_the_operator_image_as_a_restricted_non_root_pod_on_the_real_node(fleet: Fleet):
    core = fleet.agents.core
    namespace = core.read_namespace(CHART_NAMESPACE)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    (pod,) = core.list_namespaced_pod(CHART_NAMESPACE).items
    assert pod.spec.node_name == fleet.node.name and ready(pod)
    (container,) = pod.spec.containers
    assert container.image == f"{OPERATOR_IMAGE}:0.1.0" and container.image in fleet.node.images
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.capabilities.drop == ["ALL"]
    (status,) = pod.status.container_statuses
    assert status.state.running and status.restart_count == 0
    # The process's real uid, read from inside the running container.
    out = _exec(fleet, CHART_NAMESPACE, pod.metadata.name, ["python3", "-c", "import os; print(os.getuid())"])
    assert int(out) == 10001
    assert network.NODE_IP.startswith("10.88.") and pod.status.pod_ip.startswith("10.88.0.")


def _exec(fleet: Fleet, namespace: str, pod: str, command: list[str]) -> str:
    return stream(fleet.agents.core.connect_get_namespaced_pod_exec, pod, namespace, command=command,
                  stderr=True, stdin=False, stdout=True, tty=False).strip()


async def test_a_voiceagent_on_the_node_answers_over_webrtc_is_scraped_and_scales_on_its_rooms(
    fleet: Fleet, model_server, speech_server, main_model, main_model_url, start_prometheus, record_property,
):
    fleet.agents.create(AGENT, node_spec(
        fleet.livekit, model_server, speech_server, model=main_model, main_base_url=main_model_url,
        # The reactive rule (no headroom): the node holds two workers, a scale-up or a rollout's
        # surge, so a call in progress must not bring a second worker before a rollout's surge.
        scaling={"minReplicas": 1, "maxReplicas": 2, "targetActiveRoomsPerReplica": 1,
                 "scaleDownStabilizationSeconds": 5, "podStartSeconds": 0, "spareSessions": 0},
    ))
    (first,) = await asyncio.to_thread(wait_for_pods, fleet.agents.api, AGENTS_NAMESPACE, SELECTOR, 1,
                                       "the first worker pod Ready on the real node", 240)
    assert first.spec.node_name == fleet.node.name
    assert first.spec.containers[0].image == f"{WORKER_IMAGE}:0.1.0"
    prometheus = await asyncio.to_thread(start_prometheus, "fleet", [],
                                         scrape_configs=[pod_scrape_config(fleet.plane, AGENTS_NAMESPACE)])
    assert await eventually(prometheus, 'sum(up{job="agent-worker"})', 1.0, timeout=30) == 1.0

    async with fleet.call(f"call-{uuid.uuid4().hex[:6]}") as caller, \
            fleet.call(f"hold-{uuid.uuid4().hex[:6]}"):
        # Two rooms at one per worker: the operator adds a second pod.
        pods = await asyncio.to_thread(wait_for_pods, fleet.agents.api, AGENTS_NAMESPACE, SELECTOR, 2,
                                       "a second worker pod for the second room", 240)
        assert await eventually(prometheus, "sum(agent_worker_active_sessions)", 2.0, timeout=30) == 2.0
        turns = [await caller.ask(question, turn_timeout=90) for question in QUESTIONS[:2]]
    record_property("real_node_turns", json.dumps([(t.question, t.filler_text, t.answer_text, t.first_audio_ms)
                                                  for t in turns]))
    # Every turn answered; a filler, when one plays, comes first. On two shared cores the fast model
    # can lose its race on a turn (the worker then drops the filler), but not on every turn.
    assert all(answered(turn) for turn in turns), turns
    with_filler = [turn for turn in turns if turn.filler_start is not None]
    assert with_filler and all(turn.filler_start < turn.answer_start for turn in with_filler), turns
    assert {p.status.pod_ip for p in pods} == {
        r["metric"]["instance"].split(":")[0] for r in promql(prometheus, 'up{job="agent-worker"} == 1')}
    # Rooms gone: back to one worker after the 5 s stabilization window.
    await asyncio.to_thread(wait_for_pods, fleet.agents.api, AGENTS_NAMESPACE, SELECTOR, 1,
                            "the fleet back to one worker once the rooms ended", 180)
    status = fleet.agents.get(AGENT)["status"]
    assert status["desiredReplicas"] == 1 and status["activeRooms"] == 0


async def talk_through_a_stop(fleet: Fleet, stop, what: str, record_property) -> dict:
    """A caller talks with one worker pod; `stop()` makes the cluster stop that pod; the caller
    keeps asking for TALK_AFTER_STOP seconds after the pod got its deletionTimestamp, then hangs
    up. Returns the turns and the pod's timeline."""
    room = f"{what}-{uuid.uuid4().hex[:6]}"
    async with fleet.call(room) as caller:
        turns = [await caller.ask(QUESTIONS[0], turn_timeout=90)]
        pod = serving_pod(fleet, room)
        await asyncio.to_thread(stop)
        await asyncio.to_thread(wait_until, lambda: pod_named(fleet, pod) is None
                                or pod_named(fleet, pod).metadata.deletion_timestamp is not None,
                                f"pod {pod} to be told to stop", None, 240)
        told = time.monotonic()
        asked = 1
        while time.monotonic() - told < TALK_AFTER_STOP:
            turns.append(await caller.ask(QUESTIONS[asked % len(QUESTIONS)], turn_timeout=90))
            asked += 1
            still = pod_named(fleet, pod)
            assert still is not None and still.status.container_statuses[0].state.running, \
                f"{pod} stopped while its call went on"
        talked = time.monotonic() - told
    hung_up = time.monotonic()
    await asyncio.to_thread(wait_until, lambda: pod_named(fleet, pod) is None,
                            f"pod {pod} to exit once its room ended", None, 120)
    timeline = {"pod": pod, "turns_asked": len(turns), "turns_answered": sum(map(answered, turns)),
                "talked_after_stop_s": round(talked, 1), "exited_after_hang_up_s": round(time.monotonic() - hung_up, 1)}
    record_property(f"no_cut_{what}", json.dumps(timeline))
    print(f"\n{what}: {timeline}")
    assert timeline["turns_answered"] == timeline["turns_asked"], [t.__dict__ for t in turns]
    assert talked >= TALK_AFTER_STOP
    return timeline


async def test_no_call_is_cut_when_its_pod_is_scaled_down(fleet: Fleet, record_property):
    # The drain deadline: the pod's grace period (spec default 600 s) less livekit's shutdown margin.
    config = fleet.agents.core.read_namespaced_config_map(f"{AGENT}-worker-config", AGENTS_NAMESPACE).data
    assert config["AGENT_DRAIN_TIMEOUT"] == "585"
    try:
        await talk_through_a_stop(fleet, lambda: fleet.agents.patch(AGENT, {"spec": {"replicas": 0}}),
                                  "scale-down", record_property)
    finally:  # the module's later tests start from one autoscaled worker, whatever happened here
        fleet.agents.patch(AGENT, {"spec": {"replicas": None}})
        await asyncio.to_thread(wait_for_pods, fleet.agents.api, AGENTS_NAMESPACE, SELECTOR, 1,
                                "autoscaling back to one worker", 240)


async def test_no_call_is_cut_by_a_rolling_update(fleet: Fleet, record_property):
    (old,) = live_workers(fleet)

    def change_config() -> None:
        fleet.agents.patch(AGENT, {"spec": {"instructions": "You are a brief, friendly assistant."}})

    timeline = await talk_through_a_stop(fleet, change_config, "rollout", record_property)
    assert timeline["pod"] == old.metadata.name
    (new,) = live_workers(fleet)
    assert new.metadata.name != old.metadata.name and ready(new)


def test_a_bad_image_is_reported_and_replaces_nothing(fleet: Fleet):
    (serving,) = live_workers(fleet)
    image = f"{WORKER_IMAGE}:0.0.0-missing"
    fleet.agents.patch(AGENT, {"spec": {"image": image}})
    degraded = fleet.agents.wait_for_condition(AGENT, "Degraded", "True", timeout=180, reason="ImagePullFailed")
    assert image in degraded["message"] and "agent-worker" in degraded["message"]
    still = pod_named(fleet, serving.metadata.name)
    assert still is not None and ready(still) and still.metadata.deletion_timestamp is None
    fleet.agents.patch(AGENT, {"spec": {"image": f"{WORKER_IMAGE}:0.1.0"}})
    fleet.agents.wait_for_condition(AGENT, "Degraded", "False", timeout=180)
    wait_for_pods(fleet.agents.api, AGENTS_NAMESPACE, SELECTOR, 1, "the unpullable pod gone, one worker serving")


def test_a_crashing_worker_is_reported_and_replaces_nothing(fleet: Fleet):
    (serving,) = [p for p in live_workers(fleet) if ready(p)]
    # A worker setting only the worker checks (the operator refuses a bad AGENT_MAX_SESSIONS itself).
    fleet.agents.patch(AGENT, {"spec": {"env": [{"name": "AGENT_LLM_TIMEOUT", "value": "many"}]}})
    degraded = fleet.agents.wait_for_condition(AGENT, "Degraded", "True", timeout=180, reason="WorkerCrashing")
    assert "AGENT_LLM_TIMEOUT" in degraded["message"], degraded
    still = pod_named(fleet, serving.metadata.name)
    assert still is not None and ready(still) and still.metadata.deletion_timestamp is None
    fleet.agents.patch(AGENT, {"spec": {"env": None}})
    fleet.agents.wait_for_condition(AGENT, "Degraded", "False", timeout=240)
    wait_for_pods(fleet.agents.api, AGENTS_NAMESPACE, SELECTOR, 1, "the crashing pods gone, one worker serving")


def test_no_pod_restarted_and_no_log_line_is_an_error(fleet: Fleet):
    """Every worker and operator container that ran on the node in this module; the crash test's
    deliberately broken pods are left out by their ReplicaSet (they never served)."""
    core = fleet.agents.core
    for namespace in (AGENTS_NAMESPACE, CHART_NAMESPACE):
        for pod in core.list_namespaced_pod(namespace).items:
            for status in pod.status.container_statuses or []:
                assert status.restart_count == 0, (pod.metadata.name, status)
    crashed = {pod for pod in fleet.logs.pods() if "AGENT_LLM_TIMEOUT" in fleet.logs.text(pod, "agent-worker")}
    checked = 0
    for logs in (fleet.logs, fleet.operator_logs):
        for pod in logs.pods():
            if pod in crashed:
                continue
            for container in ("agent-worker", "operator"):
                text = logs.text(pod, container)
                if text:
                    checked += 1
                    assert not error_lines(text), (pod, error_lines(text)[:5])
    assert checked >= 3
