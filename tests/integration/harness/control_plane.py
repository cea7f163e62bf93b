"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok standing in for kubelets (pods get Ready with 127.1.x.y addresses).

Everything binds to 127.0.0.1 on free ports. Where the test bed's pod network exists (harness/
network.py), the apiserver also listens on the node address and advertises it, so that pods on
the real node (harness/node.py) reach it through the `kubernetes` Service.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from . import network, pki
from .processes import LOOPBACK, REPO_ROOT, Process, binary, free_port, start, wait_for_http, wait_until

POD_CIDR = "127.1.0.0/16"  # kwok hands out pod IPs from here: loopback, so tests can listen on them
SERVICE_CIDR = "10.96.0.0/16"  # dialled only from pods on the real node (kube-proxy)
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_STAGES = REPO_ROOT / "testbed" / "kwok" / "stages.yaml"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
# The apiserver's audit log records every request made with a service-account token (one JSON
# line each, once the response is complete) and nothing else: the test bed's own admin client,
# the controllers and kwok stay out of it. Tests count an operator's real requests with it.
# With `audit_reads=False` (benchmarks with many objects) only writes are recorded.


def audit_policy(reads: bool = True) -> dict:
    audited: dict = {"level": "Metadata", "userGroups": ["system:serviceaccounts"]}
    if not reads:
        audited["verbs"] = list(WRITE_VERBS)
    return {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
            "omitStages": ["RequestReceived", "ResponseStarted"],
            "rules": [audited, {"level": "None"}]}


def write_kubeconfig(path: Path, server: str, ca: Path, *, cert: Path | None = None,
                     key: Path | None = None, token: str | None = None,
                     impersonate: str | None = None, impersonate_groups: tuple[str, ...] = ()) -> Path:
    """A kubeconfig with one context; credentials are a client certificate or a bearer token."""
    user: dict = {}
    if cert and key:
        user.update({"client-certificate": str(cert), "client-key": str(key)})
    if token:
        user["token"] = token
    if impersonate:
        user["as"] = impersonate
        if impersonate_groups:
            user["as-groups"] = list(impersonate_groups)
    document = {
        "apiVersion": "v1", "kind": "Config", "current-context": "testbed",
        "clusters": [{"name": "testbed", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "testbed-user", "user": user}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "testbed-user"}}],
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


