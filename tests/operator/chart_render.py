"""Rendering the Helm chart with the real helm, for the chart's tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml
from tools import ROOT, run

CHART = ROOT / "charts" / "agent-worker"
NAMESPACED = ["--set", "operator.watchNamespaces={voice,support}"]


def helm(tmp_path: Path, *args: str, cwd: Path = ROOT) -> str:
    """helm with its cache, config and data under `tmp_path` (never the user's)."""
    return run("helm", *args, cwd=cwd, home=tmp_path / "helm")


def render(tmp_path: Path, *options: str, release: str = "agent-worker", namespace: str = "agent-worker",
           chart: Path = CHART) -> list[dict[str, Any]]:
    """`helm template` (CRDs included) as YAML documents."""
    out = helm(tmp_path, "template", release, str(chart), "--namespace", namespace, "--include-crds", *options)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def named(documents: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [d for d in by_kind(documents, kind) if d["metadata"]["name"] == name]


def grants(role: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, resourceName or "*") for every right a Role or ClusterRole gives."""
    return {
        (group, resource, verb, name)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", ["*"])
    }


def notes(tmp_path: Path, *options: str) -> str:
    """The chart's NOTES.txt as `helm install` prints it: `helm template` leaves NOTES out, so a copy
    of the chart renders it with `tpl` into a ConfigMap."""
    copy = tmp_path / "notes-chart"
    shutil.copytree(CHART, copy)
    (copy / "files" / "NOTES.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (copy / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "files/NOTES.txt") . | quote }}\n'
    )
    (configmap,) = named(render(tmp_path, *options, chart=copy), "ConfigMap", "notes")
    return configmap["data"]["notes"]

