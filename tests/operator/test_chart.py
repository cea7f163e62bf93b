"""The Helm chart, the plain manifests rendered from it, the alert rules and the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from chart_render import CHART, NAMESPACED, by_kind, grants, helm, named, render
from tools import ROOT, run
from va_examples import ollama_spec

from agent_worker.metric_names import CATALOGUE
from voiceagent_operator import metrics as operator_metrics
from voiceagent_operator.builders import desired_children
from voiceagent_operator.kube import plural
from voiceagent_operator.naming import Owner
from voiceagent_operator.spec import parse_spec

MANIFESTS = ROOT / "manifests" / "agent-worker.yaml"
KUBERNETES = "1.33"
ALL_OPTIONS = [
    "--set", "prometheusRule.enabled=true,grafanaDashboard.enabled=true,serviceMonitor.enabled=true",
    "--set", "exampleVoiceAgent.enabled=true,operator.verbose=true,operator.priorityClassName=high",
    *NAMESPACED,
    "--set", "operator.nodeSelector.pool=system,operator.podAnnotations.team=voice",
    "--set", "operator.imagePullSecrets[0].name=regcred",
]


def validate(document: dict[str, Any]) -> None:
    """kubernetes-validate --strict for built-in kinds; our own CRDs' rules for our custom resources."""
    kind = document["kind"]
    if kind == "VoiceAgent":
        parse_spec(document["spec"])
    elif kind in ("ClusterKopfPeering", "KopfPeering"):
        assert set(document) == {"apiVersion", "kind", "metadata"}
    elif kind in ("ServiceMonitor", "PrometheusRule"):
        assert document["apiVersion"] == "monitoring.coreos.com/v1" and document["spec"]
    else:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_helm_lint_is_clean_with_defaults_and_with_every_option(tmp_path: Path) -> None:
    for options in ([], ALL_OPTIONS):
        out = helm(tmp_path, "lint", "--strict", str(CHART), *options)
        assert "0 chart(s) failed" in out
        assert "[WARNING]" not in out and "[ERROR]" not in out


@pytest.mark.parametrize("options", [[], ALL_OPTIONS], ids=["defaults", "all-options"])
def test_every_rendered_manifest_validates_strictly(tmp_path: Path, options: list[str]) -> None:
    documents = render(tmp_path, *options)
    assert by_kind(documents, "Deployment") and by_kind(documents, "CustomResourceDefinition")
    for document in documents:
        validate(document)


def test_the_optional_features_render_only_when_asked(tmp_path: Path) -> None:
    default = {d["kind"] for d in render(tmp_path)}
    everything = {d["kind"] for d in render(tmp_path, *ALL_OPTIONS)}
    assert not {"ServiceMonitor", "PrometheusRule", "VoiceAgent", "ConfigMap"} & default
    assert {"ServiceMonitor", "PrometheusRule", "VoiceAgent", "ConfigMap"} <= everything


