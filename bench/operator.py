"""The operator at scale on the real control plane: `make bench-operator` (needs `make testbed`).

For each N (default 10, 100, 500), on a fresh test-bed control plane (etcd, kube-apiserver,
controller-manager, scheduler, kwok) with the chart installed by helm, one `voiceagent-operator`
running as the chart's ServiceAccount reconciles N VoiceAgents in one namespace. Measured:

- time from the first create to every VoiceAgent `Ready=True` (each has one kwok worker pod);
- create -> worker Deployment latency (client clock at the create's answer -> watch event), p50/p95/max;
- API writes per no-op resync: requests with the operator's token that change something, counted in
  the apiserver's audit log over several resync periods once everything is settled (must be 0);
- the native baseline of the same run: N plain Deployments (one replica, the same concurrency)
  created directly in their own namespace, create -> ReplicaSet latency (client clock at the
  create's answer -> watch event; kube-controller-manager on the same apiserver), measured before
  the VoiceAgents on the still-quiet control plane, and our create -> Deployment p95 as its ratio;
- the operator's RSS (VmRSS, and VmHWM for the peak);
- scale reaction: a worker pod's endpoint (on its kwok pod IP and metrics port) starts reporting
  rooms -> the watch sees the Deployment's replicas patched; one sample per watched VoiceAgent.

Everything runs in a loopback-only network namespace, as the tests do.
Writes bench/results/operator.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes import client as k8s  # noqa: E402
from kubernetes import watch  # noqa: E402

from bench.common import machine  # noqa: E402
from tests.integration.harness import network  # noqa: E402
from tests.integration.harness import operator as operator_harness  # noqa: E402
from tests.integration.harness.control_plane import WRITE_VERBS, ControlPlane, start_control_plane  # noqa: E402
from tests.integration.harness.metrics_endpoint import MetricsEndpoint  # noqa: E402
from tests.integration.harness.processes import start, wait_for_http, wait_until  # noqa: E402
from tests.integration.harness.voiceagents import Agents, local_spec  # noqa: E402

ROOMS_METRIC = "agent_worker_active_sessions"
METRICS_PORT = 9100
SCALE_SAMPLES = 3
# Resync period per N: every VoiceAgent is reconciled once per period, so on two cores a larger
# fleet gets a longer one (the chart's default is 15 s).
RESYNC_SECONDS = {10: 5.0, 100: 10.0, 500: 30.0}
NOOP_PERIODS = 3
# The fleet observation interval: the operator's default (the tests use 1 s).
OBSERVE_SECONDS = 5.0


def say(message: str) -> None:
    print(f"[bench-operator {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(seconds, 0.5) * 1000, 1), "p95": round(percentile(seconds, 0.95) * 1000, 1),
            "max": round(max(seconds) * 1000, 1)}


def rss_mib(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "peak_rss_mib": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}


def own_name(item) -> str:
    return item.metadata.name


def owner_name(item) -> str:
    return next((owner.name for owner in item.metadata.owner_references or []), "")


class DeploymentWatch:
    """Records, from a watch, when each worker Deployment first appears and when its
    spec.replicas first reaches a value. With `kind="replica_set"` and `key=owner_name`: when
    each Deployment's first ReplicaSet appears."""

    def __init__(self, api: k8s.ApiClient, namespace: str, kind: str = "deployment", key=own_name) -> None:
        self.apps, self.namespace, self.kind, self.key = k8s.AppsV1Api(api), namespace, kind, key
        self.first_seen: dict[str, float] = {}
        self.replicas_at: dict[tuple[str, int], float] = {}
        self._watch = watch.Watch()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                for event in self._watch.stream(getattr(self.apps, f"list_namespaced_{self.kind}"), self.namespace):
                    now, deployment = time.monotonic(), event["object"]
                    name = self.key(deployment)
                    self.first_seen.setdefault(name, now)
                    self.replicas_at.setdefault((name, deployment.spec.replicas), now)
            except Exception as error:  # a dropped watch: resume (a first-seen time may be late, never early)
                if not self._stopped.is_set():
                    say(f"deployment watch restarted: {error}")

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()


def create_agents(agents: Agents, count: int) -> dict[str, float]:
    """Creates `count` VoiceAgents (8 at a time); returns each one's creation time (answer received)."""
    spec = local_spec(scaling={"minReplicas": 1, "maxReplicas": 4, "targetActiveRoomsPerReplica": 2,
                               "scaleDownStabilizationSeconds": 600,
                               # the reactive rule, so that 5 rooms make exactly 3 workers (scale_reactions)
                               "podStartSeconds": 0, "spareSessions": 0})

    def create(index: int) -> tuple[str, float]:
        name = f"agent-{index:03d}"
        agents.create(name, spec)
        return f"{name}-worker", time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(create, range(count)))


