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

from livekit import rtc
from livekit.agents import AgentSession, llm, stt, tts, vad
from livekit.agents.voice import io
from livekit.agents.voice.transcription.synchronizer import TranscriptSynchronizer

from .agent import PreResponseAgent, TurnRecord
from .scripted import FRAME_SECONDS, SAMPLE_RATE, silence, tone

# VAD turn detection and fast endpointing keep scripted calls short and deterministic;
# production uses livekit's defaults.
SCRIPTED_TURN_HANDLING: dict[str, Any] = {
    "turn_detection": "vad",
    "endpointing": {"min_delay": 0.2, "max_delay": 1.0},
    "interruption": {"mode": "vad", "resume_false_interruption": False},
}


@dataclass
class Heard:
    """One turn at the caller's ear: seconds from the end of the caller's speech (the last voiced
    frame) to the first frame played of the filler and of the answer."""

    record: TurnRecord
    speech_end: float  # perf_counter
    filler: Playout | None
    answer: Playout | None

    @property
    def filler_after(self) -> float | None:
        return self.filler.starts_at - self.speech_end if self.filler else None

    @property
    def answer_after(self) -> float | None:
        return self.answer.starts_at - self.speech_end if self.answer else None

    @property
    def first_audio_after(self) -> float | None:
        heard = [t for t in (self.filler_after, self.answer_after) if t is not None]
        return min(heard) if heard else None


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
    heard: list[Heard] = field(default_factory=list)

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

    async def turn(self, speech_seconds: float = 0.4, *, timeout: float = 10.0, until_answer: bool = True) -> TurnRecord:
        """The caller speaks, then the call runs until the agent's answer was heard (or, with
        `until_answer=False`, until the turn is over) and all is quiet. What the caller heard is
        appended to `heard`."""
        count, played = len(self.agent.turns), len(self.speaker.playouts)
        speech_end = await self.caller.say(speech_seconds)
        turns = self.agent.turns

        def done() -> bool:
            return len(turns) > count and (turns[-1].answer_audio_at is not None or not until_answer)

        await self.wait_quiet(done, timeout=timeout)
        record = turns[-1]
        new = self.speaker.playouts[played:]
        filler = new[0] if record.filler_audio_at is not None and new else None
        answers = new[1:] if filler is not None else new
        self.heard.append(Heard(record, speech_end, filler, answers[0] if answers and record.answer_audio_at else None))
        return record

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


class ScriptedAudioInput(io.AudioInput):
    """A caller: silence in real time, and `speak(seconds)` of voice when asked."""

    def __init__(self, *, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__(label="scripted-caller")
        self._sample_rate = sample_rate
        self._voiced_left = 0.0
        self._next_at: float | None = None
        self._closed = False
        self.speech_ended = asyncio.Event()
        self.last_voice_at = 0.0

    def speak(self, seconds: float) -> None:
        self.speech_ended.clear()
        self._voiced_left += seconds

    async def say(self, seconds: float) -> float:
        """Speak for `seconds`; returns the perf_counter time of the last voiced frame."""
        self.speak(seconds)
        await self.speech_ended.wait()
        return self.last_voice_at

    def close(self) -> None:
        self._closed = True

    async def __anext__(self) -> rtc.AudioFrame:
        if self._closed:
            raise StopAsyncIteration
        now = time.perf_counter()
        self._next_at = now if self._next_at is None or self._next_at < now - 0.2 else self._next_at
        await asyncio.sleep(max(0.0, self._next_at - now))
        self._next_at += FRAME_SECONDS
        if self._voiced_left > 1e-9:
            self._voiced_left -= FRAME_SECONDS
            self.last_voice_at = time.perf_counter()
            if self._voiced_left <= 1e-9:
                self.speech_ended.set()
            return tone(FRAME_SECONDS, sample_rate=self._sample_rate)
        return silence(FRAME_SECONDS, sample_rate=self._sample_rate)


@dataclass
class Playout:
    """One segment the caller heard: when its first frame arrived, how much of it played."""

    first_frame_at: float
    starts_at: float
    pushed: float = 0.0
    played: float = 0.0
    interrupted: bool = False
    done: bool = False


class PacedAudioOutput(io.AudioOutput):
    """A speaker that plays segments one after another in real time and records each one."""

    def __init__(self) -> None:
        super().__init__(label="paced-speaker", capabilities=io.AudioOutputCapabilities(pause=False), sample_rate=None)
        self.playouts: list[Playout] = []
        self._current: Playout | None = None
        self._timers: dict[int, asyncio.TimerHandle] = {}

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._current is None:
            now = time.perf_counter()
            queued_until = max((p.starts_at + p.pushed for p in self.playouts if not p.done), default=now)
            self._current = Playout(first_frame_at=now, starts_at=max(now, queued_until))
            self.playouts.append(self._current)
            self.on_playback_started(created_at=time.time())
        self._current.pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        if self._current is None:
            return
        segment, self._current = self._current, None
        delay = max(0.0, segment.starts_at + segment.pushed - time.perf_counter())
        self._timers[id(segment)] = asyncio.get_running_loop().call_later(delay, self._finish, segment, False)

    def clear_buffer(self) -> None:
        self._current = None
        for segment in [p for p in self.playouts if not p.done]:
            self._finish(segment, True)

    def _finish(self, segment: Playout, interrupted: bool) -> None:
        if segment.done:
            return
        if (timer := self._timers.pop(id(segment), None)) is not None:
            timer.cancel()
        segment.done, segment.interrupted = True, interrupted
        heard = time.perf_counter() - segment.starts_at
        segment.played = min(segment.pushed, max(0.0, heard)) if interrupted else segment.pushed
        self.on_playback_finished(playback_position=segment.played, interrupted=interrupted)
