"""Which mode `voiceagent-operator run` tells Kopf to run in: scanning the cluster (listing namespaces,
watching CRDs, rights only a cluster-wide release has) or serving named namespaces only."""

from __future__ import annotations

import pytest

from voiceagent_operator.cli import scans_cluster
from voiceagent_operator.options import OperatorOptions


@pytest.mark.parametrize("args", [
    ["--namespace=team-a"],
    ["-n", "team-a", "-n", "team-b"],
    ["--namespace", "team-a", "--peering=team"],
    ["-nteam-a", "--standalone"],
])
def test_namespaces_named_exactly_need_no_cluster_scan(args: list[str]) -> None:
    assert scans_cluster(args) is False


@pytest.mark.parametrize("args", [
    [],
    ["--all-namespaces"],
    ["-A", "--peering=x"],
    ["--namespace=team-*"],  # a glob: Kopf must list namespaces to match it
    ["-n", "team-a", "-n", "!team-b"],
    ["--namespace=team-a,team-b"],
    ["-n", "team-a", "--all-namespaces"],
])
def test_all_namespaces_or_a_pattern_scans_the_cluster(args: list[str]) -> None:
    assert scans_cluster(args) is True


def test_the_handlers_read_the_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OperatorOptions().scan_cluster is True
    monkeypatch.setenv("VOICEAGENT_SCAN_CLUSTER", "false")
    assert OperatorOptions().scan_cluster is False
