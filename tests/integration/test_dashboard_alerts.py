"""The chart's Grafana dashboard and PrometheusRule against real data: after one real call, every
panel query and every alerting or recording rule, evaluated by a real Prometheus, returns series
(or, where a short run cannot have data, a shortened form named in SHORTENED does, with why).

The traffic (fixture `traffic`) is the product as a cluster runs it, on the test bed's real node:
the chart helm-installed with the operator image, VoiceAgents whose worker pods run the worker
image, a caller over WebRTC, and Prometheus discovering the operator and worker pods through the
apiserver with the jobs the Prometheus Operator makes of the chart's and the operator's
ServiceMonitors.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from aiohttp import web
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .harness import network, promql
from .harness.caller import call
from .harness.control_plane import ControlPlane
from .harness.fleet import Fleet, in_thread, node_spec, running_fleet, wait_for_pods
from .harness.operator import CHART
from .harness.processes import binary, wait_until
from .harness.voiceagents import WORKER_SELECTOR
from .harness.worker import REGISTERED, slower_model, voice_model
from .test_operator_resilience import SERVICE_MONITOR_CRD

pytestmark = pytest.mark.testbed

# The chart's release and the VoiceAgents' namespace (test_real_node's fleet uses others).
RELEASE, CHART_NAMESPACE, AGENTS_NAMESPACE = "dash", "dash", "dash-agents"
QUESTIONS = ["What is the weather like in Paris today?", "How far away is the moon from the earth?"]
# The main model behind this delay (the stand-in for a 70B beside an 8B, as in test_worker_room):
# every answer starts more than AgentWorkerTurnLatencyHigh's 1.5 s after the caller stops.
MAIN_MODEL_DELAY = 2.0
VOICEAGENT = "voice"
# Its worker pods land on the test bed's kwok nodes: Ready, but nothing answers on their metrics port.
UNREADABLE = "unreadable"
# The chart scrapes every 30 s (operator) and 15 s (workers): too few samples in a short run. Not
# 1 s: a scrape times out at the interval, and a worker pod on busy shared cores may take a second.
SCRAPE_INTERVAL_S = 2
# A worker pod starts in 30-90 s on two cores shared with other test runs.
POD_START_TIMEOUT = 360


@dataclass(frozen=True)
class Shortened:
    why: str
    expr: str  # checked instead; may use the dashboard's variables


# A query that cannot return data in a short run of real traffic is named here ("Panel title [refId]"
# or the rule's name) with why, and the shortened form checked instead. The traffic makes every other
# alerting condition real (a slow main model, a provider failing every other request, a fleet pinned
# at maxReplicas, a VoiceAgent with an invalid spec, one whose pods do not answer on their metrics
# port). An alert's `for` is not a reason: its expression is checked as it is, and the alert must
# have gone pending (firing takes the `for`, 10-15 minutes, to elapse).
SHORTENED: dict[str, Shortened] = {
    "VoiceAgentOperatorDown": Shortened(
        why="the operator serves the traffic, so it cannot be down during it; the series the alert "
            "reads must exist, per release namespace, with the ServiceMonitor's job",
        expr='sum by (namespace) (up{job="voiceagent-operator"})',
    ),
}


def _latency(values: list[float]) -> bool:
    return all(0 <= v < 60 for v in values) and max(values) > 0


# What a panel's values must look like, by the first metric name (part) its expression contains.
SENSIBLE: list[tuple[str, str, Callable[[list[float]], bool]]] = [
    ("preresponse_latency_seconds", "seconds, under a minute", _latency),
    ("_seconds_bucket", "seconds, under a minute", _latency),
    ("llm_cached_tokens_total", "tokens per second >= 0 (Ollama caches nothing it reports)", lambda vs: min(vs) >= 0),
    ("_tokens_total", "tokens per second >= 0, some > 0", lambda vs: min(vs) >= 0 and max(vs) > 0),
    # Cost per call-minute: spend over the rooms held (before "cost_usd_total" and "active_").
    ("avg_over_time(agent_worker_active_sessions", "USD per call-minute >= 0, some > 0",
     lambda vs: min(vs) >= 0 and max(vs) > 0),
    ("cost_usd_total", "USD per hour >= 0, some > 0 (tts-1 has a list price)", lambda vs: min(vs) >= 0 and max(vs) > 0),
    # Only >= 0: the worker creates a counter's series at its first increment, which rate() cannot
    # see, so one "spoken" and one "cut" filler in a run draw as zero.
    ("preresponses_total", "pre-responses per second >= 0", lambda vs: min(vs) >= 0),
    ("provider_errors_total", "errors per second >= 0, some > 0", lambda vs: min(vs) >= 0 and max(vs) > 0),
    ("active_", "rooms between 0 and 1, 1 during the call", lambda vs: min(vs) >= 0 and max(vs) == 1),
    ("_replicas", "exactly 1 (minReplicas = maxReplicas = 1)", lambda vs: set(vs) == {1.0}),
]


@dataclass(frozen=True)
class ChartMonitoring:
    """What the chart ships for monitoring, rendered by helm as the fleet's release installs it."""

    dashboard: dict[str, Any]
    rule_groups: list[dict[str, Any]]  # the PrometheusRule's spec.groups
    operator_monitor: dict[str, Any]  # the operator's ServiceMonitor


