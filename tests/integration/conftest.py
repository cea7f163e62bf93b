"""Fixtures that run the real test bed (built by `make testbed`) on loopback.

Session-scoped, started on first use and always stopped:
  control_plane   ControlPlane: etcd + kube-apiserver + controller-manager + scheduler + kwok with
                  two Ready fake nodes; .kubeconfig (admin), .server, .ca, .api_client(),
                  .kubeconfig_impersonating(user, groups), .kubeconfig_for_service_account(ns, name)
  livekit_server  LiveKit: .url (ws://), .http_url, .api_key, .api_secret
  model_server    ModelServer: .base_url (OpenAI-compatible /v1), .model — Ollama
  speech_server   SpeechServer: .base_url (OpenAI-compatible /v1: audio/speech, audio/transcriptions)
  node            Node: a real kubelet node (containerd, runc, CNI bridge, kube-proxy) with the
                  images of `make images` imported; pods run on it only with node.placement()
  (livekit_server, model_server and speech_server also give the URLs pods use: .pod_url, .pod_base_url)
Per test:
  kube_api            admin kubernetes.client.ApiClient
  namespace           a fresh namespace, deleted afterwards (its objects are garbage-collected)
  start_prometheus    (name, ["127.x.y.z:port", ...], scrape_configs=(), rule_files=()) -> Prometheus(.url),
                      scraping every second and evaluating the rule files as often
  serve_metrics       (host="127.0.0.1") -> MetricsEndpoint (.set({...}), .address, .url)
  spawn               (name, argv, env=None, ready_url=None) -> Process: any program (an operator, a
                      worker) whose log joins the failure report; stopped after the test
  agents              Agents: VoiceAgents (and their children) of `namespace`, which holds the Secret
                      "livekit" the local example names
  start_operator      (resync_seconds=1.0) -> RunningOperator(.process, .command): voiceagent-operator
                      from this checkout as the chart's ServiceAccount (session `operator_chart`:
                      the chart helm-installed into the restricted namespace "agent-worker")
When a test fails, the end of every running program's log is added to its report.

Before any test bed test runs, the whole pytest process moves into a network namespace whose only
addresses are loopback ones (harness/network.py), so nothing it starts can reach beyond
127.0.0.0/8; set TESTBED_HOST_NETWORK=1 to skip that (then WebRTC may pair on the host's address).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from kubernetes import client as k8s

from .harness import network, processes, services
from .harness import operator as operator_harness
from .harness.control_plane import ControlPlane, start_control_plane
from .harness.node import Node, start_node
from .harness.metrics_endpoint import MetricsEndpoint
from .harness.processes import Process
from .harness.voiceagents import Agents

FAKE_NODES = ("kwok-node-1", "kwok-node-2")


def pytest_collection_finish(session: pytest.Session) -> None:
    wants_testbed = any(item.get_closest_marker("testbed") for item in session.items)
    if wants_testbed and os.environ.get("TESTBED_HOST_NETWORK") != "1" and not network.in_closed_network():
        network.isolate_to_loopback()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and item.get_closest_marker("testbed"):
        for name, tail in processes.running_logs().items():
            clipped = "\n".join(line[:400] for line in tail.splitlines())
            report.sections.append((f"testbed log: {name} (last lines)", clipped))
    return report


@pytest.fixture(scope="session")
def testbed_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("testbed")


@pytest.fixture(scope="session")
def testbed_logs(testbed_workdir: Path) -> Path:
    return testbed_workdir / "logs"


@pytest.fixture(scope="session")
def control_plane(testbed_workdir: Path, testbed_logs: Path) -> Iterator[ControlPlane]:
    plane = start_control_plane(testbed_workdir / "control-plane", testbed_logs)
    try:
        for node in FAKE_NODES:
            plane.add_fake_node(node)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def node(control_plane: ControlPlane, testbed_workdir: Path, testbed_logs: Path) -> Iterator[Node]:
    real = start_node(control_plane, testbed_workdir / "node", testbed_logs)
    try:
        yield real
    finally:
        real.stop()


@pytest.fixture
def kube_api(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    with control_plane.api_client() as api:
        yield api


@pytest.fixture
def namespace(kube_api: k8s.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def livekit_server(testbed_workdir: Path, testbed_logs: Path) -> Iterator[services.LiveKit]:
    server = services.start_livekit(testbed_workdir, testbed_logs)
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def model_server(testbed_workdir: Path, testbed_logs: Path) -> Iterator[services.ModelServer]:
    server = services.start_ollama(testbed_workdir, testbed_logs)
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def speech_server(testbed_logs: Path) -> Iterator[services.SpeechServer]:
    server = services.start_speech_server(testbed_logs)
    yield server
    server.process.stop()


@pytest.fixture
def start_prometheus(testbed_workdir: Path, testbed_logs: Path) -> Iterator[Callable[..., services.Prometheus]]:
    started: list[services.Prometheus] = []

    def start(name: str, targets: list[str], **options) -> services.Prometheus:
        prometheus = services.start_prometheus(name, targets, testbed_workdir, testbed_logs, **options)
        started.append(prometheus)
        return prometheus

    yield start
    for prometheus in started:
        prometheus.process.stop()


@pytest.fixture
def serve_metrics() -> Iterator[Callable[..., MetricsEndpoint]]:
    endpoints: list[MetricsEndpoint] = []

    def serve(host: str = processes.LOOPBACK, port: int = 0) -> MetricsEndpoint:
        endpoint = MetricsEndpoint(host, port)
        endpoints.append(endpoint)
        return endpoint

    yield serve
    for endpoint in endpoints:
        endpoint.close()


@pytest.fixture
def spawn(testbed_logs: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def run(name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
            ready_url: str | None = None, timeout: float = 60.0) -> Process:
        process = processes.start(name, argv, testbed_logs, env=env)
        started.append(process)
        if ready_url:
            processes.wait_for_http(ready_url, process, timeout=timeout)
        return process

    yield run
    for process in reversed(started):
        process.stop()


@pytest.fixture
def agents(kube_api: k8s.ApiClient, namespace: str) -> Agents:
    agents = Agents(kube_api, namespace)
    agents.create_livekit_secret()
    return agents


@pytest.fixture(scope="session")
def operator_chart(control_plane: ControlPlane, testbed_workdir: Path) -> operator_harness.InstalledChart:
    """The chart installed once with real helm into "agent-worker", a namespace that enforces the
    restricted Pod Security Standard (so the chart's own pods prove they pass it)."""
    return operator_harness.install_chart(control_plane, testbed_workdir, "agent-worker",
                                          namespace_labels=operator_harness.RESTRICTED)


@pytest.fixture
def start_operator(control_plane: ControlPlane, operator_chart: operator_harness.InstalledChart,
                   spawn: Callable[..., Process]) -> Iterator[Callable[..., operator_harness.RunningOperator]]:
    """Afterwards, while an operator still runs, every VoiceAgent is deleted (their finalizers
    need one), so no later test meets them."""
    started: list[operator_harness.RunningOperator] = []

    def start(resync_seconds: float = 1.0) -> operator_harness.RunningOperator:
        command = operator_harness.operator_command(operator_chart.operator_kubeconfig, resync_seconds)
        process = spawn(f"voiceagent-operator-{len(started) + 1}", command.argv, env=command.env,
                        ready_url=command.health_url)
        started.append(operator_harness.RunningOperator(process, command))
        return started[-1]

    yield start
    running = [operator for operator in started if operator.process.alive()]
    if running:
        with control_plane.api_client() as api:
            operator_harness.delete_every_voiceagent(api, running[-1].process)
