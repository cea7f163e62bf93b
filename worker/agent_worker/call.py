"""An in-process call over livekit's real audio path, with a scripted caller.

`ScriptedCall` wires an `AgentSession` to a `ScriptedAudioInput` (the caller's microphone) and
a `PacedAudioOutput` (the caller's ear) through livekit's `TranscriptSynchronizer`, as RoomIO
does in a real room, so interruptions truncate history exactly as in production. Tests, the
latency benchmark and the keyless demo all drive the worker through it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import AgentSession, llm, stt, tts, vad
from livekit.agents.voice.transcription.synchronizer import TranscriptSynchronizer

from .agent import PreResponseAgent, TurnRecord
from .scripted import PacedAudioOutput, ScriptedAudioInput

# VAD turn detection and fast endpointing keep scripted calls short and deterministic;
# production uses livekit's defaults.
SCRIPTED_TURN_HANDLING: dict[str, Any] = {
    "turn_detection": "vad",
    "endpointing": {"min_delay": 0.2, "max_delay": 1.0},
    "interruption": {"mode": "vad", "resume_false_interruption": False},
}


@dataclass
class ScriptedCall:
    agent: PreResponseAgent
    llm: llm.LLM
    stt: stt.STT
    tts: tts.TTS
    vad: vad.VAD
    turn_handling: dict[str, Any] = field(default_factory=lambda: dict(SCRIPTED_TURN_HANDLING))
    session: AgentSession = field(init=False)
    caller: ScriptedAudioInput = field(init=False)
    speaker: PacedAudioOutput = field(init=False)

    async def __aenter__(self) -> ScriptedCall:
        # No echo to cancel here: barge-in works from the first agent word (aec_warmup_duration=None).
        self.session = AgentSession(
            stt=self.stt, vad=self.vad, llm=self.llm, tts=self.tts, turn_handling=self.turn_handling,
            aec_warmup_duration=None, session_close_transcript_timeout=0.0,
        )
        self.caller, self.speaker = ScriptedAudioInput(), PacedAudioOutput()
        synchronizer = TranscriptSynchronizer(next_in_chain_audio=self.speaker, next_in_chain_text=None)
        self.session.input.audio = self.caller
        self.session.output.audio = synchronizer.audio_output
        self.session.output.transcription = synchronizer.text_output
        await self.session.start(self.agent, record=False)
        if (cache := self.agent.filler_cache) is not None:
            await cache.warm()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.caller.close()
        await self.session.aclose()

    async def turn(self, speech_seconds: float = 0.4, *, timeout: float = 10.0) -> TurnRecord:
        """The caller speaks, then the call runs until the agent's answer was heard and all is quiet."""
        count = len(self.agent.turns)
        await self.caller.say(speech_seconds)
        turns = self.agent.turns
        await self.wait_quiet(lambda: len(turns) > count and turns[-1].answer_audio_at is not None, timeout=timeout)
        return turns[-1]

    async def wait_quiet(self, condition: Any = lambda: True, *, timeout: float = 10.0, settle: float = 0.15) -> None:
        """Wait until `condition()` holds and nothing is queued, playing or being generated."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            busy = (
                not condition()
                or self.session.agent_state in ("thinking", "speaking")
                or self.session.user_state == "speaking"
                or self.session.current_speech is not None
                or any(not p.done for p in self.speaker.playouts)
            )
            now = time.monotonic()
            quiet_since = None if busy else (quiet_since or now)
            if quiet_since is not None and now - quiet_since >= settle:
                return
            await asyncio.sleep(0.01)
        raise TimeoutError(f"the call did not go quiet within {timeout}s")

    def history(self) -> list[tuple[str, str, bool]]:
        """(role, text, interrupted) of each message the agent will send to the main LLM next."""
        return [
            (item.role, item.text_content or "", item.interrupted)
            for item in self.agent.chat_ctx.items
            if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant")
        ]