@dataclass(frozen=True)
class Traffic:
    """A Prometheus that scraped real traffic, and where and when that traffic ran."""

    prometheus_url: str
    scrape_interval_s: int
    namespace: str  # the VoiceAgent's, and its workers'
    start: float  # unix seconds
    end: float
    answered_turns: int  # turns in which the caller heard an answer


@pytest.fixture
def chart_monitoring(tmp_path) -> ChartMonitoring:
    env = {**os.environ, **{f"HELM_{kind}_HOME": str(tmp_path / "helm" / kind) for kind in ("CACHE", "CONFIG", "DATA")}}
    rendered = subprocess.run(
        [binary("helm"), "template", RELEASE, str(CHART), "--namespace", CHART_NAMESPACE,
         "--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true"],
        env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]

    def one(kind: str, name_part: str = "") -> dict[str, Any]:
        (found,) = [d for d in documents if d["kind"] == kind and name_part in d["metadata"]["name"]]
        return found

    return ChartMonitoring(json.loads(one("ConfigMap", "dashboard")["data"]["agent-worker.json"]),
                           one("PrometheusRule")["spec"]["groups"], one("ServiceMonitor"))


def every_other_completion_fails() -> Callable[[web.Request], web.Response | None]:
    """Answers the 1st, 3rd, ... chat completion with 503, as an overloaded provider does. livekit
    retries a 5xx at once, so every turn is still answered and the worker counts one recoverable
    error per turn."""
    completions = itertools.count(1)

    def refuse(request: web.Request) -> web.Response | None:
        if request.path.endswith("/chat/completions") and next(completions) % 2:
            return web.json_response({"error": {"message": "overloaded (test bed)", "type": "server_error"}}, status=503)
        return None

    return refuse


def slow_failing_main_model(base_url: str, host: str) -> AbstractAsyncContextManager[str]:
    """The main LLM as pods reach it at `host`: MAIN_MODEL_DELAY slower than `base_url`, and
    failing every other request."""
    return slower_model(base_url, MAIN_MODEL_DELAY, host=host, refuse=every_other_completion_fails())


@pytest.fixture
def service_monitor_api(kube_api) -> Iterator[None]:
    """The ServiceMonitor API (a minimal CRD, as the Prometheus Operator installs it), so the
    operator applies the worker fleet's ServiceMonitor; removed afterwards, and gone before the
    next test (which may expect the API missing)."""
    extensions = k8s.ApiextensionsV1Api(kube_api)
    name = SERVICE_MONITOR_CRD["metadata"]["name"]
    try:
        extensions.create_custom_resource_definition(SERVICE_MONITOR_CRD)
    except ApiException as error:
        if error.status != 409:  # left by a run that was cut short
            raise
    wait_until(lambda: _established(extensions, name), f"CRD {name} established", timeout=30)
    yield
    try:
        extensions.delete_custom_resource_definition(name)
    except ApiException as error:
        if error.status != 404:
            raise
    wait_until(lambda: not _exists(extensions.read_custom_resource_definition, name), f"CRD {name} gone", timeout=60)


def _established(extensions: k8s.ApiextensionsV1Api, name: str) -> bool:
    conditions = extensions.read_custom_resource_definition(name).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _exists(read: Callable[[str], Any], name: str) -> bool:
    try:
        read(name)
        return True
    except ApiException as error:
        if error.status == 404:
            return False
        raise


