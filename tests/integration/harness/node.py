"""A real Kubernetes node beside the test bed's control plane: containerd (Debian) with runc, the
CNI bridge plugin, a kubelet and kube-proxy built from the control plane's own k8s.io/kubernetes.

Everything runs inside the test process's closed network namespace (harness/network.py). Pods get
addresses from POD_SUBNET on the bridge `cni0`, whose address NODE_IP is the node's: pods reach the
apiserver through the `kubernetes` Service (kube-proxy, iptables), and the test bed's servers at
NODE_IP. Images come from `make images` (OCI archives under .testbed/images), imported into
containerd before the kubelet starts; nothing is ever pulled.

The node is tainted and labelled (NODE_LABEL): only pods that ask for it (a toleration and a node
selector, see `placement()`) run on it, so the kwok nodes keep serving every other test.

What this machine needs (checked with the kubelet of v1.37.2 and containerd 1.6.20): the kernel
exposes cgroup v1, so the kubelet sets `failCgroupV1: false`; the root user lacks CAP_SYS_RESOURCE,
so containerd must not lower `oom_score_adj` (`restrict_oom_score_adj`); the sandbox image is our
own static `pause` (testbed/pause).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client as k8s

from . import network, pki
from .control_plane import SERVICE_CIDR, ControlPlane, write_kubeconfig
from .processes import LOOPBACK, TESTBED_DIR, Process, binary, free_port, start, wait_for_http, wait_until

NODE_NAME = "testbed-node"
NODE_LABEL = "agent-worker.testbed/real-node"
IMAGES_DIR = TESTBED_DIR / "images"
SANDBOX_IMAGE = "localhost/testbed/pause:1"
CNI_PLUGINS = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "{sandbox}"
# This root lacks CAP_SYS_RESOURCE: runc would fail to lower a container's oom_score_adj.
restrict_oom_score_adj = true
disable_apparmor = true

[plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "overlayfs"
default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
bin_dir = "{cni_bin}"
conf_dir = "{cni_conf}"
max_conf_num = 1
"""