@dataclass
class ControlPlane:
    """A running control plane. `kubeconfig` is cluster-admin (system:masters)."""

    workdir: Path
    server: str
    ca: Path
    kubeconfig: Path
    etcd_url: str
    audit_log: Path | None = None
    authority: pki.CertificateAuthority | None = None  # signs the node's and kube-proxy's certificates
    processes: dict[str, Process] = field(default_factory=dict)

    def audit_events(self, user: str | None = None, verbs: tuple[str, ...] | None = None,
                     namespace: str | None = None) -> list[dict]:
        """The audit log's events (requests made with service-account tokens), oldest first,
        optionally only those of `user` (e.g. "system:serviceaccount:NS:NAME"), `verbs`, `namespace`."""
        if self.audit_log is None or not self.audit_log.exists():
            return []
        events = []
        for line in self.audit_log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:  # a line being written right now
                continue
            ref = event.get("objectRef") or {}
            if ((user is None or event["user"]["username"] == user)
                    and (verbs is None or event["verb"] in verbs)
                    and (namespace is None or ref.get("namespace") == namespace)):
                events.append(event)
        return events

    def api_client(self, kubeconfig: Path | None = None) -> k8s.ApiClient:
        return k8s_config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def api_client_impersonating(self, user: str, group: str | None = None) -> k8s.ApiClient:
        """An admin client that acts as `user` (the python client ignores a kubeconfig's `as`).
        For "system:serviceaccount:NS:NAME" the apiserver adds the service-account groups."""
        api = self.api_client()
        api.set_default_header("Impersonate-User", user)
        if group:
            api.set_default_header("Impersonate-Group", group)
        return api

    def kubeconfig_impersonating(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """Admin credentials that act as `user` (and `groups`) for kubectl and helm, which honour a
        kubeconfig's `as`/`as-groups`: RBAC applies to that identity."""
        safe = user.replace(":", "_").replace("/", "_")
        cert, key = self.admin_certificate()
        return write_kubeconfig(
            self.workdir / f"as-{safe}.kubeconfig", self.server, self.ca, cert=cert, key=key,
            impersonate=user, impersonate_groups=groups,
        )

    def admin_certificate(self) -> tuple[Path, Path]:
        """The cluster-admin client certificate and key files."""
        admin = yaml.safe_load(self.kubeconfig.read_text())["users"][0]["user"]
        return Path(admin["client-certificate"]), Path(admin["client-key"])

    def kubeconfig_for_service_account(self, namespace: str, name: str,
                                       expiration_seconds: int = 3600) -> Path:
        """A kubeconfig holding a real token of ServiceAccount `namespace/name` (TokenRequest API);
        the ServiceAccount must exist. Requests made with it are authorized as that account."""
        with self.api_client() as api:
            request = k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
            )
            token = k8s.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
        return write_kubeconfig(
            self.workdir / f"sa-{namespace}-{name}.kubeconfig", self.server, self.ca,
            token=token.status.token,
        )

    def add_fake_node(self, name: str, pods: int = 1000, cpu: str = "64", memory: str = "256Gi") -> None:
        """A Node that kwok keeps Ready (no taints: every pod may schedule onto it)."""
        capacity = {"cpu": cpu, "memory": memory, "pods": str(pods)}
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": name}},
            "status": {"capacity": capacity, "allocatable": capacity},
        }
        with self.api_client() as api:
            k8s.CoreV1Api(api).create_node(node)
            wait_until(lambda: _node_ready(api, name), f"node {name} Ready (kwok)",
                       self.processes.get("kwok"), timeout=60)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()


def _node_ready(api: k8s.ApiClient, name: str) -> bool:
    node = k8s.CoreV1Api(api).read_node_status(name)
    conditions = node.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def start_control_plane(workdir: Path, log_dir: Path, audit_reads: bool = True) -> ControlPlane:
    """Starts etcd, kube-apiserver, controller-manager, scheduler and kwok; returns when the
    apiserver is ready and the other components report healthy. Stop it with `.stop()`."""
    certs = workdir / "pki"
    ca = pki.CertificateAuthority(certs)
    serving = ca.issue("apiserver", "kube-apiserver", server=True,
                       dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
                       ip_addresses=(LOOPBACK, "10.96.0.1", network.NODE_IP))
    admin = ca.issue("admin", "testbed-admin", organizations=("system:masters",))
    kubelet_client = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client")
    service_accounts = pki.service_account_keys(certs)

    port = free_port()
    server = f"https://{LOOPBACK}:{port}"
    kubeconfig = write_kubeconfig(workdir / "admin.kubeconfig", server, ca.cert_path,
                                  cert=admin.cert, key=admin.key)
    plane = ControlPlane(workdir, server, ca.cert_path, kubeconfig, etcd_url="", audit_log=workdir / "audit.log",
                         authority=ca)
    try:
        plane.etcd_url = _start_etcd(plane, workdir / "etcd", log_dir)
        _start_apiserver(plane, port, serving, kubelet_client, service_accounts, log_dir, audit_reads)
        _start_controllers(plane, service_accounts, log_dir)
        _start_kwok(plane, log_dir)
    except BaseException:
        plane.stop()
        raise
    return plane


def _start_etcd(plane: ControlPlane, data_dir: Path, log_dir: Path) -> str:
    client_url = f"http://{LOOPBACK}:{free_port()}"
    peer_url = f"http://{LOOPBACK}:{free_port()}"
    process = start("etcd", [
        binary("etcd"), "--name=testbed", f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=testbed={peer_url}", "--unsafe-no-fsync", "--log-level=warn",
    ], log_dir)
    plane.processes["etcd"] = process
    wait_for_http(f"{client_url}/health", process, timeout=30)
    return client_url