def deploy_voiceagents(fleet: Fleet, model_server, speech_server, model: str, main_url: str) -> dict[str, Any]:
    """"voice", pinned at one worker pod on the node (so at maxReplicas) whose main LLM is
    `main_url`, with a ServiceMonitor; "misconfigured": admitted by the CRD, refused by the
    operator (InvalidSpec on every resync); and UNREADABLE, one Ready pod on a kwok node whose
    active rooms the operator cannot read. Returns the ServiceMonitor the operator applied."""
    agents = fleet.agents
    spec = node_spec(fleet.livekit, model_server, speech_server, model=model, main_base_url=main_url,
                     # The filler's model straight from Ollama: only the main model is slow and failing.
                     preResponse={"model": model, "baseUrl": model_server.pod_base_url},
                     monitoring={"serviceMonitor": {"enabled": True}})
    # Every VoiceAgent at one worker: the replica panels expect exactly 1 (the operator scales an
    # invalid spec too, from its spec.scaling alone).
    spec["scaling"] = {"minReplicas": 1, "maxReplicas": 1, "targetActiveRoomsPerReplica": 1}
    agents.create(VOICEAGENT, spec)
    agents.create("misconfigured", {**spec, "pricing": {"tts-1": {"perMillionCharacters": 15}}})
    on_kwok = {key: value for key, value in spec.items() if key not in ("nodeSelector", "tolerations", "resources")}
    agents.create(UNREADABLE, {**on_kwok, "monitoring": {"serviceMonitor": {"enabled": False}}})
    (pod,) = wait_for_pods(agents.api, AGENTS_NAMESPACE, WORKER_SELECTOR.format(name=VOICEAGENT), 1,
                           "one Ready worker pod on the real node", POD_START_TIMEOUT)
    # Ready is livekit-agents' health check, which passes before the worker has registered; a room
    # created before that gets no job (livekit-server does not dispatch it to a later worker).
    wait_until(lambda: REGISTERED in fleet.logs.text(pod.metadata.name, "agent-worker"),
               f"worker pod {pod.metadata.name} to register with livekit-server", timeout=120)
    agents.wait_for_condition(VOICEAGENT, "MonitoringReady", "True", timeout=60, reason="ServiceMonitorApplied")
    agents.wait_for_condition("misconfigured", "Degraded", "True", timeout=60, reason="InvalidSpec")
    agents.wait_for_condition(UNREADABLE, "RoomsObserved", "False", timeout=90, reason="PodsUnreadable")
    return agents.custom.get_namespaced_custom_object("monitoring.coreos.com", "v1", AGENTS_NAMESPACE,
                                                      "servicemonitors", f"{VOICEAGENT}-worker")


def apiserver(plane: ControlPlane) -> dict[str, Any]:
    """How Prometheus' kubernetes_sd reaches the test bed's apiserver (as cluster admin)."""
    cert, key = plane.admin_certificate()
    return {"api_server": plane.server,
            "tls_config": {"ca_file": str(plane.ca), "cert_file": str(cert), "key_file": str(key)}}


def _wait_for_namespaces_gone(core: k8s.CoreV1Api) -> None:
    """A rerun's fleet needs the names a previous attempt's fleet is still deleting."""
    for name in (CHART_NAMESPACE, AGENTS_NAMESPACE):
        wait_until(lambda: not _exists(core.read_namespace, name), f"namespace {name} left by a previous run to go",
                   timeout=180)