def native_baseline(api: k8s.ApiClient, namespace: str, count: int) -> list[float]:
    """`count` plain Deployments (one replica, 8 creates at a time, as the VoiceAgents) after one
    untimed warm-up: seconds from each create's answer to the watch seeing its ReplicaSet, made by
    kube-controller-manager."""
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    replica_sets = DeploymentWatch(api, namespace, kind="replica_set", key=owner_name)
    apps = k8s.AppsV1Api(api)
    labels = {"app": "native"}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "registry.invalid/native:1"}]}}

    def create(index: int) -> tuple[str, float]:
        name = f"native-{index:03d}"
        apps.create_namespaced_deployment(namespace, {"metadata": {"name": name}, "spec": {
            "replicas": 1, "selector": {"matchLabels": labels}, "template": template}})
        return name, time.monotonic()

    try:
        warm_up = create(count)[0]  # not timed: the controller-manager's first sync after start
        wait_until(lambda: warm_up in replica_sets.first_seen, "the warm-up ReplicaSet", timeout=60, interval=0.2)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            created = dict(pool.map(create, range(count)))
        wait_until(lambda: all(name in replica_sets.first_seen for name in created), "every native ReplicaSet",
                   timeout=60 + count, interval=0.2)
        return [replica_sets.first_seen[name] - at for name, at in created.items()]
    finally:
        replica_sets.stop()
        k8s.CoreV1Api(api).delete_namespace(namespace)  # its pods leave room on the nodes for the workers


def ready_count(agents: Agents) -> int:
    items = agents.custom.list_namespaced_custom_object("agentworker.io", "v1alpha1", agents.namespace, "voiceagents")["items"]
    return sum(1 for item in items for c in (item.get("status") or {}).get("conditions") or []
               if c["type"] == "Ready" and c["status"] == "True")


READ_VERBS = ("get", "list")


def reads(plane: ControlPlane, user: str, namespace: str) -> int:
    """GETs and LISTs by the operator in `namespace` (its watches are not counted: they stay open)."""
    return len(plane.audit_events(user, READ_VERBS, namespace))


def writes(plane: ControlPlane, user: str, namespace: str) -> int:
    return len(plane.audit_events(user, WRITE_VERBS, namespace))


def bench_size(count: int, workdir: Path) -> dict:
    resync = RESYNC_SECONDS.get(count, 30.0)
    load_at_start = os.getloadavg()[0]
    say(f"N={count}: starting a control plane (resync {resync:g} s)")
    logs = workdir / "logs"
    plane = start_control_plane(workdir / "plane", logs)  # reads audited too: a no-op resync must make none
    endpoints: list[MetricsEndpoint] = []
    operator = None
    try:
        for node in ("kwok-node-1", "kwok-node-2"):  # room for every worker's default requests (1 CPU, 2Gi)
            plane.add_fake_node(node, pods=count + 20, cpu=str(count + 20), memory=f"{2 * count + 40}Gi")
        chart = operator_harness.install_chart(plane, workdir, "agent-worker", operator_harness.RESTRICTED)
        command = operator_harness.operator_command(chart.operator_kubeconfig, resync)
        command.env["VOICEAGENT_OBSERVE_SECONDS"] = str(OBSERVE_SECONDS)
        operator = start("voiceagent-operator", command.argv, logs, env=command.env)
        wait_for_http(command.health_url, operator, timeout=60)
        with plane.api_client() as api:
            native = native_baseline(api, f"native-{count}", count)
            say(f"N={count}: native Deployment -> ReplicaSet p95 {percentile(native, 0.95) * 1000:.0f} ms")
            namespace = f"bench-{count}"
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
            agents = Agents(api, namespace)
            agents.create_livekit_secret()
            deployments = DeploymentWatch(api, namespace)

            started = time.monotonic()
            created = create_agents(agents, count)
            say(f"N={count}: created in {time.monotonic() - started:.1f} s; waiting for Ready")
            wait_until(lambda: ready_count(agents) == count, f"{count} VoiceAgents Ready", operator,
                       timeout=120 + count * 2, interval=1.0)
            all_ready = time.monotonic() - started
            wait_until(lambda: len(deployments.first_seen) == count, "every Deployment seen", operator, timeout=60)
            to_deployment = [deployments.first_seen[name] - at for name, at in created.items()]
            say(f"N={count}: all Ready after {all_ready:.1f} s")

            user = chart.operator_user
            reconciles = 'voiceagent_operator_reconciles_total{outcome="ok"}'
            wait_until(lambda: quiet(plane, user, namespace, resync), "the operator's writes to settle", operator,
                       timeout=resync * 10 + 120, interval=0.1)
            writes_before, reconciles_before = writes(plane, user, namespace), operator_harness.metric_value(command.metrics_url, reconciles)
            reads_before = reads(plane, user, namespace)
            time.sleep(resync * NOOP_PERIODS)
            noop_writes = writes(plane, user, namespace) - writes_before
            noop_reads = reads(plane, user, namespace) - reads_before
            noop_reconciles = operator_harness.metric_value(command.metrics_url, reconciles) - reconciles_before
            memory = rss_mib(operator.popen.pid)
            say(f"N={count}: {noop_reads} reads, {noop_writes} writes over {NOOP_PERIODS} resyncs ({noop_reconciles:.0f} reconciles); {memory}")

            reactions = scale_reactions(agents, deployments, endpoints, resync)
            say(f"N={count}: scale reactions {[round(r, 2) for r in reactions]} s")
            deployments.stop()
        return {
            "voiceagents": count,
            "resync_seconds": resync,
            "observation_interval_seconds": OBSERVE_SECONDS,
            # From the first create; Ready follows the worker Deployment at the next resync.
            "all_ready_seconds": round(all_ready, 1),
            "create_to_deployment_ms": summary_ms(to_deployment),
            "native_deployment_to_replicaset_ms": summary_ms(native),
            "create_to_deployment_p95_over_native_p95": round(percentile(to_deployment, 0.95) / percentile(native, 0.95), 2),
            "noop_resync": {
                "periods": NOOP_PERIODS,
                "reconciles": int(noop_reconciles),
                "every_voiceagent_every_period": noop_reconciles >= count * NOOP_PERIODS,
                "api_reads": noop_reads,
                "api_reads_per_resync": round(noop_reads / NOOP_PERIODS, 2),
                "api_writes": noop_writes,
                "api_writes_per_resync": round(noop_writes / NOOP_PERIODS, 2),
            },
            "operator_memory": memory,
            # Other work shares the two cores: the 1-minute load average when this size started and ended.
            "load_average_1m": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
            "scale_reaction_seconds": {
                "samples": [round(r, 2) for r in reactions],
                "median": round(statistics.median(reactions), 2),
                "max": round(max(reactions), 2),
                "note": "room count served on the pod IP -> Deployment replicas patched; bounded by one observation interval",
            },
        }
    finally:
        for endpoint in endpoints:
            endpoint.close()
        if operator is not None:
            operator.stop()
        plane.stop()


