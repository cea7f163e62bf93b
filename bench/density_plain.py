"""The baseline of bench/density.py: a plain livekit `Agent` on the same providers, VAD, turn
detector and session options as the worker, without anything of ours per turn (no
PreResponseAgent, no SessionRecorder, no metrics exporter).

Run as livekit runs the worker: `python -m livekit.agents start bench/density_plain.py`, with the
worker's environment (AGENT_*; AGENT_PRERESPONSE_ENABLED=false, so no fast LLM is built;
AGENT_JOB_EXECUTOR=thread runs its calls as threads, as it does the worker's).
"""

from __future__ import annotations

from livekit.agents import Agent, AgentServer, JobContext

from agent_worker.config import JOB_SHUTDOWN_TIMEOUT, load_settings
from agent_worker.providers import build_components
from agent_worker.server import build_session, capacity_options, prewarm, room_options


async def entrypoint(ctx: JobContext) -> None:
    settings = ctx.proc.userdata.get("settings") or load_settings()
    components = build_components(settings, ctx.proc.userdata.get("vad"))
    session = build_session(settings, components)
    session.on("close", lambda ev: ctx.shutdown(reason="session closed"))
    await session.start(Agent(instructions=settings.instructions), room=ctx.room, room_options=room_options(settings))


def create_server() -> AgentServer:
    settings = load_settings()
    agent_server = AgentServer(setup_fnc=prewarm, port=settings.health_port,
                               shutdown_process_timeout=JOB_SHUTDOWN_TIMEOUT, **capacity_options(settings))
    agent_server.rtc_session(entrypoint, agent_name=settings.name)
    return agent_server


server = create_server()