def _start_apiserver(plane: ControlPlane, port: int, serving: pki.KeyPair, kubelet_client: pki.KeyPair,
                     service_accounts: pki.KeyPair, log_dir: Path, audit_reads: bool) -> None:
    policy = plane.workdir / "audit-policy.json"
    policy.write_text(json.dumps(audit_policy(audit_reads)))
    if network.node_network_ready():
        # All of the closed namespace's addresses; the `kubernetes` Service leads to the node address.
        addresses = ["--bind-address=0.0.0.0", f"--advertise-address={network.NODE_IP}"]
    else:
        # The `kubernetes` Endpoints would hold 127.0.0.1, which Endpoints validation refuses.
        addresses = [f"--bind-address={LOOPBACK}", f"--advertise-address={LOOPBACK}", "--endpoint-reconciler-type=none"]
    process = start("kube-apiserver", [
        binary("kube-apiserver"),
        f"--etcd-servers={plane.etcd_url}",
        *addresses, f"--secure-port={port}",
        f"--cert-dir={plane.workdir / 'apiserver-certs'}",
        f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={plane.ca}",
        f"--kubelet-client-certificate={kubelet_client.cert}", f"--kubelet-client-key={kubelet_client.key}",
        "--kubelet-preferred-address-types=InternalIP",  # no DNS: the node is reached by its address
        "--authorization-mode=Node,RBAC",
        # As hardened clusters (OpenShift) run: setting an ownerReference with blockOwnerDeletion needs
        # update on the owner's finalizers, which the chart must grant (voiceagents/finalizers).
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={service_accounts.cert}",
        f"--service-account-signing-key-file={service_accounts.key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--audit-policy-file={policy}", f"--audit-log-path={plane.audit_log}",
        "--audit-log-format=json", "--audit-log-mode=blocking",
        "--enable-priority-and-fairness=false", "--profiling=false", "-v=1",
    ], log_dir)
    plane.processes["kube-apiserver"] = process
    wait_for_http(f"{plane.server}/readyz", process, plane.ssl_context(), timeout=120)


def _start_controllers(plane: ControlPlane, service_accounts: pki.KeyPair, log_dir: Path) -> None:
    common = [
        f"--kubeconfig={plane.kubeconfig}",
        "--leader-elect=false", f"--bind-address={LOOPBACK}", "--profiling=false",
        # Above the defaults (20/30, 50/100), so hundreds of Deployments roll out in seconds, not minutes.
        "--kube-api-qps=200", "--kube-api-burst=400",
    ]
    manager_port, scheduler_port = free_port(), free_port()
    manager = start("kube-controller-manager", [
        binary("kube-controller-manager"), *common, f"--secure-port={manager_port}",
        f"--service-account-private-key-file={service_accounts.key}",
        f"--root-ca-file={plane.ca}",
        f"--cert-dir={plane.workdir / 'controller-manager-certs'}",
        "--use-service-account-credentials=false",
    ], log_dir)
    plane.processes["kube-controller-manager"] = manager
    scheduler = start("kube-scheduler", [
        binary("kube-scheduler"), *common, f"--secure-port={scheduler_port}",
    ], log_dir)
    plane.processes["kube-scheduler"] = scheduler
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # self-signed, loopback only
    wait_for_http(f"https://{LOOPBACK}:{manager_port}/healthz", manager, insecure, timeout=60)
    wait_for_http(f"https://{LOOPBACK}:{scheduler_port}/healthz", scheduler, insecure, timeout=60)


def _start_kwok(plane: ControlPlane, log_dir: Path) -> None:
    port = free_port()
    process = start("kwok", [
        binary("kwok"), f"--config={KWOK_STAGES}", f"--kubeconfig={plane.kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--cidr={POD_CIDR}", f"--node-ip={LOOPBACK}",
        f"--server-address={LOOPBACK}:{port}", "--node-lease-duration-seconds=40",
    ], log_dir)
    plane.processes["kwok"] = process
    wait_for_http(f"http://{LOOPBACK}:{port}/healthz", process, timeout=60)
