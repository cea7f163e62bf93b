"""The Kubernetes half: control plane, the chart installed with helm, the operator running as the
chart's ServiceAccount, and the local VoiceAgent adjusted to this test bed's loopback servers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voiceagent_operator.scaling.observe import is_ready

from tests.integration.harness import processes
from tests.integration.harness.control_plane import ControlPlane
from tests.integration.harness.services import LiveKit, ModelServer, SpeechServer

from .shell import Shell, say

REPO = processes.REPO_ROOT
CHART = REPO / "charts" / "agent-worker"
EXAMPLE = REPO / "manifests" / "examples" / "voiceagent-local.yaml"
RELEASE = OPERATOR_NAMESPACE = "agent-worker"
OPERATOR_ACCOUNT = f"{RELEASE}-operator"  # the chart's ServiceAccount
NAMESPACE = "voice"
RESYNC_SECONDS = 2

# Demo prices, not published ones: the local model has no list price, so the demo charges what a
# small hosted model costs, to show cost accounting end to end. whisper-1 is OpenAI's published
# $0.006 per minute (openai.com/api/pricing); tts-1 has a default price in agent_worker.pricing.
def demo_prices(*models: str) -> dict[str, dict[str, float]]:
    return {
        **{f"ollama/{model}": {"inputPerMillionTokens": 0.10, "outputPerMillionTokens": 0.40} for model in models},
        "openai/whisper-1": {"perAudioMinute": 0.006},
    }


@dataclass(frozen=True)
class Windows:
    """The demo VoiceAgent's scaling: short windows so a scale-down is seen within a minute."""

    target_rooms: int = 2
    max_replicas: int = 4
    scale_down_seconds: int = 20


def voiceagent(livekit: LiveKit, model: ModelServer, models: tuple[str, str], speech: SpeechServer,
               prometheus_url: str, windows: Windows, main_base_url: str) -> dict[str, Any]:
    """manifests/examples/voiceagent-local.yaml pointed at this run's servers (their ports are
    chosen at start) and `models` (main, fast), autoscaled from Prometheus, priced with demo_prices().
    The main LLM is reached at `main_base_url` (the same model, answering later like a 70B would)."""
    body = yaml.safe_load(EXAMPLE.read_text())
    spec = body["spec"]
    spec["livekit"]["url"] = livekit.url
    spec["llm"].update(model=models[0], baseUrl=main_base_url)
    spec["preResponse"].update(model=models[1], baseUrl=model.base_url)
    spec["stt"]["baseUrl"] = spec["tts"]["baseUrl"] = speech.base_url
    spec["scaling"] = {
        "minReplicas": 1, "maxReplicas": windows.max_replicas,
        "targetActiveRoomsPerReplica": windows.target_rooms,
        "scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": windows.scale_down_seconds,
        "metricsSource": "prometheus", "prometheusUrl": prometheus_url,
    }
    spec["pricing"] = demo_prices(*models)
    return body


