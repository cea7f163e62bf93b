"""The chart's RBAC on a real apiserver: a namespaced release (operator.watchNamespaces) grants
Roles in its watched namespaces and nothing cluster-wide, and the operator, running with a token of
that release's ServiceAccount (TokenRequest API) and nothing else, reconciles a VoiceAgent to its
Deployment and scales it without a single refused request; two releases of the chart, each with its
own Kopf peering, install side by side in one cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s

from .harness import releases
from .harness.control_plane import ControlPlane
from .harness.processes import wait_until
from .harness.voiceagents import Agents, local_spec

pytestmark = pytest.mark.testbed

# What the operator's log says when Kopf or the operator is refused (Kopf's words for a 403 it
# falls back from, and the apiserver's reason).
REFUSALS = ("Forbidden", "Not enough permissions", "403")


@dataclass(frozen=True)
class NamespacedRelease:
    release: str
    namespace: str  # where the chart (its operator, ServiceAccount) is installed
    watched: str  # the one namespace it serves
    account: str  # its ServiceAccount, Roles and peering name
    user: str  # the ServiceAccount as the apiserver names it
    kubeconfig: Path  # a token of that ServiceAccount


@pytest.fixture(scope="module")
def namespaced_release(control_plane: ControlPlane, testbed_workdir: Path) -> Iterator[NamespacedRelease]:
    suffix = uuid.uuid4().hex[:6]
    release, namespace, watched = f"team-{suffix}", f"team-{suffix}-system", f"team-{suffix}-voice"
    workdir = testbed_workdir / release
    workdir.mkdir()
    with control_plane.api_client() as api:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": watched}})
        Agents(api, watched).create_livekit_secret()
    releases.install(control_plane, workdir, release, namespace, "--set", f"operator.watchNamespaces={{{watched}}}")
    account = releases.operator_account(release)
    yield NamespacedRelease(release, namespace, watched, account, f"system:serviceaccount:{namespace}:{account}",
                            control_plane.kubeconfig_for_service_account(namespace, account))
    releases.uninstall(control_plane, workdir, release, namespace)
    with control_plane.api_client() as api:
        k8s.CoreV1Api(api).delete_namespace(watched)


def test_a_namespaced_release_grants_roles_in_its_watched_namespace_and_nothing_cluster_wide(
        control_plane, namespaced_release, kube_api):
    release = namespaced_release
    rbac = k8s.RbacAuthorizationV1Api(kube_api)
    selector = f"app.kubernetes.io/instance={release.release}"
    assert rbac.list_cluster_role_binding(label_selector=selector).items == []
    # Cluster-wide, only the roles that let people with `edit`/`view` use VoiceAgents (aggregated).
    assert sorted(r.metadata.name for r in rbac.list_cluster_role(label_selector=selector).items) == [
        f"{release.release}-agent-worker-voiceagents-edit", f"{release.release}-agent-worker-voiceagents-view"]
    (binding,) = rbac.list_namespaced_role_binding(release.watched, label_selector=selector).items
    assert [(s.kind, s.namespace, s.name) for s in binding.subjects] == [("ServiceAccount", release.namespace, release.account)]

    def may(verb: str, resource: str, namespace: str | None, **attributes: str) -> bool:
        return releases.can(kube_api, release.user, verb, resource, namespace, **attributes)

    here = release.watched
    assert may("patch", "deployments", here, group="apps") and may("list", "pods", here)
    assert may("update", "voiceagents", here, group="agentworker.io", subresource="finalizers")
    assert may("patch", "kopfpeerings", here, group="kopf.dev", name=release.account)
    # Nowhere else, and nothing cluster-scoped: not its own namespace, not another, not all of them.
    for elsewhere in (release.namespace, "default", None):
        assert not may("patch", "deployments", elsewhere, group="apps"), elsewhere
        assert not may("list", "pods", elsewhere), elsewhere
    assert not may("patch", "kopfpeerings", here, group="kopf.dev", name="another-release")
    assert not may("list", "namespaces", None)
    assert not may("watch", "customresourcedefinitions", None, group="apiextensions.k8s.io")
    assert not may("get", "secrets", here)


def test_the_operator_reconciles_and_scales_with_the_namespaced_roles_alone(
        control_plane, namespaced_release, spawn):
    release = namespaced_release
    command = releases.namespaced_operator(release.kubeconfig, [release.watched], peering=release.account)
    operator = spawn("voiceagent-operator-namespaced", command.argv, env=command.env, ready_url=command.health_url)
    with control_plane.api_client() as api:
        agents = Agents(api, release.watched)

        def workers() -> k8s.V1Deployment | None:
            found = agents.apps.list_namespaced_deployment(release.watched, field_selector="metadata.name=local-worker")
            return found.items[0] if found.items else None

        agents.create("local", local_spec(scaling={"minReplicas": 1, "maxReplicas": 3}))
        try:
            agents.wait_for_condition("local", "Ready", "True", operator, timeout=90)
            assert workers().spec.replicas == 1
            # `kubectl scale va/local --replicas=2`: the scale subresource pins spec.replicas.
            agents.custom.patch_namespaced_custom_object_scale(
                "agentworker.io", "v1alpha1", release.watched, "voiceagents", "local", {"spec": {"replicas": 2}})
            wait_until(lambda: (workers().status.ready_replicas or 0) == 2 and workers().spec.replicas == 2,
                       "the operator to scale local-worker to 2 ready replicas", operator, timeout=90)
            wait_until(lambda: agents.get("local")["status"].get("readyReplicas") == 2, "status.readyReplicas=2",
                       operator, timeout=60)
        finally:
            agents.delete("local")  # its finalizer needs the running operator
            wait_until(lambda: not agents.exists("local"), "VoiceAgent local to be deleted", operator, timeout=60)

    requests = control_plane.audit_events(release.user)
    refused = [f"{e['verb']} {e['requestURI']}" for e in requests if (e.get("responseStatus") or {}).get("code") == 403]
    assert refused == []
    assert {e["objectRef"].get("namespace") for e in requests if e.get("objectRef")} == {release.watched}
    written = {(e["objectRef"]["resource"], e["objectRef"].get("name")) for e in requests if e["verb"] == "patch"}
    assert ("kopfpeerings", release.account) in written, "it peered through its own release's KopfPeering"
    assert ("deployments", "local-worker") in written
    log = operator.log_text()
    assert not [line for line in log.splitlines() if any(word in line for word in REFUSALS)]


def test_two_cluster_wide_releases_and_a_namespaced_one_share_a_cluster(
        control_plane, operator_chart, namespaced_release, testbed_workdir, kube_api):
    """The session's release "agent-worker" is cluster-wide; a second cluster-wide release installs
    beside it (helm refuses an object another release owns, so any shared name would fail here),
    each with its own ClusterKopfPeering, ClusterRole and binding; removing it leaves the first whole."""
    workdir = testbed_workdir / "second-release"
    workdir.mkdir()
    custom, rbac = k8s.CustomObjectsApi(kube_api), k8s.RbacAuthorizationV1Api(kube_api)

    def peerings() -> set[str]:
        return {p["metadata"]["name"] for p in custom.list_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings")["items"]}

    releases.install(control_plane, workdir, "second", "second-system")
    try:
        first, second = releases.operator_account(operator_chart.release), releases.operator_account("second")
        assert {first, second} <= peerings()
        for name in (first, second):
            rbac.read_cluster_role(name)
            rbac.read_cluster_role_binding(name)
        namespaced = custom.list_namespaced_custom_object("kopf.dev", "v1", namespaced_release.watched, "kopfpeerings")
        assert [p["metadata"]["name"] for p in namespaced["items"]] == [namespaced_release.account]
    finally:
        releases.uninstall(control_plane, workdir, "second", "second-system")
    assert first in peerings() and second not in peerings()
    rbac.read_cluster_role_binding(first)