def placement() -> dict:
    """What a pod spec (or a VoiceAgent spec, or the chart's values) needs to run on the real node."""
    return {
        "nodeSelector": {NODE_LABEL: "true"},
        "tolerations": [{"key": NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    }


@dataclass
class Node:
    name: str
    ip: str
    containerd_socket: Path
    kubelet_root: Path
    images: list[str]
    processes: dict[str, Process] = field(default_factory=dict)

    def ctr(self, *args: str) -> str:
        result = subprocess.run(["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args],
                                capture_output=True, text=True, timeout=600)
        if result.returncode:
            raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def stop(self) -> None:
        """Stops kube-proxy and the kubelet, kills every container, then containerd and its shims
        (they outlive it), and unmounts what the containers left under the node's directory."""
        for name in ("kube-proxy", "kubelet"):
            if name in self.processes:
                self.processes.pop(name).stop(timeout=30)
        if "containerd" not in self.processes:
            return
        try:
            for task in self.ctr("tasks", "ls", "-q").split():
                subprocess.run(["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io",
                                "tasks", "kill", "--signal=SIGKILL", task], capture_output=True)
        finally:
            self.processes.pop("containerd").stop(timeout=30)
            subprocess.run(["pkill", "--signal=KILL", "-f", f"containerd-shim.* -address {self.containerd_socket}"],
                           capture_output=True)
            workdir = str(self.containerd_socket.parent)
            with open("/proc/self/mounts") as mounts:
                points = [line.split()[1] for line in mounts if line.split()[1].startswith(workdir)]
            for point in sorted(points, reverse=True):
                subprocess.run(["umount", "--lazy", point], capture_output=True)


def start_node(plane: ControlPlane, workdir: Path, log_dir: Path) -> Node:
    """containerd (with the test bed's images imported), kubelet and kube-proxy; returns when the
    node is Ready. Stop it with `.stop()`."""
    if not network.node_network_ready():
        raise RuntimeError(f"the pod network ({network.NODE_BRIDGE} with {network.NODE_IP}) is missing: the real "
                           "node runs only in the test bed's network namespace (unset TESTBED_HOST_NETWORK)")
    archives = sorted(IMAGES_DIR.glob("*.tar"))
    if not archives:
        raise FileNotFoundError(f"{IMAGES_DIR} has no image archives: run `make images` first")
    workdir.mkdir(parents=True, exist_ok=True)
    node = Node(NODE_NAME, network.NODE_IP, workdir / "containerd.sock", workdir / "kubelet", images=[])
    try:
        _start_containerd(node, workdir, log_dir)
        node.images = [_import(node, archive) for archive in archives]
        certs = plane.authority
        _start_kubelet(node, plane, certs, workdir, log_dir)
        _start_kube_proxy(node, plane, certs, workdir, log_dir)
    except BaseException:
        node.stop()
        raise
    return node


def _start_containerd(node: Node, workdir: Path, log_dir: Path) -> None:
    cni_conf = workdir / "cni"
    cni_conf.mkdir(exist_ok=True)
    (cni_conf / "10-testbed.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "testbed",
        "plugins": [{
            "type": "bridge", "bridge": network.NODE_BRIDGE, "isGateway": True, "ipMasq": False,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": str(workdir / "cni-ipam"),
                     "ranges": [[{"subnet": str(network.POD_SUBNET), "gateway": network.NODE_IP,
                                  "rangeStart": str(network.POD_SUBNET[16])}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }))
    config_path = workdir / "containerd.toml"
    config_path.write_text(CONTAINERD_CONFIG.format(
        root=workdir / "containerd-root", state=workdir / "containerd-state", socket=node.containerd_socket,
        sandbox=SANDBOX_IMAGE, cni_bin=CNI_PLUGINS, cni_conf=cni_conf,
    ))
    process = start("containerd", ["containerd", f"--config={config_path}"], log_dir)
    node.processes["containerd"] = process
    wait_until(lambda: subprocess.run(["ctr", f"--address={node.containerd_socket}", "version"],
                                      capture_output=True).returncode == 0,
               "containerd to answer", process, timeout=60)


def _import(node: Node, archive: Path) -> str:
    """Imports one OCI archive into the k8s.io namespace (where the kubelet looks) and returns
    the image's name."""
    out = node.ctr("images", "import", "--no-unpack=false", str(archive))
    names = [line.split()[1] for line in out.splitlines() if line.startswith("unpacking ")]
    if not names:
        raise RuntimeError(f"importing {archive} named no image: {out}")
    return names[0]


def _start_kubelet(node: Node, plane: ControlPlane, certs: pki.CertificateAuthority,
                   workdir: Path, log_dir: Path) -> None:
    client = certs.issue("kubelet-client", f"system:node:{node.name}", organizations=("system:nodes",))
    serving = certs.issue("kubelet-serving", node.name, server=True, dns_names=(node.name,),
                          ip_addresses=(node.ip,))
    kubeconfig = write_kubeconfig(workdir / "kubelet.kubeconfig", plane.server, plane.ca,
                                  cert=client.cert, key=client.key)
    health_port = free_port()
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # This machine's kernel exposes cgroup v1; kubelets from 1.35 refuse it unless told.
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [], "failSwapOn": False, "localStorageCapacityIsolation": False,
        "resolvConf": "", "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "address": node.ip, "port": free_port(node.ip), "readOnlyPort": 0,
        "healthzBindAddress": LOOPBACK, "healthzPort": health_port,
        "tlsCertFile": str(serving.cert), "tlsPrivateKeyFile": str(serving.key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(plane.ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        "podLogsDir": str(workdir / "pod-logs"),
        "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
        # The images were imported, not pulled: never collect them, never evict for disk.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "0%", "imagefs.available": "0%"},
        "serializeImagePulls": False, "maxPods": 40,
        "nodeStatusUpdateFrequency": "2s", "syncFrequency": "5s",
    }
    config_path = workdir / "kubelet.yaml"
    config_path.write_text(yaml.safe_dump(config))
    process = start("kubelet", [
        binary("kubelet"), f"--config={config_path}", f"--kubeconfig={kubeconfig}",
        f"--root-dir={node.kubelet_root}", f"--hostname-override={node.name}", f"--node-ip={node.ip}",
        f"--node-labels={NODE_LABEL}=true", "--v=1",
    ], log_dir)
    node.processes["kubelet"] = process
    wait_for_http(f"http://{LOOPBACK}:{health_port}/healthz", process, timeout=60)
    with plane.api_client() as api:
        wait_until(lambda: _ready(api, node.name), f"node {node.name} Ready", process, timeout=90)


def _start_kube_proxy(node: Node, plane: ControlPlane, certs: pki.CertificateAuthority,
                      workdir: Path, log_dir: Path) -> None:
    client = certs.issue("kube-proxy", "system:kube-proxy")
    kubeconfig = write_kubeconfig(workdir / "kube-proxy.kubeconfig", plane.server, plane.ca,
                                  cert=client.cert, key=client.key)
    health_port = free_port()
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables", "clusterCIDR": str(network.POD_SUBNET), "hostnameOverride": node.name,
        "bindAddress": node.ip, "healthzBindAddress": f"{LOOPBACK}:{health_port}",
        "metricsBindAddress": f"{LOOPBACK}:{free_port()}",
        # conntrack's table size is the whole machine's, not this namespace's: leave it alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
        "iptables": {"localhostNodePorts": False},
    }
    config_path = workdir / "kube-proxy.yaml"
    config_path.write_text(yaml.safe_dump(config))
    process = start("kube-proxy", [binary("kube-proxy"), f"--config={config_path}", "--v=1"], log_dir)
    node.processes["kube-proxy"] = process
    wait_for_http(f"http://{LOOPBACK}:{health_port}/healthz", process, timeout=60)
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    wait_until(lambda: service_ip in subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                                                    text=True).stdout,
               f"kube-proxy's rules for the kubernetes Service ({service_ip})", process, timeout=60)


def _ready(api: k8s.ApiClient, name: str) -> bool:
    node = k8s.CoreV1Api(api).read_node_status(name)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