def test_the_operator_pods_run_restricted(tmp_path: Path) -> None:
    (deployment,) = by_kind(render(tmp_path), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["args"][:3] == ["run", "--all-namespaces", "--peering=agent-worker-operator"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert deployment["spec"]["replicas"] == 2, "two replicas, Kopf peering picks the active one"
    assert pod["serviceAccountName"] == "agent-worker-operator"


def test_watching_some_namespaces_passes_them_to_the_operator_and_peers_in_each(tmp_path: Path) -> None:
    documents = render(tmp_path, *ALL_OPTIONS)
    (deployment,) = by_kind(documents, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=voice" in args and "--namespace=support" in args and "--all-namespaces" not in args
    assert [p["metadata"]["namespace"] for p in by_kind(documents, "KopfPeering")] == ["voice", "support"]
    assert not by_kind(documents, "ClusterKopfPeering")


def test_a_cluster_wide_operator_peers_cluster_wide(tmp_path: Path) -> None:
    documents = render(tmp_path)
    assert [p["metadata"]["name"] for p in by_kind(documents, "ClusterKopfPeering")] == ["agent-worker-operator"]
    (role,) = named(documents, "ClusterRole", "agent-worker-operator")
    assert ("kopf.dev", "clusterkopfpeerings", "patch", "agent-worker-operator") in grants(role)


def _rules(documents: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    (role,) = named(documents, "ClusterRole", name)
    return role["rules"]


@pytest.mark.parametrize("options", [[], ALL_OPTIONS], ids=["cluster-wide", "namespaced"])
def test_rbac_is_least_privilege_without_wildcards_or_secrets(tmp_path: Path, options: list[str]) -> None:
    documents = render(tmp_path, *options)
    roles = by_kind(documents, "ClusterRole") + by_kind(documents, "Role")
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            assert "secrets" not in rule["resources"]
    operator_roles = [role for role in roles if role["metadata"]["name"] == "agent-worker-operator"]
    assert operator_roles
    peering = "kopfpeerings" if options else "clusterkopfpeerings"
    needed = {
        ("agentworker.io", "voiceagents", "watch", "*"),
        ("agentworker.io", "voiceagents", "patch", "*"),
        ("agentworker.io", "voiceagents/status", "patch", "*"),
        ("agentworker.io", "voiceagents/finalizers", "update", "*"),  # OwnerReferencesPermissionEnforcement
        ("apps", "deployments", "create", "*"),
        ("apps", "deployments", "patch", "*"),
        ("", "pods", "list", "*"),
        ("", "pods", "patch", "*"),
        ("", "events", "create", "*"),
        ("monitoring.coreos.com", "servicemonitors", "patch", "*"),
        ("policy", "poddisruptionbudgets", "patch", "*"),
        ("", "persistentvolumeclaims", "create", "*"),
        ("kopf.dev", peering, "watch", "*"),
        ("kopf.dev", peering, "patch", "agent-worker-operator"),  # its own peering only
    }
    for role in operator_roles:
        granted = grants(role)
        assert needed <= granted, needed - granted
        risky = {(g, r, v) for g, r, v, _ in granted if v in ("update", "deletecollection", "escalate", "bind", "impersonate")}
        assert risky == {("agentworker.io", "voiceagents/finalizers", "update")}, "updates only the finalizers subresource"
    bindings = by_kind(documents, "ClusterRoleBinding") + by_kind(documents, "RoleBinding")
    assert bindings and all(
        b["subjects"] == [{"kind": "ServiceAccount", "name": "agent-worker-operator", "namespace": "agent-worker"}]
        for b in bindings)


def test_rbac_covers_every_kind_the_builders_produce(tmp_path: Path) -> None:
    """Server-side apply creates and patches; turning a feature off deletes; the apply layer reads first."""
    rules = _rules(render(tmp_path), "agent-worker-operator")
    owner, spec = Owner("x", "voice", "uid"), parse_spec(ollama_spec())
    children = desired_children(owner, spec, 1, monitoring_api=True)
    for manifest in children.present + children.absent:
        group = manifest["apiVersion"].rpartition("/")[0]
        resource = plural(manifest["kind"])
        verbs = {v for r in rules if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}
        assert {"get", "create", "patch", "delete"} <= verbs, (group, resource, verbs)


def test_users_with_edit_can_scale_voiceagents(tmp_path: Path) -> None:
    rules = _rules(render(tmp_path), "agent-worker-voiceagents-edit")
    assert any("voiceagents/scale" in rule["resources"] and "patch" in rule["verbs"] for rule in rules)


def test_the_plain_manifests_are_the_chart_rendered_with_defaults(tmp_path: Path) -> None:
    rendered = helm(tmp_path, "template", "agent-worker", str(CHART), "--namespace", "agent-worker", "--include-crds")
    committed = MANIFESTS.read_text()
    assert committed.startswith("# Generated by `make generate`")
    assert committed.split("\n", 1)[1] == rendered, "manifests/agent-worker.yaml is stale: run `make generate`"


def test_the_prometheus_rule_embeds_the_tested_alert_file(tmp_path: Path) -> None:
    (rule,) = by_kind(render(tmp_path, *ALL_OPTIONS), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    assert "SUCCESS: 8 rules found" in run("promtool", "check", "rules", str(CHART / "files" / "alerts.yaml"))
    assert "SUCCESS" in run("promtool", "test", "rules", "alerts_test.yaml", cwd=CHART / "files")


def test_the_dashboard_is_labelled_for_the_grafana_sidecar_and_covers_the_fleet(tmp_path: Path) -> None:
    (configmap,) = [d for d in by_kind(render(tmp_path, *ALL_OPTIONS), "ConfigMap") if "dashboard" in d["metadata"]["name"]]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["agent-worker.json"])
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("turn latency", "pre-response latency", "by stage", "tokens", "cost per hour", "cost per call-minute", "active rooms", "replicas"):
        assert topic in titles


def _exported_names() -> set[str]:
    """Series names the worker and the operator export (counters get _total, histograms _bucket...)."""
    names = set()
    for metric in CATALOGUE:
        suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}[metric.kind]
        names |= {metric.name + suffix for suffix in suffixes}
    collectors = [value for value in vars(operator_metrics).values() if isinstance(value, MetricWrapperBase)]
    for collector in collectors:
        for family in collector.describe():
            names |= {family.name, family.name + "_total", family.name + "_bucket", family.name + "_sum", family.name + "_count"}
    return names


def test_alerts_and_dashboard_use_only_metrics_that_exist() -> None:
    exported = _exported_names()
    texts = [(CHART / "files" / "alerts.yaml").read_text(), (CHART / "files" / "dashboard.json").read_text()]
    # Not the middle of a recording rule's level:metric:operation name.
    used = {name for text in texts for name in re.findall(r"(?<!:)\b((?:agent_worker|voiceagent_operator)_[a-z_]+)\b", text)}
    assert used, "the pattern found the metric names"
    assert used <= exported, used - exported
