"""A worker at AGENT_MAX_SESSIONS is full: it tells livekit-server so (load 1.0, status full), the
next call goes to another worker, and the calls it holds keep being answered.

Real livekit-server, real `agent-worker start` processes and real WebRTC callers; the providers
are the scripted stand-ins (harness/scripted_providers.py), so the only CPU is the workers' and
the callers' own. The workers run with the environment the operator gives them (AGENT_MAX_SESSIONS
and nothing else about load), so the test holds for the shipped defaults, with each call in its own
job process (the default) and with every call a thread of the worker's process
(AGENT_JOB_EXECUTOR=thread).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack

import pytest
from livekit import api

from .harness.caller import Conversation, joined
from .harness.processes import metric_value
from .harness.scripted_providers import FAST_MODEL, MAIN_MODEL, scripted_providers  # noqa: F401 (fixture)
from .harness.worker import Worker, worker_process  # noqa: F401 (fixture)

pytestmark = pytest.mark.testbed

# Above 3 on purpose: livekit-agents marks a worker full once its load reaches the threshold (0.7 by
# default), and livekit-server 1.13 offers a job to a lone worker only while its load is at most
# 0.5. A load of sessions/maximum refuses the third of four calls on both counts.
MAX_SESSIONS = 4
FULL = "worker is at full capacity"  # what livekit-agents logs when it marks itself full
QUESTION = "What is the weather like in Paris today?"


def active_jobs(worker: Worker) -> int:
    return int(worker.status().get("active_jobs", 0))  # livekit's JSON leaves a zero out


async def until(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.3)


async def answered(conversation: Conversation) -> bool:
    turn = await conversation.ask(QUESTION, turn_timeout=45.0)
    return not turn.timed_out and turn.answer_start is not None


@pytest.mark.parametrize("executor", ["process", "thread"])
async def test_a_full_worker_reports_full_and_the_next_call_goes_to_another_worker_while_its_calls_go_on(
    executor, worker_process, scripted_providers, livekit_server,  # noqa: F811
):
    providers = scripted_providers()
    # Rooms are dispatched to this test's own agent name, so a worker another test left draining on
    # the shared livekit-server is never offered one; livekit-server still picks by load.
    agent_name = f"capacity-{executor}-{uuid.uuid4().hex[:6]}"
    env = {"AGENT_NAME": agent_name, "AGENT_MAX_SESSIONS": str(MAX_SESSIONS), "AGENT_JOB_EXECUTOR": executor,
           "AGENT_LLM_MODEL": MAIN_MODEL, "AGENT_LLM_BASE_URL": providers,
           "AGENT_FAST_LLM_MODEL": FAST_MODEL, "AGENT_FAST_LLM_BASE_URL": providers,
           "AGENT_STT_PROVIDER": "openai", "AGENT_STT_MODEL": "whisper-1",  # the stand-ins' batch STT
           "AGENT_STT_BASE_URL": providers, "AGENT_TTS_BASE_URL": providers}
    first = await asyncio.to_thread(worker_process, **env)
    credentials = (livekit_server.url, livekit_server.api_key, livekit_server.api_secret)
    lkapi = api.LiveKitAPI(livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret)

    async def call(room: str) -> Conversation:
        await lkapi.room.create_room(api.CreateRoomRequest(
            name=room, empty_timeout=30, agents=[api.RoomAgentDispatch(agent_name=agent_name)]))
        return await calls.enter_async_context(joined(*credentials, room, join_timeout=90.0))

    async with AsyncExitStack() as calls:
        calls.push_async_callback(lkapi.aclose)
        held = []
        for index in range(MAX_SESSIONS):
            held.append(await call(f"capacity-held-{index}-{uuid.uuid4().hex[:6]}"))
            # Every call up to the maximum is taken by the only worker, and it is not full before.
            assert await asyncio.to_thread(active_jobs, first) == index + 1
            if index + 1 < MAX_SESSIONS:
                assert FULL not in first.process.log_text(), (
                    f"the worker marked itself full at {index + 1} of AGENT_MAX_SESSIONS={MAX_SESSIONS} calls")

        await until(lambda: FULL in first.process.log_text(),
                    "the worker to tell livekit-server it is full")

        second = await asyncio.to_thread(worker_process, **env)
        extra = await call(f"capacity-extra-{uuid.uuid4().hex[:6]}")
        assert await asyncio.to_thread(active_jobs, second) == 1
        assert await asyncio.to_thread(active_jobs, first) == MAX_SESSIONS

        # The calls already held are unaffected: each is still answered, as is the new one.
        results = await asyncio.gather(*(answered(conversation) for conversation in [*held, extra]))
        assert results == [True] * (MAX_SESSIONS + 1), results
        assert await asyncio.to_thread(active_jobs, first) == MAX_SESSIONS
        # What the operator autoscales on counts the same calls.
        assert await asyncio.to_thread(metric_value, first.metrics_url, "agent_worker_active_sessions") == MAX_SESSIONS
        assert await asyncio.to_thread(metric_value, second.metrics_url, "agent_worker_active_sessions") == 1
