"""The chart's monitoring run as a cluster would run it, against a real Prometheus.

  query / query_range / label_values / loaded_rules   Prometheus' HTTP API
  finite_values(result)                               the sample values a panel would draw
  panel_queries(dashboard)                            every panel target of a Grafana dashboard
  TimeRange, expand(expr, ...)                        Grafana's variable substitution
  rules_of(groups)                                    alerting and recording rules of rule groups
  scrape_config(monitor, apiserver)                   what the Prometheus Operator makes of a
                                                      ServiceMonitor: a kubernetes_sd job
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# --- Prometheus' HTTP API ----------------------------------------------------------------------


def _get(url: str, path: str, params: Mapping[str, Any]) -> Any:
    address = f"{url.rstrip('/')}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(address, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:  # 400/422: a query Prometheus cannot parse or run
        body = json.load(error)
        raise ValueError(f"Prometheus rejected {dict(params)}: {body.get('error')}") from None
    if body.get("status") != "success":
        raise ValueError(f"Prometheus answered {body} to {dict(params)}")
    return body["data"]


def query(url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query's series (a vector)."""
    return _get(url, "/api/v1/query", {"query": expr, **({"time": at} if at is not None else {})})["result"]


def query_range(url: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """A range query's series (a matrix), as a Grafana time-series panel asks for them."""
    return _get(url, "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})["result"]


def label_values(url: str, label: str, match: str | None, start: float, end: float) -> list[str]:
    """What Grafana's `label_values(match, label)` lists."""
    params: dict[str, Any] = {"start": start, "end": end, **({"match[]": match} if match else {})}
    return _get(url, f"/api/v1/label/{label}/values", params)


def loaded_rules(url: str) -> list[dict[str, Any]]:
    """Every rule Prometheus evaluates, with its group's name under "group"."""
    return [{**rule, "group": group["name"]} for group in _get(url, "/api/v1/rules", {})["groups"]
            for rule in group["rules"]]


def finite_values(result: Sequence[Mapping[str, Any]]) -> list[float]:
    """Every sample of a vector or matrix that is a number (histogram_quantile over no
    observations gives NaN: a panel draws nothing there)."""
    samples = [pair for series in result for pair in series.get("values", [series.get("value")]) if pair]
    return [value for value in (float(pair[1]) for pair in samples) if math.isfinite(value)]


# --- Grafana -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def name(self) -> str:
        return f"{self.panel} [{self.ref_id}]"


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every target with an expression, rows' (collapsed rows' too) panels included."""
    found = []

    def walk(panels: Sequence[Mapping[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    instant = bool(target.get("instant")) and not target.get("range")
                    found.append(PanelQuery(panel["title"], target.get("refId", "A"), target["expr"], instant))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return found


def variable_queries(dashboard: Mapping[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Query variables' `label_values([match,] label)` as name -> (label, match)."""
    found = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        definition = variable["query"] if isinstance(variable["query"], str) else variable["query"]["query"]
        parsed = re.fullmatch(r"\s*label_values\(\s*(?:(.+),\s*)?(\w+)\s*\)\s*", definition)
        if not parsed:
            raise ValueError(f"variable {variable['name']}: only label_values(...) is understood, not {definition!r}")
        found[variable["name"]] = (parsed.group(2), parsed.group(1))
    return found


@dataclass(frozen=True)
class TimeRange:
    """A dashboard's time range and the intervals Grafana derives from it.

    `$__interval` is the range over the panel's max data points, at least the data source's scrape
    interval (Grafana's "min interval"); Grafana also rounds it to a "nice" step, which only
    matters for ranges longer than `max_data_points` scrape intervals. `$__rate_interval` is
    max($__interval + scrape interval, 4 x scrape interval): a rate always spans four scrapes."""

    start: float
    end: float
    scrape_interval_s: int
    max_data_points: int = 1000

    @property
    def range_s(self) -> int:
        return max(1, round(self.end - self.start))

    @property
    def interval_s(self) -> int:
        return max(math.ceil(self.range_s / self.max_data_points), self.scrape_interval_s)

    @property
    def rate_interval_s(self) -> int:
        return max(self.interval_s + self.scrape_interval_s, 4 * self.scrape_interval_s)

    def builtins(self) -> dict[str, str]:
        return {
            "__interval": f"{self.interval_s}s", "__interval_ms": str(self.interval_s * 1000),
            "__rate_interval": f"{self.rate_interval_s}s", "__rate_interval_ms": str(self.rate_interval_s * 1000),
            "__range": f"{self.range_s}s", "__range_s": str(self.range_s), "__range_ms": str(self.range_s * 1000),
        }


ALL = "$__all"  # Grafana's value for a variable's "All" option
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def _regex_escape(value: str) -> str:
    """Grafana's escaping of a value put into a regex inside a PromQL string: \\. for ., etc."""
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\" * 4))


def expand(expr: str, dashboard: Mapping[str, Any], selected: Mapping[str, str | Sequence[str]],
           time_range: TimeRange, options: Mapping[str, Sequence[str]] | None = None) -> str:
    """`expr` with every variable replaced as Grafana's Prometheus data source does it.

    `selected` holds each template variable's value: ALL, or the chosen values. A multi-value or
    "include All" variable becomes a regex: its values escaped, several as (a|b); All is the
    variable's allValue, or else every value in `options`. An unknown variable is an error."""
    definitions = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    builtins = time_range.builtins()

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(5)
        if match.group(2) or match.group(4):
            raise ValueError(f"{expr!r}: the format in {match.group(0)} is not supported here")
        if name in builtins:
            return builtins[name]
        if name not in definitions or definitions[name].get("type") == "datasource":
            raise ValueError(f"{expr!r} uses ${name}, which the dashboard does not define as a query variable")
        definition, chosen = definitions[name], selected[name]
        if chosen == ALL:
            if definition.get("allValue"):
                return definition["allValue"]
            chosen = (options or {})[name]
        values = [chosen] if isinstance(chosen, str) else list(chosen)
        if not (definition.get("multi") or definition.get("includeAll")):
            return values[0].replace("\\", "\\\\").replace("'", "\\'")
        escaped = [_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return _VARIABLE.sub(value, expr)


# --- Prometheus rules --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    group: str
    name: str  # the alert's name, or the recorded series' name
    kind: str  # "alert" | "record"
    expr: str
    for_: str | None = None


def rules_of(groups: Sequence[Mapping[str, Any]]) -> list[Rule]:
    """The rules of a rule file's (a PrometheusRule's spec's) `groups`."""
    return [
        Rule(group["name"], rule.get("alert") or rule["record"], "alert" if "alert" in rule else "record",
             rule["expr"].strip(), rule.get("for"))
        for group in groups for rule in group["rules"]
    ]


# --- Prometheus Operator -----------------------------------------------------------------------


def scrape_config(monitor: Mapping[str, Any], apiserver: Mapping[str, Any]) -> dict[str, Any]:
    """The scrape job the Prometheus Operator generates for `monitor`'s first endpoint (its
    default service discovery, kubernetes_sd role `endpoints`), reaching the cluster through
    `apiserver` (kubernetes_sd's `api_server` and `tls_config`).

    Its relabelling keeps the endpoints of Services whose labels match the selector, at the port
    the endpoint names, and gives each target job (the Service's name, or the value of the Service
    label `jobLabel` names), namespace, service, pod, container and endpoint (the port's name);
    instance is the address. With honorLabels false (the default) a scraped label of the same name
    is kept as exported_<name>. The scrape interval is left to the global one, and there is one
    shard (the operator's hashmod relabelling keeps every target)."""
    spec = monitor["spec"]
    endpoint = spec["endpoints"][0]
    unsupported = ({"relabelings", "metricRelabelings", "params", "targetPort", "scheme", "tlsConfig"} & set(endpoint)) \
        | ({"matchExpressions"} & set(spec["selector"])) | ({"any"} & set(spec.get("namespaceSelector", {})))
    if unsupported:
        raise NotImplementedError(f"ServiceMonitor {monitor['metadata']['name']}: {sorted(unsupported)} not replicated")
    meta = "__meta_kubernetes_"
    namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [monitor["metadata"]["namespace"]]

    def target(kind: str) -> dict[str, Any]:
        return {"source_labels": [f"{meta}endpoint_address_target_kind", f"{meta}endpoint_address_target_name"],
                "separator": ";", "regex": f"{kind};(.*)", "replacement": "${1}", "target_label": kind.lower()}

    relabel = [
        {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
        *({"action": "keep", "regex": f"({value});true",
           "source_labels": [f"{meta}service_label_{_label_name(key)}", f"{meta}service_labelpresent_{_label_name(key)}"]}
          for key, value in spec["selector"].get("matchLabels", {}).items()),
        {"action": "keep", "source_labels": [f"{meta}endpoint_port_name"], "regex": endpoint["port"]},
        target("Node"), target("Pod"),
        {"source_labels": [f"{meta}namespace"], "target_label": "namespace"},
        {"source_labels": [f"{meta}service_name"], "target_label": "service"},
        {"source_labels": [f"{meta}pod_name"], "target_label": "pod"},
        {"source_labels": [f"{meta}pod_container_name"], "target_label": "container"},
        {"action": "drop", "source_labels": [f"{meta}pod_phase"], "regex": "(Failed|Succeeded)"},
        {"source_labels": [f"{meta}service_name"], "target_label": "job", "replacement": "${1}"},
        *([{"source_labels": [f"{meta}service_label_{_label_name(spec['jobLabel'])}"], "target_label": "job",
            "regex": "(.+)", "replacement": "${1}"}] if spec.get("jobLabel") else []),
        {"target_label": "endpoint", "replacement": endpoint["port"]},
    ]
    return {
        "job_name": f"serviceMonitor/{monitor['metadata']['namespace']}/{monitor['metadata']['name']}/0",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "metrics_path": endpoint.get("path", "/metrics"),
        "kubernetes_sd_configs": [{"role": "endpoints", **apiserver, "namespaces": {"names": namespaces}}],
        "relabel_configs": relabel,
    }


def _label_name(name: str) -> str:
    """A Kubernetes label name as kubernetes_sd spells it in a meta label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)
