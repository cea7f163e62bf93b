"""The real worker (`agent-worker start`) against the test bed: local Ollama for both LLM roles,
the local speech server for STT (Deepgram's streaming API) and TTS (OpenAI's), livekit-server on
loopback.

  worker_env(...)      the environment that points the worker at the test bed
  launch_worker(...)   start it and wait until it has registered with livekit-server (for
                       programs such as the demo; pass the harness's `start` or the fixture's
                       `spawn` to own the process)
  worker_process       pytest fixture: a factory `worker_process(**env) -> Worker`, always stopped
  voice_model(...)     an Ollama model derived from the test bed's: greedy, with a cap on answer length
  derive_model(...)    any such derived model
  slower_model(...)    the same model a fixed delay later: the stand-in for a slower main model
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .processes import LOOPBACK, Process, free_port, http_status, wait_until
from .services import LiveKit, ModelServer, SpeechServer

WORKER_BIN = Path(sys.executable).parent / "agent-worker"
REGISTERED = "registered worker"  # what livekit-agents logs once livekit-server accepted the worker
# A voice answer is a sentence or two: the derived model stops after this many tokens (the fast
# LLM stops earlier, at its first sentence).
VOICE_MAX_TOKENS = 20


def worker_env(livekit: LiveKit, model_server: ModelServer, speech_server: SpeechServer, *,
               metrics_port: int, health_port: int, **extra: str) -> dict[str, str]:
    """Environment for `agent-worker start` on the test bed; `extra` (variable names) wins."""
    env = {
        "LIVEKIT_URL": livekit.url,
        "LIVEKIT_API_KEY": livekit.api_key,
        "LIVEKIT_API_SECRET": livekit.api_secret,
        "AGENT_LLM_PROVIDER": "ollama",
        "AGENT_LLM_MODEL": model_server.model,
        "AGENT_LLM_BASE_URL": model_server.base_url,
        "AGENT_FAST_LLM_PROVIDER": "ollama",
        "AGENT_FAST_LLM_MODEL": model_server.model,
        "AGENT_FAST_LLM_BASE_URL": model_server.base_url,
        # Deepgram's streaming API, as in production: the transcript is final as the caller stops.
        "AGENT_STT_PROVIDER": "deepgram",
        "AGENT_STT_BASE_URL": speech_server.base_url + "/listen",
        "AGENT_TTS_PROVIDER": "openai",
        "AGENT_TTS_BASE_URL": speech_server.base_url,
        "AGENT_METRICS_PORT": str(metrics_port),
        "AGENT_HEALTH_PORT": str(health_port),
        # Load = sessions in use, not CPU: the test bed shares its few cores with everything else,
        # and at a busy CPU livekit-server would dispatch no job to the worker.
        "AGENT_MAX_SESSIONS": "4",
        # A busy CPU delays the model's first byte past livekit's 10 s, and each retry starts over.
        "AGENT_LLM_TIMEOUT": "60",
        # No real provider keys may leak in from the host; the speech server takes any Deepgram key.
        "OPENAI_API_KEY": "", "GROQ_API_KEY": "", "DEEPGRAM_API_KEY": "testbed",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def voice_model(model_server: ModelServer, max_tokens: int = VOICE_MAX_TOKENS) -> str:
    """The test bed's model capped at `max_tokens` tokens and sampling greedily: the same words for
    the same transcript, so a test never hears a chance empty reply."""
    return derive_model(model_server, f"voice{max_tokens}", {"num_predict": max_tokens, "temperature": 0})


def derive_model(model_server: ModelServer, suffix: str, parameters: dict[str, Any]) -> str:
    """`<model>-<suffix>`: an Ollama model on the test bed's weights with these Modelfile
    parameters (the rest inherited), created and loaded (the first request loads the weights).
    Idempotent; nothing is pulled."""
    name = f"{model_server.model}-{suffix}"
    native = model_server.base_url.removesuffix("/v1")
    _post(f"{native}/api/create", {"model": name, "from": model_server.model,
                                   "parameters": parameters, "stream": False}, timeout=120)
    _post(f"{native}/api/generate", {"model": name, "prompt": "Hello", "stream": False,
                                     "options": {"num_predict": 1}}, timeout=120)
    return name


@asynccontextmanager
async def slower_model(base_url: str, delay: float, host: str = LOOPBACK,
                       refuse: Callable[[web.Request], web.Response | None] | None = None) -> AsyncIterator[str]:
    """An OpenAI-compatible base URL on `host` that answers like `base_url` does, `delay` seconds later
    (or at once with `refuse(request)`'s response, when it gives one: a failing provider).

    The pre-response exists because the main model is slower than the fast one (a 70B beside an
    8B). The test bed has one small model, so the main LLM is pointed here instead."""
    upstream = base_url.removesuffix("/v1")

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        refused = refuse(request) if refuse else None
        if refused is not None:
            return refused
        await asyncio.sleep(delay)
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with client.request(request.method, upstream + request.path_qs, data=body, headers=headers) as answer:
            response = web.StreamResponse(status=answer.status, headers={
                "Content-Type": answer.headers.get("Content-Type", "application/json")})
            try:
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the worker gave up on this answer (the caller spoke again, or hung up)
            return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    port = free_port(host)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as client:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        try:
            yield f"http://{host}:{port}/v1"
        finally:
            await runner.cleanup()


def _post(url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode() or "{}")


@dataclass
class Worker:
    process: Process
    env: dict[str, str]
    metrics_port: int
    health_port: int

    @property
    def metrics_target(self) -> str:
        """host:port for Prometheus."""
        return f"{LOOPBACK}:{self.metrics_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    def status(self) -> dict[str, Any]:
        """livekit's GET /worker: active_jobs, worker_load, agent_name, ..."""
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.health_port}/worker", timeout=5) as response:
            return json.load(response)

    def registered(self) -> bool:
        return REGISTERED in self.process.log_text()

    def stop(self) -> None:
        self.process.stop(timeout=20)


