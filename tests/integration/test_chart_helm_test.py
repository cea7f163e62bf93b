"""`helm test` of the chart on the test bed's real node: the chart's operator pod runs from the
operator image in a namespace that enforces the restricted Pod Security Standard, and the chart's
test pod (the same image, restricted, no ServiceAccount token) reaches the operator's /healthz and
/metrics through its Service, over the node's pod network (no DNS, nothing outside the cluster)."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from .harness.fleet import install_chart
from .harness.operator import helm

pytestmark = pytest.mark.testbed

RELEASE, CHART_NAMESPACE, WATCHED = "checked", "checked", "checked-voice"


def test_helm_test_passes_against_the_operator_pod_on_the_real_node(control_plane, node, testbed_workdir, kube_api):
    workdir = testbed_workdir / "helm-test"
    workdir.mkdir()
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": WATCHED}})
    try:
        install_chart(control_plane, workdir, RELEASE, CHART_NAMESPACE, watched=WATCHED)
        result = helm(control_plane, workdir, "test", RELEASE, "--namespace", CHART_NAMESPACE, "--logs", "--timeout=180s")
        output = result.stdout + result.stderr
        assert "Phase:          Succeeded" in output, output
        assert "ok http://" in output and "/healthz" in output and "/metrics" in output, output
    finally:
        helm(control_plane, workdir, "uninstall", RELEASE, "--namespace", CHART_NAMESPACE, "--wait")
        core.delete_namespace(CHART_NAMESPACE)
        core.delete_namespace(WATCHED)