@pytest.fixture
async def traffic(chart_monitoring, service_monitor_api, control_plane, node, livekit_server, model_server,
                  speech_server, start_prometheus, kube_api, testbed_workdir, tmp_path) -> AsyncIterator[Traffic]:
    """The chart's operator pod reconciling VoiceAgent "voice" (one worker pod on the real node)
    and "misconfigured", a caller asking QUESTIONS over WebRTC, and Prometheus discovering the
    operator's and the worker's pods through their Services' endpoints as the Prometheus Operator
    would from the chart's and the operator's ServiceMonitors (job, namespace, service, pod,
    container, endpoint; honorLabels as each says: see promql.scrape_config), evaluating the
    chart's rules. The main LLM is slow (MAIN_MODEL_DELAY) and fails every other request; with
    "misconfigured" beside "voice", every alert's condition really occurs. The fleet stays up
    while the test queries."""
    await asyncio.to_thread(_wait_for_namespaces_gone, k8s.CoreV1Api(kube_api))
    model = await asyncio.to_thread(voice_model, model_server)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": chart_monitoring.rule_groups}))
    with running_fleet(control_plane, node, livekit_server, testbed_workdir / "dashboard-fleet", release=RELEASE,
                       chart_namespace=CHART_NAMESPACE, agents_namespace=AGENTS_NAMESPACE) as fleet, \
            in_thread(slow_failing_main_model(model_server.base_url, network.NODE_IP)) as main_url:
        worker_monitor = await asyncio.to_thread(deploy_voiceagents, fleet, model_server, speech_server, model, main_url)
        access = apiserver(control_plane)
        scrape_configs = [promql.scrape_config(worker_monitor, access),
                          promql.scrape_config(chart_monitoring.operator_monitor, access)]
        prometheus = await asyncio.to_thread(start_prometheus, "dashboard", [], scrape_interval=f"{SCRAPE_INTERVAL_S}s",
                                             rule_files=[rules], scrape_configs=scrape_configs)
        await asyncio.to_thread(wait_until, lambda: _value(prometheus.url, "count(up == 1)") == 2,
                                "Prometheus to discover and scrape the worker and operator pods", None, 90)
        start = time.time()
        turns = await call(livekit_server.url, livekit_server.api_key, livekit_server.api_secret,
                           f"call-{uuid.uuid4().hex[:8]}", QUESTIONS, turn_timeout=90.0, join_timeout=90.0)
        await asyncio.to_thread(wait_until, lambda: _value(prometheus.url, "sum(agent_worker_active_sessions)") == 0,
                                "the worker to close the session", None, 60)
        await asyncio.sleep(3 * SCRAPE_INTERVAL_S)  # the last samples scraped and the rules evaluated on them
        yield Traffic(prometheus.url, SCRAPE_INTERVAL_S, AGENTS_NAMESPACE, start, time.time(),
                      sum(1 for turn in turns if turn.answer_text))


def alert_subjects(traffic: Traffic) -> dict[str, dict[str, str]]:
    """Labels each alert must carry in this traffic: what it names is what breached."""
    worker = {"namespace": traffic.namespace, "service": f"{VOICEAGENT}-worker"}
    return {
        "AgentWorkerTurnLatencyHigh": worker,
        "AgentWorkerProviderErrorRateHigh": {**worker, "provider": "ollama", "role": "main"},
        "VoiceAgentAtMaxReplicas": {"namespace": traffic.namespace, "voiceagent": VOICEAGENT},
        "VoiceAgentOperatorReconcileErrors": {"reason": "InvalidSpec"},
        "VoiceAgentWorkerRoomsUnreadable": {"namespace": traffic.namespace, "voiceagent": UNREADABLE},
    }


def _value(url: str, expr: str) -> float | None:
    result = promql.query(url, expr)
    return float(result[0]["value"][1]) if result else None


def _insensible(expr: str, values: list[float]) -> str | None:
    for part, expected, check in SENSIBLE:
        if part in expr:
            return None if check(values) else f"expected {expected}, got {min(values)}..{max(values)}"
    return None


@dataclass
class Evaluation:
    """Queries over the traffic's time range, and what they showed."""

    traffic: Traffic
    problems: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)

    @property
    def window(self) -> promql.TimeRange:
        return promql.TimeRange(self.traffic.start, self.traffic.end, self.traffic.scrape_interval_s)

    def series(self, expr: str) -> list[dict[str, Any]]:
        window = self.window
        return promql.query_range(self.traffic.prometheus_url, expr, window.start, window.end, window.interval_s)

    def values(self, expr: str, instant: bool = False) -> list[float]:
        if instant:
            return promql.finite_values(promql.query(self.traffic.prometheus_url, expr, self.traffic.end))
        return promql.finite_values(self.series(expr))


