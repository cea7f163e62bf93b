"""More releases of the chart on the test bed's apiserver, beside the session's cluster-wide one
(harness/operator.py): a namespaced release (operator.watchNamespaces) and the operator from this
checkout run as such a release's ServiceAccount, as the chart's pod would run it.

  install(...)            `helm install` of charts/agent-worker with some values, into a new namespace
  uninstall(...)          `helm uninstall` and the release's namespace deleted
  namespaced_operator(...) the operator command for a namespaced release (its namespaces, its peering)
  can(...)                a SubjectAccessReview: may a user do a verb on a resource, here
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client as k8s

from .control_plane import ControlPlane
from .operator import CHART, OPERATOR_PROGRAM, OperatorCommand, helm
from .processes import LOOPBACK, free_port


def operator_account(release: str) -> str:
    """The chart's ServiceAccount (and Role, peering) name for `release`, as its fullname helper makes
    it: <release>-agent-worker-operator, or <release>-operator when the release names the chart."""
    fullname = release if "agent-worker" in release else f"{release}-agent-worker"
    return f"{fullname}-operator"


def install(plane: ControlPlane, workdir: Path, release: str, namespace: str, *values: str) -> None:
    """Creates `namespace` and helm-installs `release` of the chart there with `values` (helm flags),
    waiting for its operator pods (kwok's stand-ins: they run nothing)."""
    with plane.api_client() as api:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    helm(plane, workdir, "install", release, str(CHART), "--namespace", namespace, *values, "--wait", "--timeout=120s")


def uninstall(plane: ControlPlane, workdir: Path, release: str, namespace: str) -> None:
    helm(plane, workdir, "uninstall", release, "--namespace", namespace, "--wait")
    with plane.api_client() as api:
        k8s.CoreV1Api(api).delete_namespace(namespace)


def namespaced_operator(kubeconfig: Path, namespaces: list[str], peering: str, resync_seconds: float = 1.0) -> OperatorCommand:
    """`voiceagent-operator run --namespace=... --peering=...` as the chart's Deployment runs it for
    a namespaced release, on free loopback ports."""
    metrics_port, health_port = free_port(), free_port()
    health_url = f"http://{LOOPBACK}:{health_port}/healthz"
    return OperatorCommand(
        argv=[str(OPERATOR_PROGRAM), "run", *(f"--namespace={ns}" for ns in namespaces), f"--peering={peering}",
              f"--liveness={health_url}"],
        env={"KUBECONFIG": str(kubeconfig), "VOICEAGENT_RESYNC_SECONDS": str(resync_seconds),
             "VOICEAGENT_METRICS_PORT": str(metrics_port), "VOICEAGENT_SCRAPE_TIMEOUT_SECONDS": "1"},
        metrics_url=f"http://{LOOPBACK}:{metrics_port}/metrics",
        health_url=health_url,
    )


def can(api: k8s.ApiClient, user: str, verb: str, resource: str, namespace: str | None = None,
        group: str = "", subresource: str = "", name: str = "") -> bool:
    """Whether RBAC lets `user` (a ServiceAccount's "system:serviceaccount:NS:NAME", with the groups
    the apiserver gives service accounts) do `verb` on `resource`."""
    groups = ["system:serviceaccounts", "system:authenticated"]
    if user.startswith("system:serviceaccount:"):
        groups.append(f"system:serviceaccounts:{user.split(':')[2]}")
    review = k8s.V1SubjectAccessReview(spec=k8s.V1SubjectAccessReviewSpec(
        user=user, groups=groups,
        resource_attributes=k8s.V1ResourceAttributes(verb=verb, group=group, resource=resource, subresource=subresource,
                                                     namespace=namespace, name=name or None)))
    return bool(k8s.AuthorizationV1Api(api).create_subject_access_review(review).status.allowed)
