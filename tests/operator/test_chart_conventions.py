"""The chart as users meet it: as a subchart, twice in one cluster, its NOTES, `helm test`, alerts
that link their runbooks, and a README that says every right it grants and every value it takes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import CHART, NAMESPACED, by_kind, grants, helm, named, notes, render
from tools import ROOT

RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_URL = "https://github.com/agent-worker/agent-worker/blob/main/docs/runbooks.md#"
CHART_README = (CHART / "README.md").read_text()
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering")


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_chart_renders_and_lints_as_a_subchart_given_global_values(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "voice-platform", "version": "1.0.0",
        "dependencies": [{"name": "agent-worker", "version": yaml.safe_load((CHART / "Chart.yaml").read_text())["version"],
                          "repository": f"file://{CHART}"}],
    }))
    (parent / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "registry.example.com", "labels": {"team": "voice"}},
        "agent-worker": {"operator": {"replicas": 1}},
    }))
    helm(tmp_path, "dependency", "update", str(parent))
    documents = render(tmp_path, "--set", "global.environment=staging", release="platform", chart=parent)
    (deployment,) = by_kind(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 1, "the parent's values reach the subchart"
    out = helm(tmp_path, "lint", "--strict", str(parent), "--set", "global.environment=staging")
    assert "0 chart(s) failed" in out and "[ERROR]" not in out


@pytest.mark.parametrize("options", [[], NAMESPACED], ids=["cluster-wide", "namespaced"])
def test_two_releases_share_no_object_and_each_peers_through_its_own(tmp_path: Path, options: list[str]) -> None:
    first, second = (render(tmp_path, *options, release=name, namespace=f"{name}-system") for name in ("first", "second"))

    def owned(documents: list[dict[str, Any]]) -> set[tuple[str, str | None, str]]:
        return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
                for d in documents if d["kind"] != "CustomResourceDefinition"}  # crds/: installed once, shared

    assert owned(first) and not owned(first) & owned(second)
    for release, documents in (("first", first), ("second", second)):
        peering = f"{release}-agent-worker-operator"
        (deployment,) = by_kind(documents, "Deployment")
        assert f"--peering={peering}" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        peerings = by_kind(documents, "KopfPeering" if options else "ClusterKopfPeering")
        assert peerings and {p["metadata"]["name"] for p in peerings} == {peering}
        roles = [r for r in by_kind(documents, "Role" if options else "ClusterRole") if r["metadata"]["name"] == peering]
        assert roles and all({name for _, resource, verb, name in grants(role) if verb == "patch" and "kopfpeerings" in resource}
                             == {peering} for role in roles)


def test_a_namespaced_release_creates_no_cluster_role_or_binding_for_the_operator(tmp_path: Path) -> None:
    documents = render(tmp_path, *NAMESPACED)
    assert not by_kind(documents, "ClusterRoleBinding")
    assert {r["metadata"]["name"] for r in by_kind(documents, "ClusterRole")} == {
        "agent-worker-voiceagents-edit", "agent-worker-voiceagents-view"}, "only the aggregated roles for people"
    assert not render_with(tmp_path, NAMESPACED, "rbac.aggregateToDefaultRoles=false", kinds=CLUSTER_SCOPED)
    assert [(r["metadata"]["namespace"], r["roleRef"]["kind"]) for r in by_kind(documents, "RoleBinding")] == [
        ("voice", "Role"), ("support", "Role")]


def render_with(tmp_path: Path, options: list[str], setting: str, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    return [d for d in render(tmp_path, *options, "--set", setting) if d["kind"] in kinds]


@pytest.mark.parametrize("options", [[], NAMESPACED], ids=["cluster-wide", "namespaced"])
def test_notes_name_no_repository_path(tmp_path: Path, options: list[str]) -> None:
    text = notes(tmp_path, *options)
    assert "helm test agent-worker -n agent-worker" in text
    without_urls = re.sub(r"\b[a-z]+://\S+", "", text)  # https:// docs, oci:// chart
    assert not re.search(r"\b(manifests|docs|charts|operator|worker)/[\w./-]+", without_urls), without_urls
    assert "kubectl apply --server-side" in text, "the CRD upgrade step"


def test_helm_test_checks_the_operator_through_its_service_restricted_and_without_a_token(tmp_path: Path) -> None:
    documents = render(tmp_path, "--set", "operator.metricsPort=9191,operator.healthPort=8181")
    (pod,) = by_kind(documents, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    (deployment,) = by_kind(documents, "Deployment")
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    (service,) = by_kind(documents, "Service")
    # Kubernetes names a Service's address variable after it: upper case, dashes as underscores.
    host = service["metadata"]["name"].upper().replace("-", "_") + "_SERVICE_HOST"
    urls = {variable["name"]: variable["value"] for variable in container["env"]}
    assert urls == {"HEALTH_URL": f"http://$({host}):8181/healthz", "METRICS_URL": f"http://$({host}):9191/metrics"}
    assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} == {("metrics", 9191), ("health", 8181)}


def test_every_alert_links_its_runbook_and_every_runbook_says_what_to_do() -> None:
    runbooks = RUNBOOKS.read_text()
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", runbooks, re.M | re.S))
    for alert in _alerts():
        name = alert["alert"]
        assert alert["annotations"]["runbook_url"] == RUNBOOK_URL + name.lower(), name
        assert name in sections, f"docs/runbooks.md has no section ## {name}"
        for part in ("**Meaning.**", "**Impact.**", "**Diagnosis.**", "**Fix.**"):
            assert part in sections[name], (name, part)
    assert set(sections) == {alert["alert"] for alert in _alerts()}, "a runbook for an alert that is gone"


def test_the_operator_down_alert_watches_the_job_the_service_monitor_makes(tmp_path: Path) -> None:
    documents = render(tmp_path, "--set", "serviceMonitor.enabled=true")
    (monitor,) = by_kind(documents, "ServiceMonitor")
    (service,) = by_kind(documents, "Service")
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    (down,) = [a for a in _alerts() if a["alert"] == "VoiceAgentOperatorDown"]
    assert set(re.findall(r'up\{job="([^"]+)"\}', down["expr"])) == {job} == {"voiceagent-operator"}


def _readme_rows(heading: str) -> list[list[str]]:
    section = CHART_README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|") and not line.startswith("|---")][1:]


@pytest.mark.parametrize("options", [[], NAMESPACED], ids=["cluster-wide", "namespaced"])
def test_the_chart_readme_justifies_every_right_the_operator_gets(tmp_path: Path, options: list[str]) -> None:
    documented = set()
    for group, resources, verbs, _why in _readme_rows("RBAC"):
        group = "" if group == "core" else group.strip("`")
        for resource in re.findall(r"`([a-z/]+)`", resources):
            documented |= {(group, resource, verb.strip()) for verb in verbs.split(",")}
    documents = render(tmp_path, *options)
    roles = named(documents, "ClusterRole", "agent-worker-operator") + named(documents, "Role", "agent-worker-operator")
    granted = {(group, resource, verb) for role in roles for group, resource, verb, _ in grants(role)}
    assert granted and granted <= documented, granted - documented


def test_the_chart_readme_lists_every_value() -> None:
    def leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, value in values.items():
            path = f"{prefix}{key}"
            nested = isinstance(value, dict) and value and path not in ("operator.resources", "exampleVoiceAgent.spec",
                                                                       "grafanaDashboard.labels")
            out += leaves(value, f"{path}.") if nested else [path]
        return out

    listed = {key for row in _readme_rows("Values") for key in re.findall(r"`([\w.]+)`", row[0])}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert [key for key in leaves(values) if key not in listed] == []
