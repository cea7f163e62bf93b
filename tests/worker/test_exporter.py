"""The /metrics endpoint across processes: live session gauge, dead job processes, livekit's metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from agent_worker.exporter import LiveMultiProcessCollector

# A job process: starts a session, then hangs, or finishes it and exits. "main" is the worker's
# main process, which imports the metrics (so the gauge exists at 0) and serves no session.
JOB = """
import sys, time
from agent_worker.metrics import SessionRecorder
from agent_worker.pricing import PriceTable
recorder = SessionRecorder(PriceTable())
if sys.argv[1] != "main":
    recorder.start()
if sys.argv[1] == "finish":
    recorder.finish("done")
print("ready", flush=True)
time.sleep(0 if sys.argv[1] == "finish" else 60)
"""


def start_job(path: Path, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    proc = subprocess.Popen([sys.executable, "-c", JOB, mode], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def scraped(path: Path, name: str) -> float:
    for family in LiveMultiProcessCollector(path).collect():
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not exported")


def test_active_sessions_sum_live_job_processes_and_drop_a_killed_one(tmp_path):
    main = start_job(tmp_path, "main")
    try:
        hanging = start_job(tmp_path, "hang")
        finished = start_job(tmp_path, "finish")
        finished.wait(timeout=10)
        assert scraped(tmp_path, "agent_worker_active_sessions") == 1
        hanging.send_signal(signal.SIGKILL)
        hanging.wait(timeout=10)
        assert scraped(tmp_path, "agent_worker_active_sessions") == 0
        assert scraped(tmp_path, "agent_worker_sessions_total") == 2
    finally:
        main.kill()
        main.wait()


def test_only_the_dead_process_live_gauge_file_is_removed(tmp_path):
    hanging = start_job(tmp_path, "hang")
    alive = start_job(tmp_path, "hang")
    try:
        hanging.send_signal(signal.SIGKILL)
        hanging.wait(timeout=10)
        scraped(tmp_path, "agent_worker_active_sessions")
        files = sorted(p.name for p in tmp_path.iterdir())
        assert f"gauge_livesum_{hanging.pid}.db" not in files
        assert f"gauge_livesum_{alive.pid}.db" in files
        assert f"counter_{hanging.pid}.db" in files  # counters of the dead process still count
    finally:
        alive.kill()
        alive.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status, response.read().decode()


def test_worker_serves_its_metrics_and_livekits_on_one_endpoint_and_health_on_its_own(tmp_path):
    metrics_port, health_port, closed_port = free_port(), free_port(), free_port()
    env = {
        **os.environ, "GROQ_API_KEY": "k", "DEEPGRAM_API_KEY": "k", "OPENAI_API_KEY": "k",
        "LIVEKIT_URL": f"ws://127.0.0.1:{closed_port}", "LIVEKIT_API_KEY": "devkey", "LIVEKIT_API_SECRET": "x" * 32,
        "AGENT_METRICS_PORT": str(metrics_port), "AGENT_HEALTH_PORT": str(health_port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "agent_worker.cli", "start"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        body, deadline = "", time.monotonic() + 60
        while "lk_agents_worker_load" not in body and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                _, body = get(f"http://127.0.0.1:{metrics_port}/metrics")
            except OSError:
                continue
        assert "agent_worker_active_sessions 0.0" in body
        assert "lk_agents_worker_load{" in body
        status, worker_info = get(f"http://127.0.0.1:{health_port}/worker")
        assert status == 200 and '"worker_type": "JT_ROOM"' in worker_info
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def test_active_sessions_read_zero_once_every_job_process_has_exited(tmp_path):
    assert scraped(tmp_path, "agent_worker_active_sessions") == 0  # nothing has run yet

    finished = start_job(tmp_path, "finish")
    finished.wait(timeout=10)

    assert scraped(tmp_path, "agent_worker_active_sessions") == 0  # present, not missing
    assert scraped(tmp_path, "agent_worker_sessions_total") == 1


def test_ready_answers_503_until_the_tracked_check_says_the_worker_can_take_calls(tmp_path):
    import urllib.error
    import urllib.request

    from agent_worker.exporter import READINESS, serve_metrics

    state = {"registered": False, "draining": False}
    READINESS.track(lambda: state["registered"] and not state["draining"])
    server = serve_metrics(0, host="127.0.0.1", path=tmp_path)
    url = f"http://127.0.0.1:{server.server_port}"

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(url + path, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    try:
        assert status("/ready") == 503
        state["registered"] = True
        assert status("/ready") == 200
        state["draining"] = True
        assert status("/ready") == 503
        assert status("/metrics") == 200
    finally:
        server.shutdown()
        READINESS.track(lambda: False)