Start = Callable[..., Process]


def launch_worker(start: Start, livekit: LiveKit, model_server: ModelServer, speech_server: SpeechServer, *,
                  name: str = "agent-worker", timeout: float = 90.0, metrics_port: int | None = None,
                  health_port: int | None = None, **extra: str) -> Worker:
    """Starts `agent-worker start` with `start(name, argv, env)` (the fixture's `spawn`, or
    `functools.partial(processes.start, log_dir=...)`) and waits until its health endpoint answers
    and it has registered with livekit-server. The caller owns stopping it (`Worker.stop()`)."""
    metrics_port = metrics_port or free_port()
    health_port = health_port or free_port()
    env = worker_env(livekit, model_server, speech_server, metrics_port=metrics_port,
                     health_port=health_port, **extra)
    if not os.access(WORKER_BIN, os.X_OK):
        raise FileNotFoundError(f"{WORKER_BIN} is missing: run `make setup` first")
    process = start(name, [str(WORKER_BIN), "start", "--log-level", "INFO"], env=env)
    worker = Worker(process, env, metrics_port, health_port)
    wait_until(lambda: http_status(f"http://{LOOPBACK}:{health_port}/") == 200 and worker.registered(),
               "the worker to register with livekit-server", process, timeout)
    wait_until(lambda: http_status(worker.metrics_url) == 200, "the worker's metrics endpoint", process, 10)
    return worker


@pytest.fixture
def worker_process(spawn, livekit_server, model_server, speech_server) -> Iterator[Callable[..., Worker]]:
    """Factory: `worker_process(**env) -> Worker`, registered with the test bed's livekit-server;
    `env` overrides worker_env's variables. Stopped after the test (through `spawn`)."""
    started: list[Worker] = []

    def launch(**extra: str) -> Worker:
        def start(name: str, argv: list[str], env: dict[str, str]) -> Process:
            return spawn(name, argv, env)

        worker = launch_worker(start, livekit_server, model_server, speech_server,
                               name=f"agent-worker-{len(started) + 1}", **extra)
        started.append(worker)
        return worker

    yield launch
    for worker in started:
        worker.stop()