def quiet(plane: ControlPlane, user: str, namespace: str, resync: float) -> bool:
    """No write by the operator in `namespace` for one resync period (plus a second)."""
    before = writes(plane, user, namespace)
    time.sleep(resync + 1)
    return writes(plane, user, namespace) == before


def scale_reactions(agents: Agents, deployments: DeploymentWatch, endpoints: list[MetricsEndpoint],
                    resync: float) -> list[float]:
    """Five rooms (target 2 per worker) on the single worker of a few VoiceAgents at once: each
    Deployment should go to 3 replicas; the time from serving the rooms to the watched patch."""
    names = [f"agent-{index:03d}" for index in range(SCALE_SAMPLES)]
    pods = {name: agents.worker_pods(name)[0] for name in names}
    served_at: dict[str, float] = {}
    for name, pod in pods.items():
        endpoint = MetricsEndpoint(pod.status.pod_ip, METRICS_PORT)
        endpoints.append(endpoint)
        endpoint.set({ROOMS_METRIC: 5})
        served_at[name] = time.monotonic()
    wait_until(lambda: all((f"{name}-worker", 3) in deployments.replicas_at for name in names),
               "the scaled Deployments", timeout=resync * 3 + 30, interval=0.05)
    return [deployments.replicas_at[(f"{name}-worker", 3)] - served_at[name] for name in names]


def testbed_machine() -> dict:
    return machine(
        kubernetes="v1.37.2 (kube-apiserver, kube-controller-manager, kube-scheduler), etcd v3.7.0",
        kwok="v0.8.0", kopf=metadata.version("kopf"),
        shared="the machine's 2 cores are shared with other work while the benchmark runs",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10,100,500", help="comma-separated VoiceAgent counts")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator.json")
    parser.add_argument("--keep", type=Path, help="keep the programs' logs (and audit logs) in this folder")
    args = parser.parse_args()
    if os.environ.get("TESTBED_HOST_NETWORK") != "1" and not network.in_closed_network():
        network.isolate_to_loopback()
    results = {"machine": testbed_machine(), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as temporary:
        work = args.keep or temporary
        for count in (int(size) for size in args.sizes.split(",")):
            results["sizes"].append(bench_size(count, Path(work) / f"n{count}"))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")  # after each size: partial results survive
    say(f"wrote {args.out}")
    bad = [size["voiceagents"] for size in results["sizes"] if size["noop_resync"]["api_writes"]]
    if bad:
        raise SystemExit(f"no-op resyncs wrote to the API for N={bad}")


if __name__ == "__main__":
    main()