class Cluster:
    """The chart and the operator on a running control plane; `shell` is cluster-admin."""

    def __init__(self, plane: ControlPlane, workdir: Path, log_dir: Path) -> None:
        self.plane = plane
        helm_home = workdir / "helm"
        self.shell = Shell(plane.kubeconfig, {
            "HELM_CACHE_HOME": str(helm_home / "cache"), "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        })
        self.log_dir = log_dir
        self.operator: processes.Process | None = None
        self.name = ""

    def install_chart(self) -> None:
        self.plane.add_fake_node("kwok-node-1")
        output = self.shell.helm("install", RELEASE, CHART, "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
                                 echo=False)
        print(f"$ helm install {RELEASE} charts/agent-worker --namespace {OPERATOR_NAMESPACE} --create-namespace\n"
              + output.split("NOTES:")[0].rstrip(), flush=True)

    def start_operator(self) -> None:
        """`voiceagent-operator run` with a token of the chart's ServiceAccount: RBAC applies."""
        as_operator = self.plane.kubeconfig_for_service_account(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
        health = processes.free_port()
        self.operator = processes.start("voiceagent-operator", [
            str(REPO / ".venv" / "bin" / "voiceagent-operator"), "run", "--all-namespaces", "--standalone",
            f"--liveness=http://{processes.LOOPBACK}:{health}/healthz",
        ], self.log_dir, env={
            "KUBECONFIG": str(as_operator), "VOICEAGENT_RESYNC_SECONDS": str(RESYNC_SECONDS),
            "VOICEAGENT_METRICS_PORT": str(processes.free_port()),
        })
        processes.wait_for_http(f"http://{processes.LOOPBACK}:{health}/healthz", self.operator, timeout=60)
        say(f"operator running as ServiceAccount {OPERATOR_NAMESPACE}/{OPERATOR_ACCOUNT} "
            f"(resync every {RESYNC_SECONDS}s)")

    def apply_voiceagent(self, body: dict[str, Any], livekit: LiveKit) -> None:
        self.name = body["metadata"]["name"]
        self.shell.kubectl("create", "namespace", NAMESPACE)
        self.shell.kubectl("-n", NAMESPACE, "create", "secret", "generic", body["spec"]["livekit"]["credentialsSecret"],
                           f"--from-literal=LIVEKIT_API_KEY={livekit.api_key}",
                           f"--from-literal=LIVEKIT_API_SECRET={livekit.api_secret}", echo=False)
        print(f"$ kubectl -n {NAMESPACE} apply -f - <<< voiceagent-local.yaml with:")
        print(yaml.safe_dump({"spec": {key: body["spec"][key] for key in ("livekit", "llm", "preResponse", "stt", "tts", "scaling", "pricing")}},
                             sort_keys=False).rstrip())
        self.shell.kubectl("-n", NAMESPACE, "apply", "-f", "-", stdin=yaml.safe_dump(body))

    def wait_ready(self, timeout: float = 90.0) -> None:
        self.shell.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", f"va/{self.name}",
                           f"--timeout={int(timeout)}s")
        self.get_va()

    def get_va(self) -> str:
        return self.shell.kubectl("-n", NAMESPACE, "get", "va")

    def status(self) -> dict[str, Any]:
        body = json.loads(self.shell.kubectl("-n", NAMESPACE, "get", "va", self.name, "-o", "json", echo=False))
        return body.get("status", {})

    def worker_config(self) -> dict[str, str]:
        """The worker environment the operator wrote into `<name>-worker-config`."""
        body = json.loads(self.shell.kubectl("-n", NAMESPACE, "get", "configmap", f"{self.name}-worker-config",
                                             "-o", "json", echo=False))
        return body["data"]

    def ready_worker_pods(self) -> list[tuple[str, str]]:
        """(name, podIP) of the VoiceAgent's ready worker pods (kwok's), oldest first."""
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=worker"
        listing = json.loads(self.shell.kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "json", echo=False))
        pods = sorted(listing["items"], key=lambda pod: pod["metadata"]["creationTimestamp"])
        return [(pod["metadata"]["name"], pod["status"]["podIP"]) for pod in pods if is_ready(pod)]

    def events(self, reason: str) -> str:
        return self.shell.kubectl("-n", NAMESPACE, "get", "events", "--field-selector",
                                  f"involvedObject.kind=VoiceAgent,reason={reason}",
                                  "-o", "custom-columns=LAST SEEN:.lastTimestamp,REASON:.reason,MESSAGE:.message")

    def last_operator_warning(self) -> str:
        lines = self.operator.log_path.read_text(errors="replace").splitlines() if self.operator else []
        warnings = [line for line in lines if "[WARNING" in line]
        return warnings[-1].split("] ", 1)[-1] if warnings else ""

    def wait_for_status(self, check, what: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if check(status):
                return status
            time.sleep(1)
        raise TimeoutError(f"the VoiceAgent did not reach {what} in {timeout:.0f} s; last status: {self.status()}")

