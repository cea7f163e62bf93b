"""The Kubernetes half, as users run it: the chart helm-installed with the operator running as a pod
from its image on the real node, and the local VoiceAgent, pointed at this run's servers, whose
worker pods run the worker image on the node."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voiceagent_operator.scaling.observe import is_ready

from tests.integration.harness import fleet, processes, voiceagents
from tests.integration.harness.control_plane import ControlPlane
from tests.integration.harness.operator import RESTRICTED
from tests.integration.harness.services import LiveKit, ModelServer, SpeechServer
from tests.integration.harness.worker import REGISTERED

from .shell import Shell, say

RELEASE = OPERATOR_NAMESPACE = "agent-worker"
NAMESPACE = "voice"
AGENT = "local"  # manifests/examples/voiceagent-local.yaml's name
LIVEKIT_SECRET = "livekit"  # the Secret fleet.node_spec names
WORKER_CONTAINER = "agent-worker"
WORKER_SELECTOR = voiceagents.WORKER_SELECTOR.format(name=AGENT)
# Sessions per worker pod at which livekit sends the pod no new room. livekit's default judges a
# worker's load by CPU, which a pod without a CPU limit reads as the whole machine's: on two busy
# cores a worker would refuse rooms. Rooms per pod are the operator's business (targetActiveRoomsPerReplica).
MAX_SESSIONS_PER_POD = 4


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
    """The demo VoiceAgent's scaling: one room per worker pod and at most two pods, so two callers
    show a scale-up to two real workers (each a full worker process on this machine's two cores);
    a short window, so the scale-down is seen within a minute."""

    target_rooms: int = 1
    max_replicas: int = 2
    scale_down_seconds: int = 20


def voiceagent(livekit: LiveKit, model: ModelServer, models: tuple[str, str], speech: SpeechServer,
               prometheus_url: str, windows: Windows, main_base_url: str) -> dict[str, Any]:
    """manifests/examples/voiceagent-local.yaml with its workers on the real node, pointed at this
    run's servers as pods reach them and at `models` (main, fast), autoscaled from Prometheus,
    priced with demo_prices(). The main LLM is reached at `main_base_url` (the same model,
    answering later like a 70B would); the pre-response goes straight to Ollama."""
    spec = fleet.node_spec(
        livekit, model, speech, main_base_url=main_base_url, model=models[0],
        preResponse={"model": models[1], "baseUrl": model.pod_base_url},
        scaling={
            "minReplicas": 1, "maxReplicas": windows.max_replicas,
            "targetActiveRoomsPerReplica": windows.target_rooms,
            "scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": windows.scale_down_seconds,
            "metricsSource": "prometheus", "prometheusUrl": prometheus_url,
        },
        pricing=demo_prices(*models),
        env=[{"name": "AGENT_MAX_SESSIONS", "value": str(MAX_SESSIONS_PER_POD)},
             # A busy CPU delays the model's first byte past the worker's default 10 s.
             {"name": "AGENT_LLM_TIMEOUT", "value": "60"}],
    )
    return voiceagents.body(AGENT, spec)


@dataclass(frozen=True)
class WorkerPod:
    name: str
    ip: str
    metrics_port: int
    created: str

    @property
    def metrics_url(self) -> str:
        return f"http://{self.ip}:{self.metrics_port}/metrics"


class Cluster:
    """The chart and the VoiceAgent on a running control plane with the real node; `shell` is
    cluster-admin kubectl. Every container's log is copied under `log_dir` (pods/, operator/)."""

    def __init__(self, plane: ControlPlane, workdir: Path, log_dir: Path) -> None:
        self.plane, self.workdir = plane, workdir
        self.shell = Shell(plane.kubeconfig)
        self.api = plane.api_client()
        self.pod_logs = fleet.PodLogs(self.api, NAMESPACE, log_dir / "pods")
        self.operator_logs = fleet.PodLogs(self.api, OPERATOR_NAMESPACE, log_dir / "operator")

    def close(self) -> None:
        self.pod_logs.close()
        self.operator_logs.close()
        self.api.close()

    def create_namespace(self, livekit: LiveKit) -> None:
        """NAMESPACE (restricted Pod Security) with the VoiceAgent's LiveKit Secret; before the
        chart, which grants the operator its rights there."""
        self.shell.kubectl("create", "namespace", NAMESPACE)
        self.shell.kubectl("label", "namespace", NAMESPACE, *(f"{key}={value}" for key, value in RESTRICTED.items()))
        self.shell.kubectl("-n", NAMESPACE, "create", "secret", "generic", LIVEKIT_SECRET,
                           f"--from-literal=LIVEKIT_API_KEY={livekit.api_key}",
                           f"--from-literal=LIVEKIT_API_SECRET={livekit.api_secret}", echo=False)

    def install_chart(self) -> None:
        """`helm install` into a restricted namespace; the operator pod runs on the node, watching
        NAMESPACE, and is Ready when this returns."""
        say(f'namespace {OPERATOR_NAMESPACE} (Pod Security "restricted"); the operator pod is placed on the real node '
            f"(a toleration and a node selector) and watches namespace {NAMESPACE}")
        result = fleet.install_chart(self.plane, self.workdir, RELEASE, OPERATOR_NAMESPACE, watched=NAMESPACE)
        shown = shlex.join(str(arg).replace(f"{processes.REPO_ROOT}/", "") for arg in result.args[1:])
        print(f"$ helm {shown}\n" + result.stdout.split("NOTES:")[0].rstrip(), flush=True)
        self.shell.kubectl("-n", OPERATOR_NAMESPACE, "get", "pods", "-o", "wide")

    def apply_voiceagent(self, body: dict[str, Any]) -> None:
        shown = ("image", "livekit", "llm", "preResponse", "stt", "tts", "scaling", "pricing", "env",
                 "nodeSelector", "tolerations")
        print(f"$ kubectl -n {NAMESPACE} apply -f - <<< voiceagent-local.yaml with:")
        print(yaml.safe_dump({"spec": {key: body["spec"][key] for key in shown}}, sort_keys=False).rstrip())
        self.shell.kubectl("-n", NAMESPACE, "apply", "-f", "-", stdin=yaml.safe_dump(body))

    def wait_ready(self, timeout: float = 300.0) -> WorkerPod:
        """Until the VoiceAgent is Ready (a worker pod passed its readiness probe) and that pod's
        worker has registered with livekit-server; returns the pod."""
        self.shell.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", f"va/{AGENT}", f"--timeout={int(timeout)}s")
        (pod,) = self.worker_pods()
        processes.wait_until(lambda: REGISTERED in self.pod_logs.text(pod.name, WORKER_CONTAINER),
                             f"worker pod {pod.name} to register with livekit-server", timeout=120)
        self.get_va()
        self.get_pods()
        return pod

    def get_va(self) -> str:
        return self.shell.kubectl("-n", NAMESPACE, "get", "va")

    def get_pods(self) -> str:
        return self.shell.kubectl("-n", NAMESPACE, "get", "pods", "-l", WORKER_SELECTOR, "-o", "wide")

    def status(self) -> dict[str, Any]:
        body = json.loads(self.shell.kubectl("-n", NAMESPACE, "get", "va", AGENT, "-o", "json", echo=False))
        return body.get("status", {})

    def _listed_worker_pods(self) -> list[dict[str, Any]]:
        listing = self.shell.kubectl("-n", NAMESPACE, "get", "pods", "-l", WORKER_SELECTOR, "-o", "json", echo=False)
        return json.loads(listing)["items"]

    def worker_pods(self) -> list[WorkerPod]:
        """The VoiceAgent's ready worker pods, oldest first."""
        pods = [WorkerPod(p["metadata"]["name"], p["status"]["podIP"],
                          int(p["metadata"]["annotations"]["prometheus.io/port"]), p["metadata"]["creationTimestamp"])
                for p in self._listed_worker_pods() if is_ready(p)]
        return sorted(pods, key=lambda pod: pod.created)

    def pod_count(self) -> int:
        """Worker pods that exist, terminating ones included."""
        return len(self._listed_worker_pods())

    def events(self, reason: str) -> str:
        return self.shell.kubectl("-n", NAMESPACE, "get", "events", "--field-selector",
                                  f"involvedObject.kind=VoiceAgent,reason={reason}",
                                  "-o", "custom-columns=LAST SEEN:.lastTimestamp,REASON:.reason,MESSAGE:.message")

    def last_operator_warning(self) -> str:
        lines = [line for pod in self.operator_logs.pods() for line in
                 self.operator_logs.text(pod, "operator").splitlines() if "WARNING" in line]
        return lines[-1] if lines else ""
