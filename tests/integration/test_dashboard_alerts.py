"""The chart's Grafana dashboard and PrometheusRule against real data: after one real call, every
panel query and every alerting or recording rule, evaluated by a real Prometheus, returns series
(or, where a short run cannot have data, a shortened form named in SHORTENED does, with why).

The traffic is a fixture (`traffic`) that leaves behind a Prometheus which has scraped the real
worker and operator with the target labels a cluster would give them; a run on a real node swaps
that fixture and keeps the checks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from kubernetes import client as k8s

from voiceagent_operator.builders.monitoring import service_monitor
from voiceagent_operator.naming import Owner
from voiceagent_operator.spec import parse_spec

from .harness import promql
from .harness.caller import call
from .harness.operator import CHART, RELEASE
from .harness.processes import LOOPBACK, binary, free_port, wait_until
from .harness.voiceagents import local_spec
from .harness.worker import slower_model, voice_model, worker_process  # noqa: F401 (fixture)

pytestmark = pytest.mark.testbed

QUESTIONS = ["What is the weather like in Paris today?", "How far away is the moon from the earth?"]
# The main model behind this delay (the stand-in for a 70B beside an 8B, as in test_worker_room):
# every answer starts more than AgentWorkerTurnLatencyHigh's 1.5 s after the caller stops.
MAIN_MODEL_DELAY = 2.0
VOICEAGENT = "voice"
SCRAPE_INTERVAL_S = 1  # the chart scrapes every 30 s (operator) and 15 s (workers): too few samples in a short run


@dataclass(frozen=True)
class Shortened:
    why: str
    expr: str  # checked instead; may use the dashboard's variables


# A query that cannot return data in a short run of real traffic is named here ("Panel title [refId]"
# or the rule's name) with why, and the shortened form checked instead. None needs one today: the
# traffic makes every alerting condition real (a slow main model, a provider failing every other
# request, a fleet pinned at maxReplicas, a VoiceAgent with an invalid spec). An alert's `for` is
# not a reason: its expression is checked as it is, and the alert must have gone pending (firing
# takes the `for`, 10-15 minutes, to elapse).
SHORTENED: dict[str, Shortened] = {}


def _latency(values: list[float]) -> bool:
    return all(0 <= v < 60 for v in values) and max(values) > 0


# What a panel's values must look like, by the first metric name (part) its expression contains.
SENSIBLE: list[tuple[str, str, Callable[[list[float]], bool]]] = [
    ("preresponse_latency_seconds", "seconds, under a minute", _latency),
    ("_seconds_bucket", "seconds, under a minute", _latency),
    ("llm_cached_tokens_total", "tokens per second >= 0 (Ollama caches nothing it reports)", lambda vs: min(vs) >= 0),
    ("_tokens_total", "tokens per second >= 0, some > 0", lambda vs: min(vs) >= 0 and max(vs) > 0),
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
    """What the chart ships for monitoring, rendered by helm as a release installs it."""

    dashboard: dict[str, Any]
    rule_groups: list[dict[str, Any]]  # the PrometheusRule's spec.groups
    operator_monitor: dict[str, Any]  # the operator's ServiceMonitor
    operator_service: dict[str, Any]  # the Service it selects


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
        [binary("helm"), "template", RELEASE, str(CHART), "--namespace", "agent-worker",
         "--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true"],
        env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]

    def one(kind: str, name_part: str = "") -> dict[str, Any]:
        (found,) = [d for d in documents if d["kind"] == kind and name_part in d["metadata"]["name"]]
        return found

    monitor = one("ServiceMonitor")
    service = next(d for d in documents if d["kind"] == "Service"
                   and d["spec"]["selector"] == monitor["spec"]["selector"]["matchLabels"])
    return ChartMonitoring(json.loads(one("ConfigMap", "dashboard")["data"]["agent-worker.json"]),
                           one("PrometheusRule")["spec"]["groups"], monitor, service)


@asynccontextmanager
async def failing_every_other_request(base_url: str) -> AsyncIterator[str]:
    """An OpenAI-compatible base URL before `base_url` that answers the 1st, 3rd, ... chat
    completion with 503, as an overloaded provider does. livekit retries a 5xx at once, so every
    turn is still answered and the worker counts one recoverable error per turn."""
    upstream = base_url.removesuffix("/v1")
    completions = itertools.count(1)

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.endswith("/chat/completions") and next(completions) % 2:
            return web.json_response({"error": {"message": "overloaded (test bed)", "type": "server_error"}}, status=503)
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with client.request(request.method, upstream + request.path_qs, data=body, headers=headers) as answer:
            response = web.StreamResponse(status=answer.status, headers={
                "Content-Type": answer.headers.get("Content-Type", "application/json")})
            try:
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the worker gave up on this answer
            return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    port = free_port()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as client:
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, port).start()
        try:
            yield f"http://{LOOPBACK}:{port}/v1"
        finally:
            await runner.cleanup()


def _as_dict(api: k8s.ApiClient, obj: Any) -> dict[str, Any]:
    return api.sanitize_for_serialization(obj)


def deploy_voiceagents(agents, operator, metrics_port: int) -> None:
    """"voice", pinned at one worker (so at maxReplicas) whose metrics are on `metrics_port`, and
    "misconfigured": admitted by the CRD, refused by the operator (InvalidSpec on every resync)."""
    agents.create(VOICEAGENT, local_spec(
        metricsPort=metrics_port,
        scaling={"minReplicas": 1, "maxReplicas": 1, "targetActiveRoomsPerReplica": 1},
        monitoring={"serviceMonitor": {"enabled": True}}))
    agents.create("misconfigured", local_spec(pricing={"tts-1": {"perMillionCharacters": 15}}))
    wait_until(lambda: len(agents.worker_pods(VOICEAGENT)) == 1, "one Ready worker pod", operator.process, timeout=60)
    agents.wait_for_condition("misconfigured", "Degraded", "True", operator.process, reason="InvalidSpec")


def cluster_scrape_configs(agents, operator, chart: ChartMonitoring, operator_namespace: str) -> list[dict[str, Any]]:
    """The scrape jobs a Prometheus Operator would make of the worker's ServiceMonitor (as the
    operator builds it for "voice", with its live Service and kwok pod) and of the chart's
    operator ServiceMonitor (with the chart's Service and one of the chart's operator pods, the
    operator from this checkout answering for it)."""
    api, voice = agents.api, agents.get(VOICEAGENT)
    worker_service = agents.core.read_namespaced_service(Owner.of(voice).worker, agents.namespace)
    selector = ",".join(f"{k}={v}" for k, v in chart.operator_monitor["spec"]["selector"]["matchLabels"].items())
    operator_pod = agents.core.list_namespaced_pod(operator_namespace, label_selector=selector).items[0]
    return [
        promql.scrape_config(service_monitor(Owner.of(voice), parse_spec(voice["spec"])),
                             _as_dict(api, worker_service), _as_dict(api, agents.worker_pods(VOICEAGENT)[0])),
        promql.scrape_config(chart.operator_monitor, chart.operator_service, _as_dict(api, operator_pod),
                             address=urllib.parse.urlsplit(operator.command.metrics_url).netloc),
    ]


@pytest.fixture
async def traffic(chart_monitoring, operator_chart, start_operator, agents, worker_process,  # noqa: F811
                  livekit_server, model_server, start_prometheus, tmp_path) -> Traffic:
    """The operator from this checkout reconciling VoiceAgent "voice" (one kwok pod), the real
    worker standing in for that pod (it serves metrics on the pod's port, so the operator's pod
    scrape reaches it), a caller asking QUESTIONS over WebRTC, and Prometheus scraping the worker
    and the operator with the target labels a cluster gives them (job, namespace, service, pod,
    container, endpoint, and honorLabels as the ServiceMonitors say: see promql.scrape_config),
    evaluating the chart's rules. The main LLM is slow (MAIN_MODEL_DELAY) and fails every other
    request; with "misconfigured" beside "voice", every alert's condition really occurs."""
    operator = start_operator()
    metrics_port = free_port()
    deploy_voiceagents(agents, operator, metrics_port)
    scrape_configs = cluster_scrape_configs(agents, operator, chart_monitoring, operator_chart.namespace)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": chart_monitoring.rule_groups}))

    model = await asyncio.to_thread(voice_model, model_server)
    async with slower_model(model_server.base_url, MAIN_MODEL_DELAY) as slow, failing_every_other_request(slow) as main:
        await asyncio.to_thread(worker_process, metrics_port=metrics_port, AGENT_LLM_MODEL=model,
                                AGENT_LLM_BASE_URL=main, AGENT_FAST_LLM_MODEL=model)
        prometheus = await asyncio.to_thread(start_prometheus, "dashboard", [], rule_files=[rules],
                                             scrape_configs=scrape_configs)
        await asyncio.to_thread(wait_until, lambda: _value(prometheus.url, "count(up == 1)") == 2,
                                "Prometheus to scrape the worker and the operator", None, 30)
        start = time.time()
        turns = await call(livekit_server.url, livekit_server.api_key, livekit_server.api_secret,
                           f"call-{uuid.uuid4().hex[:8]}", QUESTIONS, turn_timeout=60.0)
    await asyncio.to_thread(wait_until, lambda: _value(prometheus.url, "sum(agent_worker_active_sessions)") == 0,
                            "the worker to close the session", None, 30)
    await asyncio.sleep(3 * SCRAPE_INTERVAL_S)  # the last samples scraped and the rules evaluated on them
    return Traffic(prometheus.url, SCRAPE_INTERVAL_S, agents.namespace, start, time.time(),
                   sum(1 for turn in turns if turn.answer_text))


def alert_subjects(traffic: Traffic) -> dict[str, dict[str, str]]:
    """Labels each alert must carry in this traffic: what it names is what breached."""
    worker = {"namespace": traffic.namespace, "service": f"{VOICEAGENT}-worker"}
    return {
        "AgentWorkerTurnLatencyHigh": worker,
        "AgentWorkerProviderErrorRateHigh": {**worker, "provider": "ollama", "role": "main"},
        "VoiceAgentAtMaxReplicas": {"namespace": traffic.namespace, "voiceagent": VOICEAGENT},
        "VoiceAgentOperatorReconcileErrors": {"reason": "InvalidSpec"},
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
