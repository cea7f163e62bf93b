"""Starts the test bed's programs for the demo, concurrently where they can be, and stops them all
on exit: livekit-server, Ollama and the speech server beside the control plane, then the real node
(containerd, kubelet, kube-proxy, with the images of `make images`) and Prometheus."""

from __future__ import annotations

import contextlib
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.integration.harness import services
from tests.integration.harness.control_plane import ControlPlane, start_control_plane
from tests.integration.harness.node import Node, start_node
from tests.integration.harness.worker import derive_model

from . import monitoring
from .cluster import NAMESPACE, OPERATOR_NAMESPACE
from .monitoring import Prometheus
from .shell import say


@dataclass
class Bed:
    livekit: services.LiveKit
    model: services.ModelServer
    speech: services.SpeechServer
    prometheus: Prometheus
    plane: ControlPlane
    node: Node
    models: Future[tuple[str, str]]  # (main, fast) Ollama models derived from the test bed's

    @property
    def main_model(self) -> str:
        return self.models.result(timeout=180)[0]

    @property
    def fast_model(self) -> str:
        return self.models.result(timeout=180)[1]


def derived_models(model: services.ModelServer) -> tuple[str, str]:
    """(answer, filler) models on the test bed's weights, created and loaded; nothing is pulled.

    The test bed's model is a small base model in a dialogue template (testbed/README.md). Both
    sample greedily, as in the tests, so a turn never gets a chance empty reply. A voice answer is
    a sentence or two, so the answer model stops after 32 tokens; the filler model stops at its
    first sentence, the only part ever spoken, so the pre-response is ready after a few tokens;
    an unusable filler (empty, or the previous one again) is replaced by a stock phrase."""
    answer = derive_model(model, "demo-answer", {"num_predict": 32, "temperature": 0})
    filler = derive_model(model, "demo-filler", {"num_predict": 12, "temperature": 0,
                                                 "stop": [".", "!", "?", "\n", "Caller:", "<start_of_image>"]})
    return answer, filler


def remove_node_files(directory: Path) -> None:
    """The stopped node's containerd and kubelet state (about 1 GB: the unpacked images); the
    logs stay. Left alone if anything is still mounted under it."""
    mounted = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
               if line.split()[1].startswith(f"{directory}/")]
    if mounted:
        say(f"left {directory} in place: {mounted[0]} is still mounted")
        return
    shutil.rmtree(directory, ignore_errors=True)


def start_bed(stack: contextlib.ExitStack, workdir: Path, log_dir: Path) -> Bed:
    """The servers and the control plane in parallel, then the node and Prometheus; each is
    registered on `stack` to be stopped as soon as it has started."""

    def started(what: str, server, stop):
        stack.callback(stop)
        say(f"{what} ready")
        return server

    # The harness asks the kernel to stop each program when the *thread* that started it exits
    # (PR_SET_PDEATHSIG), so the pool's threads must live until everything has been stopped. The
    # node is started on this thread: it stops its containers itself if interrupted half-way.
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="starter")
    stack.callback(pool.shutdown)
    futures = {
        "control plane": pool.submit(start_control_plane, workdir / "control-plane", log_dir),
        "livekit-server": pool.submit(services.start_livekit, workdir, log_dir),
        "Ollama": pool.submit(services.start_ollama, workdir, log_dir),
        "speech server": pool.submit(services.start_speech_server, log_dir),
    }
    plane = futures.pop("control plane").result()
    started("control plane", plane, plane.stop)
    stack.callback(remove_node_files, workdir / "node")  # once the node has stopped
    node = start_node(plane, workdir / "node", log_dir)
    started(f"node {node.name} ({node.ip}; containerd, kubelet, kube-proxy; images {', '.join(node.images)})",
            node, node.stop)
    prometheus = Prometheus(monitoring.config(plane, NAMESPACE, OPERATOR_NAMESPACE), workdir, log_dir)
    started("Prometheus", prometheus, prometheus.stop)
    results, errors = {}, []
    for what, future in futures.items():
        try:
            server = future.result()
        except Exception as error:
            errors.append(error)
            continue
        results[what] = started(what, server, server.process.stop)
    if errors:
        raise errors[0]
    models = pool.submit(derived_models, results["Ollama"])  # while the cluster comes up
    say(f"livekit-server {results['livekit-server'].url}, Ollama {results['Ollama'].base_url} "
        f"({results['Ollama'].model}), speech {results['speech server'].base_url}, Prometheus {prometheus.url}, "
        f"kube-apiserver {plane.server}; pods reach them at {node.ip}")
    return Bed(results["livekit-server"], results["Ollama"], results["speech server"], prometheus, plane, node,
               models)
