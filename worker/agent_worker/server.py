"""The LiveKit AgentServer: one PreResponseAgent session per job (room).

livekit imports this module in the worker process and in every job process; `server` is the
object its CLI looks for. Configuration errors are caught earlier by `agent-worker` itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from pathlib import Path

from livekit.agents import AgentServer, AgentSession, APIConnectOptions, JobContext, JobExecutorType, JobProcess, room_io
from livekit.agents.voice.agent_session import SessionConnectOptions

from .agent import FILLER_ATTRIBUTE, PreResponseAgent
from .config import JOB_SHUTDOWN_TIMEOUT, Settings, load_settings
from .decision import Options
from .exporter import READINESS
from .metrics import SessionRecorder
from .preresponse import DEFAULT_CACHE_DIR, FillerCache, PreResponseOptions, cached_phrases
from .pricing import PriceTable
from .providers import Components, build_components, build_tts, build_turn_handling, build_vad, watch

logger = logging.getLogger("agent_worker.server")

# A worker whose TTS is down still starts after this; its first call synthesizes what is missing.
STOCK_PHRASES_TIMEOUT = 15.0


def preresponse_options(settings: Settings) -> PreResponseOptions:
    return PreResponseOptions(
        enabled=settings.preresponse_enabled,
        max_words=settings.preresponse_max_words,
        use_cache=settings.preresponse_cache,
        decision=Options(
            late_after=settings.preresponse_late_after,
            playout_delay=settings.preresponse_playout_delay,
            min_words=settings.preresponse_min_words,
            min_gap=settings.preresponse_min_gap,
        ),
        cache_dir=Path(settings.preresponse_cache_dir) if settings.preresponse_cache_dir else DEFAULT_CACHE_DIR,
    )


def session_connect_options(settings: Settings) -> SessionConnectOptions:
    """Both LLM roles use these (the agent passes the session's to the fast LLM)."""
    return SessionConnectOptions(llm_conn_options=APIConnectOptions(timeout=settings.llm_timeout))


def build_session(settings: Settings, components: Components) -> AgentSession:
    """The session of one call: the providers and the turn handling the settings name."""
    return AgentSession(
        stt=components.stt.instance,
        llm=components.main.instance,
        tts=components.tts.instance,
        vad=components.vad,
        turn_handling=build_turn_handling(settings),
        conn_options=session_connect_options(settings),
    )


def room_options(settings: Settings) -> room_io.RoomOptions:
    """How the session takes the caller's audio: at the rate its consumers use, AGC as set."""
    return room_io.RoomOptions(audio_input=room_io.AudioInputOptions(
        sample_rate=settings.audio_sample_rate, auto_gain_control=settings.auto_gain_control))


async def synthesize_stock_phrases(settings: Settings, timeout: float = STOCK_PHRASES_TIMEOUT) -> None:
    """Fill the pod's filler cache before the worker registers, so even the first call's first
    turn has its stock phrases (job processes read them from the shared folder)."""
    options = preresponse_options(settings)
    if not (options.enabled and options.use_cache):
        return
    engine = build_tts(settings).instance
    try:
        await asyncio.wait_for(FillerCache(engine, cached_phrases(options), options.cache_dir).warm(), timeout)
    except Exception as exc:  # the TTS is unreachable or slow: start anyway, calls retry the missing phrases
        logger.warning("stock phrases not synthesized at start (%s); the first call synthesizes them", type(exc).__name__)
    finally:
        await engine.aclose()


def prewarm(proc: JobProcess) -> None:
    """Runs once per job process, before it takes a job: load what every session reuses."""
    proc.userdata["settings"] = load_settings()
    proc.userdata["vad"] = build_vad(proc.userdata["settings"].vad_min_silence)


async def entrypoint(ctx: JobContext) -> None:
    settings: Settings = ctx.proc.userdata.get("settings") or load_settings()
    components = build_components(settings, ctx.proc.userdata.get("vad"))
    recorder = SessionRecorder(PriceTable(settings.prices), room=ctx.room.name)
    watch(recorder, components)
    agent = PreResponseAgent(
        instructions=settings.instructions,
        fast_llm=components.fast.instance if components.fast else None,
        options=preresponse_options(settings),
        observer=recorder,
        fast_conn_options=APIConnectOptions(max_retry=0, timeout=settings.fast_llm_timeout),
        # Published so a listener (a frontend, the test bed's caller) can tell filler from answer.
        announce_filler=lambda text: asyncio.ensure_future(
            ctx.room.local_participant.set_attributes({FILLER_ATTRIBUTE: text})
        ),
    )
    session = build_session(settings, components)
    session.on("conversation_item_added", lambda ev: recorder.on_conversation_item(ev.item))
    def _on_close(ev) -> None:
        reason = str(ev.reason.value if hasattr(ev.reason, "value") else ev.reason)
        recorder.finish(reason)
        # Nothing is left to do in the room: end the job now, leaving the room cleanly, so a
        # draining worker exits as soon as its last call ends (not when livekit-server closes the
        # empty room, nor by killing the job process).
        ctx.shutdown(reason=f"session closed: {reason}")

    session.on("close", _on_close)

    async def _finish_on_shutdown(reason: str) -> None:
        recorder.finish(reason or "shutdown")

    ctx.add_shutdown_callback(_finish_on_shutdown)
    recorder.start()
    await session.start(agent, room=ctx.room, room_options=room_options(settings))


# With AGENT_MAX_SESSIONS the load livekit sees is the share of sessions in use scaled onto
# [0, FULL_LOAD], and the worker is full at FULL_LOAD. livekit-server offers a room only while some
# available worker's load is below its `agents.target_load` (0.7 by default), so a load of 1.0 at
# max_sessions would stop dispatch at 70 % of the sessions; 0.5 keeps every session but the last
# below any target load from 0.5 up.
FULL_LOAD = 0.5


def session_load(max_sessions: int) -> Callable[[AgentServer], float]:
    """A load function for livekit: the share of `max_sessions` in use, FULL_LOAD when full."""

    def load(agent_server: AgentServer) -> float:
        return FULL_LOAD * min(1.0, len(agent_server.active_jobs) / max_sessions)

    return load


def capacity_options(settings: Settings) -> dict:
    """AgentServer's arguments for what one worker holds: where its calls run (a job process each,
    or threads of the worker's process), its load (sessions in use when AGENT_MAX_SESSIONS is set,
    else CPU use) and its job memory limit. livekit samples every job process's memory every 5 s
    while a limit or a warning level is set (by default only a warning over 1000 MB): without a
    limit, both are 0 and nothing is sampled; with one, the warning comes at 80 % of it."""
    limit = settings.job_memory_limit_mb
    common = {
        "job_executor_type": JobExecutorType(settings.job_executor),
        "job_memory_limit_mb": limit,
        "job_memory_warn_mb": 0.8 * limit,
    }
    if settings.max_sessions:
        return {"load_fnc": session_load(settings.max_sessions), "load_threshold": FULL_LOAD, **common}
    return {"load_threshold": settings.load_threshold, **common}


def create_server(settings: Settings) -> AgentServer:
    """The AgentServer; /ready (exporter.READINESS) follows its registration and its drain."""
    agent_server = AgentServer(
        setup_fnc=prewarm,
        port=settings.health_port,
        drain_timeout=settings.drain_timeout,
        shutdown_process_timeout=JOB_SHUTDOWN_TIMEOUT,
        **capacity_options(settings),
    )
    registered = threading.Event()
    agent_server.on("worker_registered", lambda *_: registered.set())
    READINESS.track(lambda: registered.is_set() and not agent_server.draining)
    agent_server.rtc_session(entrypoint, agent_name=settings.name)
    return agent_server


server = create_server(load_settings())
