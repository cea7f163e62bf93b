"""Show the operator on a real control plane: `python tests/operator/demo_real_apiserver.py`.

Not a test (the test bed's suite owns those): a reproducible demonstration for reviews. It starts
the test bed's control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok; needs
`make testbed`), installs the chart with real helm, runs two `voiceagent-operator` replicas with a
token of the chart's ServiceAccount (RBAC applies; Kopf peering keeps one active), applies the local example and prints `kubectl get va`
before and after `kubectl scale va`, the events, two refused specs (CEL) and the deletion.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".testbed" / "bin"
sys.path.insert(0, str(ROOT))

from tests.integration.harness.control_plane import start_control_plane  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="voiceagent-demo-"))
    env = dict(os.environ, HELM_CACHE_HOME=str(work / "helm-cache"), HELM_CONFIG_HOME=str(work / "helm-config"),
               HELM_DATA_HOME=str(work / "helm-data"))
    plane = start_control_plane(work / "plane", work)
    operators: list[subprocess.Popen] = []

    def sh(*args: object, kubeconfig: Path | None = None, check: bool = True) -> None:
        result = subprocess.run([str(a) for a in args], env={**env, "KUBECONFIG": str(kubeconfig or plane.kubeconfig)},
                                capture_output=True, text=True, timeout=120)
        shown = " ".join(str(a).replace(f"{BIN}/", "").replace(f"{ROOT}/", "") for a in args)
        print(f"$ {shown}\n{result.stdout}{result.stderr}", flush=True)
        if check and result.returncode:
            raise SystemExit(f"failed: {shown}")

    try:
        plane.add_fake_node("node-1")
        sh(BIN / "kubectl", "create", "namespace", "agent-worker")
        sh(BIN / "helm", "install", "agent-worker", ROOT / "charts/agent-worker", "--namespace", "agent-worker")
        as_operator = plane.kubeconfig_for_service_account("agent-worker", "agent-worker-operator")
        sh(BIN / "kubectl", "create", "namespace", "voice")
        sh(BIN / "kubectl", "-n", "voice", "create", "secret", "generic", "livekit",
           "--from-literal=LIVEKIT_API_KEY=devkey", "--from-literal=LIVEKIT_API_SECRET=secret")
        metrics_port, health_port = free_port(), free_port()
        for replica in range(2):  # as the chart runs it: two replicas, Kopf peering picks one
            ports = (metrics_port, health_port) if replica == 0 else (free_port(), free_port())
            operators.append(subprocess.Popen(
                [str(ROOT / ".venv/bin/voiceagent-operator"), "run", "--all-namespaces",
                 f"--liveness=http://127.0.0.1:{ports[1]}/healthz"],
                env={**env, "KUBECONFIG": str(as_operator), "VOICEAGENT_RESYNC_SECONDS": "2",
                     "VOICEAGENT_METRICS_PORT": str(ports[0])},
                stdout=open(work / f"operator-{replica}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
            ))
        time.sleep(6)
        sh(BIN / "kubectl", "-n", "voice", "apply", "-f", ROOT / "manifests/examples/voiceagent-local.yaml")
        time.sleep(10)
        sh(BIN / "kubectl", "-n", "voice", "get", "va")
        sh(BIN / "kubectl", "-n", "voice", "get", "deploy,svc,cm,pdb,pods", "-o", "wide")
        sh(BIN / "kubectl", "-n", "voice", "scale", "va", "local", "--replicas=3")
        time.sleep(8)
        sh(BIN / "kubectl", "-n", "voice", "get", "va")
        sh(BIN / "kubectl", "-n", "voice", "get", "events", "--field-selector", "involvedObject.kind=VoiceAgent")
        sh(BIN / "kubectl", "-n", "voice", "patch", "va", "local", "--type=merge",
           "-p", '{"spec":{"scaling":{"minReplicas":5,"maxReplicas":2}}}', check=False)
        sh(BIN / "kubectl", "-n", "voice", "patch", "va", "local", "--type=merge",
           "-p", '{"spec":{"llm":{"baseUrl":null}}}', check=False)
        print("liveness:", urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz").status)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        print("\n".join(line for line in metrics.splitlines() if line.startswith("voiceagent_operator_api_writes_total")))
        for replica in range(2):
            log = (work / f"operator-{replica}.log").read_text()
            reconciles = log.count("Timer 'handle_reconcile' succeeded")
            paused = [line for line in log.splitlines() if "Pausing operations" in line]
            print(f"replica {replica}: {reconciles} resyncs; {paused[0][-120:] if paused else 'never paused'}")
        sh(BIN / "kubectl", "-n", "voice", "delete", "va", "local", "--timeout=30s")
        time.sleep(5)
        sh(BIN / "kubectl", "-n", "voice", "get", "deploy,svc,cm,pdb")
    finally:
        for operator in operators:
            os.killpg(operator.pid, signal.SIGTERM)
            operator.wait(timeout=20)
        plane.stop()
        print(f"logs in {work}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
