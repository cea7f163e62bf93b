"""Scripted stand-ins for the cloud providers, built on livekit's own interfaces.

They let the worker run its real audio path with no network and no keys: tests, the latency
benchmark and the keyless demo use them. Latencies are controllable (a number of seconds, or a
callable returning one, so a benchmark can draw from a distribution):

- `ScriptedLLM`: waits `ttft`, then streams the reply word by word every `token_interval`, and
  reports a fixed `prompt_tokens` / `cached_tokens` plus one completion token per word.
- `ScriptedTTS`: non-streaming like OpenAI tts-1; waits `ttfb`, then returns a tone lasting
  `seconds_per_char` per character.
- `ScriptedVAD`: any frame with a non-zero sample is speech.
- `ScriptedSTT`: streaming; `final_delay` after an utterance's voice stops it emits the next
  transcript of its script and bills the voiced seconds of that utterance.

The caller's microphone and ear (`ScriptedAudioInput`, `PacedAudioOutput`) live in `call.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectionError, APIConnectOptions, llm, stt, tts, vad
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

Delay = float | Callable[[], float]
SAMPLE_RATE = 24000
FRAME_SECONDS = 0.02
_ids = itertools.count(1)


def _seconds(delay: Delay) -> float:
    return max(0.0, delay() if callable(delay) else delay)


def tone(duration: float, *, sample_rate: int = SAMPLE_RATE, amplitude: int = 3000) -> rtc.AudioFrame:
    samples = max(1, int(duration * sample_rate))
    data = np.full(samples, amplitude, dtype=np.int16)
    return rtc.AudioFrame(data.tobytes(), sample_rate, 1, samples)


def silence(duration: float, *, sample_rate: int = SAMPLE_RATE) -> rtc.AudioFrame:
    samples = max(1, int(duration * sample_rate))
    return rtc.AudioFrame(bytes(samples * 2), sample_rate, 1, samples)


def is_voiced(frame: rtc.AudioFrame) -> bool:
    return bool(np.frombuffer(frame.data, dtype=np.int16).any())


class _Named:
    """The model/provider names a stand-in reports (and is priced and labelled by)."""

    _model: str
    _provider: str

    @property
    def model(self) -> str:
        return self._model

    @property
    def provider(self) -> str:
        return self._provider


# --- LLM ---------------------------------------------------------------------------------


def last_user_text(chat_ctx: llm.ChatContext) -> str:
    for item in reversed(chat_ctx.items):
        if item.type == "message" and item.role == "user":
            return item.text_content or ""
    return ""


class ScriptedLLM(_Named, llm.LLM):
    """An LLM whose reply is `reply(chat_ctx)` (or a fixed string), streamed word by word."""

    def __init__(
        self,
        reply: str | Callable[[llm.ChatContext], str],
        *,
        model: str = "scripted-llm",
        provider: str = "scripted",
        ttft: Delay = 0.05,
        token_interval: Delay = 0.0,
        prompt_tokens: int = 100,
        cached_tokens: int = 0,
        failures: int = 0,
    ) -> None:
        super().__init__()
        self._reply = reply
        self._model, self._provider = model, provider
        self.ttft, self.token_interval = ttft, token_interval
        self.prompt_tokens, self.cached_tokens = prompt_tokens, cached_tokens
        self.failures_left = failures
        self.requests: list[llm.ChatContext] = []
        self.timings: list[tuple[float, float]] = []  # (time.time() at start, scripted seconds to last token)

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> llm.LLMStream:
        self.requests.append(chat_ctx.copy())
        return _ScriptedLLMStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)

    def reply_for(self, chat_ctx: llm.ChatContext) -> str:
        return self._reply(chat_ctx) if callable(self._reply) else self._reply

    def draw_delays(self, chat_ctx: llm.ChatContext) -> tuple[float, float]:
        """(time to first token, interval between tokens) for one request; override to key draws."""
        return _seconds(self.ttft), _seconds(self.token_interval)


class _ScriptedLLMStream(llm.LLMStream):
    _llm: ScriptedLLM

    async def _run(self) -> None:
        scripted = self._llm
        ttft, interval = scripted.draw_delays(self._chat_ctx)
        if scripted.failures_left > 0:  # fails when its first token was due, like a provider giving up
            scripted.failures_left -= 1
            await asyncio.sleep(ttft)
            raise APIConnectionError("scripted provider failure", retryable=False)
        request_id = f"scripted-{next(_ids)}"
        words = scripted.reply_for(self._chat_ctx).split()
        scripted.timings.append((time.time(), ttft + interval * max(0, len(words) - 1)))
        await asyncio.sleep(ttft)
        for index, word in enumerate(words):
            if index:
                await asyncio.sleep(interval)
            text = word if index == 0 else f" {word}"
            self._event_ch.send_nowait(llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=text)))
        usage = llm.CompletionUsage(
            completion_tokens=len(words),
            prompt_tokens=scripted.prompt_tokens,
            prompt_cached_tokens=scripted.cached_tokens,
            total_tokens=len(words) + scripted.prompt_tokens,
        )
        self._event_ch.send_nowait(llm.ChatChunk(id=request_id, usage=usage))


# --- TTS ---------------------------------------------------------------------------------


class ScriptedTTS(_Named, tts.TTS):
    """A non-streaming TTS: `ttfb` of silence on the wire, then the whole clip at once."""

    def __init__(
        self,
        *,
        model: str = "scripted-tts",
        provider: str = "scripted",
        ttfb: Delay = 0.05,
        seconds_per_char: float = 0.01,
    ) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=SAMPLE_RATE, num_channels=1)
        self._model, self._provider = model, provider
        self.ttfb, self.seconds_per_char = ttfb, seconds_per_char
        self.voice = f"tone-{seconds_per_char}s-per-char"  # a different pace is a different voice
        self.texts: list[str] = []

    def draw_ttfb(self, text: str) -> float:
        """Time to first audio for one request; override to key draws."""
        return _seconds(self.ttfb)

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> tts.ChunkedStream:
        self.texts.append(text)
        return _ScriptedChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _ScriptedChunkedStream(tts.ChunkedStream):
    _tts: ScriptedTTS

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        await asyncio.sleep(self._tts.draw_ttfb(self._input_text))
        output_emitter.initialize(
            request_id=f"scripted-{next(_ids)}", sample_rate=SAMPLE_RATE, num_channels=1, mime_type="audio/pcm"
        )
        clip = tone(max(FRAME_SECONDS, len(self._input_text) * self._tts.seconds_per_char))
        output_emitter.push(bytes(clip.data))
        output_emitter.flush()


# --- VAD ---------------------------------------------------------------------------------


class ScriptedVAD(vad.VAD):
    """Voice is any non-zero sample; the end of speech is `min_silence` of zeros."""

    def __init__(self, *, min_silence: float = 0.2) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=FRAME_SECONDS))
        self.min_silence = min_silence

    @property
    def model(self) -> str:
        return "scripted-vad"

    @property
    def provider(self) -> str:
        return "scripted"

    def stream(self) -> vad.VADStream:
        return _ScriptedVADStream(self)


class _ScriptedVADStream(vad.VADStream):
    _vad: ScriptedVAD

    async def _main_task(self) -> None:
        speaking, speech, quiet, index = False, 0.0, 0.0, 0
        voiced_frames: list[rtc.AudioFrame] = []
        async for frame in self._input_ch:
            if not isinstance(frame, rtc.AudioFrame):
                speaking, speech, quiet, voiced_frames = False, 0.0, 0.0, []
                continue
            index += frame.samples_per_channel
            voiced = is_voiced(frame)
            if voiced:
                speech, quiet = speech + frame.duration, 0.0
                voiced_frames.append(frame)
                if not speaking:
                    speaking = True
                    self._event_ch.send_nowait(self._event(vad.VADEventType.START_OF_SPEECH, index, speech, quiet, [frame]))
            else:
                quiet += frame.duration
            self._event_ch.send_nowait(
                self._event(vad.VADEventType.INFERENCE_DONE, index, speech, quiet, [frame], speaking=speaking, probability=float(voiced))
            )
            if speaking and not voiced and quiet >= self._vad.min_silence:
                self._event_ch.send_nowait(self._event(vad.VADEventType.END_OF_SPEECH, index, speech, quiet, voiced_frames))
                speaking, speech, voiced_frames = False, 0.0, []

    @staticmethod
    def _event(
        kind: vad.VADEventType, index: int, speech: float, quiet: float, frames: list[rtc.AudioFrame], **extra: Any
    ) -> vad.VADEvent:
        return vad.VADEvent(
            type=kind, samples_index=index, timestamp=time.time(), speech_duration=speech,
            silence_duration=quiet, frames=frames, **extra,
        )


# --- STT ---------------------------------------------------------------------------------


class ScriptedSTT(_Named, stt.STT):
    """Streaming STT that hears the i-th utterance as `transcripts[i]`."""

    def __init__(
        self,
        transcripts: Sequence[str] = (),
        *,
        model: str = "scripted-stt",
        provider: str = "scripted",
        final_delay: Delay = 0.05,
    ) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=False))
        self._model, self._provider = model, provider
        self.transcripts = list(transcripts)
        self.final_delay = final_delay

    async def _recognize_impl(self, buffer: Any, *, language: Any = NOT_GIVEN, conn_options: Any = None) -> stt.SpeechEvent:
        raise NotImplementedError("ScriptedSTT only streams")

    def stream(
        self, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> stt.RecognizeStream:
        return _ScriptedRecognizeStream(stt=self, conn_options=conn_options)

    def next_transcript(self) -> str:
        return self.transcripts.pop(0) if self.transcripts else ""


class _ScriptedRecognizeStream(stt.RecognizeStream):
    _stt: ScriptedSTT

    async def _run(self) -> None:
        voiced_seconds, pending = 0.0, []
        async for frame in self._input_ch:
            if not isinstance(frame, rtc.AudioFrame):
                continue
            if is_voiced(frame):
                voiced_seconds += frame.duration
            elif voiced_seconds:
                pending.append(asyncio.create_task(self._finalize(voiced_seconds)))
                voiced_seconds = 0.0
        await asyncio.gather(*pending)

    async def _finalize(self, voiced_seconds: float) -> None:
        request_id = f"scripted-{next(_ids)}"
        await asyncio.sleep(_seconds(self._stt.final_delay))
        text = self._stt.next_transcript()
        if text:
            data = stt.SpeechData(language="en", text=text, confidence=1.0)
            self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=request_id, alternatives=[data]))
        usage = stt.RecognitionUsage(audio_duration=voiced_seconds)
        self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.RECOGNITION_USAGE, request_id=request_id, recognition_usage=usage))
