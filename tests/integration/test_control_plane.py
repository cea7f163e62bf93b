"""The local control plane behaves like a cluster's: controllers, scheduling, kwok pods on
loopback addresses, garbage collection, service-account tokens and RBAC."""

from __future__ import annotations

import ipaddress
import subprocess
import json
import urllib.parse
import urllib.request

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .conftest import FAKE_NODES
from .harness.control_plane import POD_CIDR
from .harness.processes import binary, wait_until

pytestmark = pytest.mark.testbed


def deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{"name": "agent", "image": "example.invalid/agent:1"}],
            }},
        },
    }


def ready_pods(core: k8s.CoreV1Api, namespace: str, selector: str) -> list[k8s.V1Pod]:
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def test_deployment_gets_a_replicaset_and_ready_pods_with_loopback_ips(kube_api, namespace):
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    created = apps.create_namespaced_deployment(namespace, deployment("voice", replicas=3))

    wait_until(lambda: len(ready_pods(core, namespace, "app=voice")) == 3, "3 Ready pods", timeout=90)
    wait_until(lambda: (apps.read_namespaced_deployment_status("voice", namespace).status.ready_replicas or 0) == 3,
               "deployment readyReplicas=3", timeout=30)

    replica_sets = apps.list_namespaced_replica_set(namespace, label_selector="app=voice").items
    assert len(replica_sets) == 1
    owner = replica_sets[0].metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("Deployment", "voice", created.metadata.uid)
    pods = ready_pods(core, namespace, "app=voice")
    cidr = ipaddress.ip_network(POD_CIDR)
    assert all(ipaddress.ip_address(p.status.pod_ip) in cidr for p in pods)
    assert len({p.status.pod_ip for p in pods}) == 3
    assert {p.spec.node_name for p in pods} <= set(FAKE_NODES)
    assert all(p.metadata.owner_references[0].name == replica_sets[0].metadata.name for p in pods)


def test_deleting_the_deployment_garbage_collects_its_replicaset_and_pods(kube_api, namespace):
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("doomed", replicas=2))
    wait_until(lambda: len(ready_pods(core, namespace, "app=doomed")) == 2, "2 Ready pods", timeout=90)

    apps.delete_namespaced_deployment("doomed", namespace, propagation_policy="Background")

    wait_until(lambda: not apps.list_namespaced_replica_set(namespace, label_selector="app=doomed").items,
               "the ReplicaSet to be garbage-collected", timeout=60)
    wait_until(lambda: not core.list_namespaced_pod(namespace, label_selector="app=doomed").items,
               "the pods to be garbage-collected", timeout=60)


def test_scaling_down_deletes_the_pod_with_the_lowest_deletion_cost(kube_api, namespace):
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("costly", replicas=3))
    wait_until(lambda: len(ready_pods(core, namespace, "app=costly")) == 3, "3 Ready pods", timeout=90)
    pods = ready_pods(core, namespace, "app=costly")
    for index, pod in enumerate(pods):
        cost = "-100" if index == 1 else "100"
        core.patch_namespaced_pod(pod.metadata.name, namespace, {
            "metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": cost}}})

    apps.patch_namespaced_deployment_scale("costly", namespace, {"spec": {"replicas": 2}})

    def remaining() -> set[str]:
        return {p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=costly").items
                if p.metadata.deletion_timestamp is None}
    wait_until(lambda: len(remaining()) == 2, "2 pods left", timeout=60)
    assert pods[1].metadata.name not in remaining()


def test_a_service_account_token_is_authorized_by_rbac_alone(control_plane, kube_api, namespace):
    core, rbac = k8s.CoreV1Api(kube_api), k8s.RbacAuthorizationV1Api(kube_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    kubeconfig = control_plane.kubeconfig_for_service_account(namespace, "reader")

    with control_plane.api_client(kubeconfig) as as_reader:
        with pytest.raises(ApiException) as denied:
            k8s.CoreV1Api(as_reader).list_namespaced_config_map(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:reader" in denied.value.body

        rbac.create_namespaced_role(namespace, {"metadata": {"name": "read-configmaps"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]})
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})

        def can_list() -> bool:
            try:
                k8s.CoreV1Api(as_reader).list_namespaced_config_map(namespace)
                return True
            except ApiException as error:
                if error.status != 403:
                    raise
                return False
        wait_until(can_list, "the RoleBinding to take effect", timeout=15)
        names = [c.metadata.name for c in k8s.CoreV1Api(as_reader).list_namespaced_config_map(namespace).items]
        assert "kube-root-ca.crt" in names  # published by the controller-manager into every namespace


def test_kubectl_with_an_impersonating_kubeconfig_acts_as_that_user(control_plane, namespace):
    kubeconfig = control_plane.kubeconfig_impersonating("jane", groups=("developers",))

    whoami = kubectl(kubeconfig, "auth", "whoami", "-o", "json")
    denied = kubectl(kubeconfig, "get", "pods", "-n", namespace, check=False)

    user = json.loads(whoami.stdout)["status"]["userInfo"]
    assert (user["username"], "developers" in user["groups"]) == ("jane", True)
    assert denied.returncode == 1
    assert 'User "jane" cannot list resource "pods"' in denied.stderr


def test_an_impersonating_client_is_authorized_as_the_service_account(control_plane, kube_api, namespace):
    k8s.CoreV1Api(kube_api).create_namespaced_service_account(namespace, {"metadata": {"name": "bot"}})
    with control_plane.api_client_impersonating(f"system:serviceaccount:{namespace}:bot") as as_bot:
        review = k8s.AuthenticationV1Api(as_bot).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        with pytest.raises(ApiException) as denied:
            k8s.CoreV1Api(as_bot).list_namespaced_pod(namespace)

    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:bot"
    assert f"system:serviceaccounts:{namespace}" in review.status.user_info.groups
    assert denied.value.status == 403


def kubectl(kubeconfig, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([binary("kubectl"), f"--kubeconfig={kubeconfig}", *args],
                          capture_output=True, text=True, timeout=30, check=check)


def test_pod_metrics_on_a_kwok_pod_ip_are_scraped_by_prometheus(kube_api, namespace, serve_metrics, start_prometheus):
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("scraped", replicas=1))
    wait_until(lambda: len(ready_pods(core, namespace, "app=scraped")) == 1, "1 Ready pod", timeout=90)
    pod_ip = ready_pods(core, namespace, "app=scraped")[0].status.pod_ip
    endpoint = serve_metrics(host=pod_ip)
    endpoint.set({"lk_agents_active_rooms": 3})

    prometheus = start_prometheus("pods", [endpoint.address])
    value = query_until(prometheus.url, 'lk_agents_active_rooms{job="pods"}', expected=3.0)

    assert value == 3.0
    assert endpoint.scrapes >= 1


def query_until(prometheus_url: str, promql: str, expected: float, timeout: float = 30.0) -> float:
    """The value of an instant query once it equals `expected`; fails with the last value seen."""
    seen: list[float | None] = [None]

    def check() -> bool:
        url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            result = json.load(response)["data"]["result"]
        seen[0] = float(result[0]["value"][1]) if result else None
        return seen[0] == expected

    try:
        wait_until(check, f"{promql} == {expected}", timeout=timeout, interval=0.5)
    except Exception as error:
        raise AssertionError(f"{promql}: last value {seen[0]}, expected {expected}") from error
    return seen[0]