def check_panels(evaluation: Evaluation, dashboard: dict[str, Any]) -> int:
    """Every panel query for "All" and for the VoiceAgent's namespace, as the dashboard's variable
    lists it: each must draw sensible values. Returns how many panel queries there are."""
    traffic, window = evaluation.traffic, evaluation.window
    options = {name: promql.label_values(traffic.prometheus_url, label, match, window.start, window.end)
               for name, (label, match) in promql.variable_queries(dashboard).items()}
    if traffic.namespace not in options.get("namespace", []):
        evaluation.problems.append(f"variable namespace lists {options.get('namespace')}, not {traffic.namespace}")
    selections = {"All": {"namespace": promql.ALL}, traffic.namespace: {"namespace": [traffic.namespace]}}
    queries = promql.panel_queries(dashboard)
    for query in queries:
        shortened = SHORTENED.get(query.name)
        for label, selected in selections.items():
            expr = promql.expand(shortened.expr if shortened else query.expr, dashboard, selected, window, options)
            values = evaluation.values(expr, query.instant)
            evaluation.shown.append(f"{query.name} ({label}): {len(values)} samples")
            if not values:
                evaluation.problems.append(f"panel {query.name}, namespace {label}: no data from {expr}")
            elif reason := _insensible(query.expr, values):
                evaluation.problems.append(f"panel {query.name}, namespace {label}: {reason} from {expr}")
    return len(queries)


def check_rules(evaluation: Evaluation, groups: list[dict[str, Any]]) -> int:
    """Every rule as Prometheus evaluated it: healthy, its expression returned data over the
    traffic, an alert went pending naming what breached, a recording rule recorded series.
    Returns how many rules there are."""
    loaded = {rule["name"]: rule for rule in promql.loaded_rules(evaluation.traffic.prometheus_url)}
    subjects = alert_subjects(evaluation.traffic)
    rules = promql.rules_of(groups)
    for rule in rules:
        live, shortened = loaded.get(rule.name), SHORTENED.get(rule.name)
        expr = shortened.expr if shortened else rule.expr
        values = evaluation.values(expr)
        evaluation.shown.append(f"{rule.kind} {rule.name}: {len(values)} samples")
        if live is None or live.get("health") != "ok":
            evaluation.problems.append(f"rule {rule.name}: not evaluated cleanly by Prometheus: {live}")
        elif not values:
            evaluation.problems.append(f"{rule.kind} {rule.name}: no data from {expr}")
        elif rule.kind == "alert" and not shortened:
            subject = subjects.get(rule.name, {})
            alerts = evaluation.series(f'ALERTS{{alertname="{rule.name}"}}')
            if not any(subject.items() <= alert["metric"].items() for alert in alerts):
                evaluation.problems.append(f"alert {rule.name}: never went pending with labels {subject}; "
                                           f"it did with {[alert['metric'] for alert in alerts]}")
        elif rule.kind == "record" and not evaluation.values(rule.name):
            evaluation.problems.append(f"recording rule {rule.name}: no recorded series")
    return len(rules)


# Real WebRTC and a CPU model on shared cores: a run can lose to the machine's load (a filler that
# comes after the answer leaves no pre-response latency), so a failure is retried once.
@pytest.mark.flaky(reruns=1)
def test_every_panel_query_and_alert_rule_of_the_chart_returns_real_data(traffic: Traffic, chart_monitoring, record_property):
    evaluation = Evaluation(traffic)

    panels = check_panels(evaluation, chart_monitoring.dashboard)
    rules = check_rules(evaluation, chart_monitoring.rule_groups)

    turns = _value(traffic.prometheus_url, f'sum(agent_worker_turns_total{{namespace="{traffic.namespace}"}})')
    record_property("dashboard_alerts_evaluated", json.dumps(evaluation.shown))
    print(f"\n{panels} panel queries x 2 namespace choices, {rules} rules, {len(SHORTENED)} shortened; "
          f"{traffic.end - traffic.start:.0f} s of traffic, {turns} turns counted")
    for line in evaluation.shown:
        print(f"  {line}")
    assert not evaluation.problems, "\n".join(evaluation.problems)
    assert traffic.answered_turns > 0 and turns and turns >= traffic.answered_turns


def test_every_shortened_query_names_a_query_the_chart_has(chart_monitoring):
    names = {q.name for q in promql.panel_queries(chart_monitoring.dashboard)}
    names |= {rule.name for rule in promql.rules_of(chart_monitoring.rule_groups)}
    assert set(SHORTENED) <= names, set(SHORTENED) - names
