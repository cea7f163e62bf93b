"""A scripted caller on the LiveKit rtc client: it joins a room, asks spoken questions and
records, per turn, what it heard and when.

The caller publishes a microphone track that carries a microphone's noise floor in real time and,
when asked, an espeak-ng rendering of a question over it (its leading and trailing silence
trimmed, so the end of the WAV is the end of speech). Why the noise floor and the voice: livekit's
turn detector (v1-mini) judges the audio, not the transcript, and gives espeak-ng's default voice
over digital silence 0.13-0.35 for a finished question, below its English threshold of 0.36, so
every turn took the max_delay branch. With en-us+f3 over a -50 dBFS floor (as a real microphone
has) finished questions score 0.53-0.78 (see docs/worker.md, "Turn handling"). It subscribes to the agent's audio track and to the agent's
`lk.transcription` text streams: livekit's agents send one text stream per agent speech
(segment), in the order they are played.

Per turn (times are `time.monotonic()` seconds in this process):
  speech_end    when the last voiced sample left the caller's audio source
  first_audio   the first audible agent frame received after it
  filler_start  when the filler (pre-response) began to be heard
  answer_start  when the answer began to be heard
How agent speeches are told apart: when a filler starts to play, the worker sets its text as
the agent's participant attribute `agent_worker.filler` (FILLER_ATTRIBUTE). A speech whose
transcript is (a prefix of, if it was cut) a filler announced during the turn is the filler;
the other speeches are the answer. A turn is over once an answer speech has been received in
full and the agent has then been listening, silent, for TURN_SETTLE seconds.
When a speech began to be heard: for the first speech of a turn, the first audible frame after
`speech_end`; for a later one, the start of the burst of audio (after SPEECH_GAP of silence) under
way when its text stream opened, or the next one. livekit releases a speech's transcript as its
audio starts playing out, but the transcript reaches the caller later than the audio (measured
70-160 ms for answers, about 450 ms for fillers), so "the first audible frame after the transcript"
would put a later speech's start 0.1 s late; a burst that began more than TRANSCRIPT_LAG before the
transcript, or with the speech before it, is not its start.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
import subprocess
import tempfile
import time
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import api, rtc

from agent_worker.agent import FILLER_ATTRIBUTE

logger = logging.getLogger("testbed.caller")

SAMPLE_RATE = 48_000
FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms frames
MIC_QUEUE_MS = 50  # the audio source's buffer: small, so `speech_end` is exact to a few ms
AUDIBLE_PEAK = 600  # int16 peak above which a received frame counts as agent speech
SPEECH_GAP = 0.25  # seconds without an audible frame that separate one burst of agent audio from the next
TRANSCRIPT_LAG = 0.6  # seconds a speech's transcript may reach the caller after its audio did
SPEECH_PEAK = 300  # int16 level that bounds a question's voiced part when trimming espeak's silence
ESPEAK_WORDS_PER_MINUTE = 140
ESPEAK_VOICE = "en-us+f3"
NOISE_FLOOR_RMS = 100.0  # int16 RMS of the microphone's own noise, about -50 dBFS
TOPIC_TRANSCRIPTION = "lk.transcription"
AGENT_STATE = "lk.agent.state"
TRANSCRIBED_TRACK = "lk.transcribed_track_id"
SEGMENT_ID = "lk.segment_id"
QUIET_BEFORE_SPEAKING = 0.8  # seconds of agent silence (state "listening") before the next question
TURN_SETTLE = 1.2  # seconds the agent must stay listening and silent before a turn counts as over


@dataclass
class HeardSpeech:
    """One agent speech (a transcription segment) as the caller received it."""

    segment_id: str
    opened_at: float  # when its text stream's header arrived
    text: str = ""
    closed_at: float | None = None
    heard_at: float | None = None  # when its audio began to be heard
    is_filler: bool = False


@dataclass
class HeardTurn:
    """What the caller heard in one turn; times in time.monotonic() seconds."""

    question: str
    speech_end: float
    first_audio: float | None
    filler_start: float | None
    answer_start: float | None
    filler_text: str
    answer_text: str
    speech_start: float = 0.0
    speeches: list[HeardSpeech] = field(default_factory=list)
    timed_out: bool = False

    def after_speech_ms(self, at: float | None) -> float | None:
        """Milliseconds from the end of the caller's speech to `at`."""
        return None if at is None else round((at - self.speech_end) * 1000, 1)

    @property
    def first_audio_ms(self) -> float | None:
        return self.after_speech_ms(self.first_audio)

    @property
    def filler_ms(self) -> float | None:
        return self.after_speech_ms(self.filler_start)

    @property
    def answer_ms(self) -> float | None:
        return self.after_speech_ms(self.answer_start)


def _words(text: str) -> str:
    """Lower-case words only: transcripts drop markup and may stop early (a cut filler)."""
    return " ".join(re.sub(r"[^\w\s']", " ", re.sub(r"<[^>]*>", " ", text.lower())).split())


def is_filler(transcript: str, announced: list[str]) -> bool:
    heard = _words(transcript)
    return bool(heard) and any(_words(filler).startswith(heard) for filler in announced)


def caller_token(api_key: str, api_secret: str, room: str, identity: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True)
    return api.AccessToken(api_key, api_secret).with_identity(identity).with_grants(grants).to_jwt()


def speak(text: str, words_per_minute: int = ESPEAK_WORDS_PER_MINUTE) -> np.ndarray:
    """`text` spoken by espeak-ng: int16 mono at SAMPLE_RATE, leading/trailing silence removed."""
    with tempfile.TemporaryDirectory(prefix="caller-") as directory:
        path = Path(directory) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", ESPEAK_VOICE, "-s", str(words_per_minute), "-w", str(path), text],
                       check=True, capture_output=True)
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    resampler = rtc.AudioResampler(rate, SAMPLE_RATE, quality=rtc.AudioResamplerQuality.HIGH)
    frames = resampler.push(bytearray(samples.tobytes())) + resampler.flush()
    audio = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames]) if frames else samples[:0]
    voiced = np.flatnonzero(np.abs(audio.astype(np.int32)) > SPEECH_PEAK)
    if len(voiced) == 0:
        raise ValueError(f"espeak-ng produced no audible speech for {text!r}")
    return audio[voiced[0]:voiced[-1] + 1]


class Microphone:
    """The caller's published track: a noise floor in real time, and speech over it when `say()`
    is awaited."""

    def __init__(self) -> None:
        self._noise = np.random.default_rng(0)
        self.source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=MIC_QUEUE_MS)
        self.track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
        self._pending: asyncio.Queue[tuple[np.ndarray, asyncio.Future[tuple[float, float]]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="caller.microphone")

    async def say(self, samples: np.ndarray) -> tuple[float, float]:
        """Plays `samples` next; returns when it has been sent, as (speech_start, speech_end)."""
        done: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        await self._pending.put((samples, done))
        return await done

    async def _run(self) -> None:
        silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)  # the floor is added in _send
        while True:
            if self._pending.empty():
                await self._send(silence)
                continue
            samples, done = self._pending.get_nowait()
            started = time.monotonic() + self.source.queued_duration
            padded = np.concatenate([samples, np.zeros(-len(samples) % FRAME_SAMPLES, dtype=np.int16)])
            for frame in padded.reshape(-1, FRAME_SAMPLES):
                await self._send(frame)
            # The last voiced sample leaves once the source's queue ahead of it has drained.
            ended = time.monotonic() + self.source.queued_duration
            if not done.done():
                done.set_result((started, ended))

    async def _send(self, samples: np.ndarray) -> None:
        noisy = samples + self._noise.normal(0.0, NOISE_FLOOR_RMS, FRAME_SAMPLES)
        frame = np.clip(noisy, -32768, 32767).astype(np.int16)
        await self.source.capture_frame(rtc.AudioFrame(frame.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.source.aclose()


class Ear:
    """The agent's audio and transcripts, timestamped as they arrive."""

    def __init__(self, room: rtc.Room, own_identity: str) -> None:
        self._room = room
        self._own_identity = own_identity
        self.audible: list[float] = []  # arrival time of every audible agent frame
        self.last_frame_at: float | None = None
        self.speeches: list[HeardSpeech] = []
        self.agent_track = asyncio.Event()
        self.own_track_sid: str | None = None
        self.fillers: list[tuple[float, str]] = []  # (arrival, text) of each filler announced
        self._tasks: set[asyncio.Task[None]] = set()
        room.on("track_subscribed", self._on_track)
        room.on("participant_attributes_changed", self._on_attributes)
        room.register_text_stream_handler(TOPIC_TRANSCRIPTION, self._on_text_stream)

    def agent(self) -> rtc.RemoteParticipant | None:
        for participant in self._room.remote_participants.values():
            if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                return participant
        return None

    def agent_state(self) -> str | None:
        agent = self.agent()
        return agent.attributes.get(AGENT_STATE) if agent else None

    def first_audible_after(self, moment: float) -> float | None:
        return next((at for at in self.audible if at >= moment), None)

    def onset(self, opened_at: float, after: float | None) -> float | None:
        """When a speech whose transcript arrived at `opened_at` began to be heard (see the module's
        docstring); `after`: when the speech before it began."""
        first = self.first_audible_after(opened_at)
        if first is None:
            return None
        i = bisect.bisect_left(self.audible, first)
        while i > 0 and self.audible[i] - self.audible[i - 1] < SPEECH_GAP:
            i -= 1
        start = self.audible[i]
        return start if start >= opened_at - TRANSCRIPT_LAG and (after is None or start > after) else first

    def last_audible(self) -> float | None:
        return self.audible[-1] if self.audible else None

    def fillers_since(self, moment: float) -> list[str]:
        return [text for at, text in self.fillers if at >= moment]

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if FILLER_ATTRIBUTE in changed and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            self.fillers.append((time.monotonic(), changed[FILLER_ATTRIBUTE]))

    def _spawn(self, coroutine, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_track(self, track: rtc.Track, _publication: rtc.RemoteTrackPublication,
                  participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            self._spawn(self._listen(track), "caller.ear")

    async def _listen(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        self.agent_track.set()
        try:
            async for event in stream:
                now = time.monotonic()
                self.last_frame_at = now
                samples = np.frombuffer(event.frame.data, dtype=np.int16)
                if samples.size and int(np.abs(samples.astype(np.int32)).max()) > AUDIBLE_PEAK:
                    self.audible.append(now)
        finally:
            await stream.aclose()

    def _on_text_stream(self, reader: rtc.TextStreamReader, participant_identity: str) -> None:
        attributes = reader.info.attributes or {}
        if participant_identity == self._own_identity or attributes.get(TRANSCRIBED_TRACK) == self.own_track_sid:
            return  # the agent's transcript of what the caller said
        speech = HeardSpeech(attributes.get(SEGMENT_ID, reader.info.stream_id), time.monotonic())
        self.speeches.append(speech)
        self._spawn(self._read(reader, speech), "caller.transcript")

    async def _read(self, reader: rtc.TextStreamReader, speech: HeardSpeech) -> None:
        async for chunk in reader:
            speech.text += chunk
        speech.closed_at = time.monotonic()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _until(check, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def _quiet_for(ear: Ear, seconds: float, since: float) -> bool:
    """The agent is listening and nothing audible arrived in the last `seconds` (after `since`)."""
    now = time.monotonic()
    last = max(ear.last_audible() or since, since)
    return ear.agent_state() == "listening" and now - last >= seconds


async def _ask(ear: Ear, microphone: Microphone, question: str, samples: np.ndarray,
               turn_timeout: float) -> HeardTurn:
    already = len(ear.speeches)
    speech_start, speech_end = await microphone.say(samples)
    deadline = time.monotonic() + turn_timeout

    def speeches() -> list[HeardSpeech]:
        fillers = ear.fillers_since(speech_start)
        heard = [s for s in ear.speeches[already:] if s.opened_at >= speech_start]
        for speech in heard:
            speech.is_filler = is_filler(speech.text, fillers)
        return heard

    def over() -> bool:
        heard = speeches()
        answered = any(not s.is_filler and s.closed_at is not None for s in heard)
        return answered and all(s.closed_at is not None for s in heard) and _quiet_for(ear, TURN_SETTLE, speech_end)

    timed_out = False
    while not over():
        if time.monotonic() > deadline:
            timed_out = True
            break
        await asyncio.sleep(0.05)
    heard = speeches()
    for index, speech in enumerate(heard):
        speech.heard_at = (ear.first_audible_after(speech_end) if index == 0
                           else ear.onset(speech.opened_at, after=heard[index - 1].heard_at))
    filler = next((s for s in heard if s.is_filler), None)
    answer = [s for s in heard if not s.is_filler]
    return HeardTurn(
        question=question,
        speech_end=speech_end,
        first_audio=ear.first_audible_after(speech_end),
        filler_start=filler.heard_at if filler else None,
        answer_start=answer[0].heard_at if answer else None,
        filler_text=filler.text.strip() if filler else "",
        answer_text=" ".join(s.text.strip() for s in answer).strip(),
        speech_start=speech_start,
        speeches=heard,
        timed_out=timed_out,
    )


class Conversation:
    """A caller in a room with the agent: `await conversation.ask(question)` speaks once the agent
    is quiet and returns what was heard (see `call`)."""

    def __init__(self, ear: Ear, microphone: Microphone) -> None:
        self.ear, self.microphone = ear, microphone

    async def ask(self, question: str, turn_timeout: float = 30.0, samples: np.ndarray | None = None) -> HeardTurn:
        if samples is None:
            samples = await asyncio.to_thread(speak, question)
        await _until(lambda: _quiet_for(self.ear, QUIET_BEFORE_SPEAKING, 0.0), turn_timeout,
                     "the agent to be quiet before the next question")
        return await _ask(self.ear, self.microphone, question, samples, turn_timeout)


@contextlib.asynccontextmanager
async def joined(livekit_url: str, api_key: str, api_secret: str, room: str, *, join_timeout: float = 30.0,
                 identity: str | None = None) -> AsyncIterator[Conversation]:
    """Joins `room` with a microphone, waits until an agent has joined, published audio and is
    listening, and leaves (ending the call) on exit."""
    identity = identity or f"caller-{uuid.uuid4().hex[:6]}"
    lk_room = rtc.Room()
    ear = Ear(lk_room, identity)
    microphone = Microphone()
    try:
        await lk_room.connect(livekit_url, caller_token(api_key, api_secret, room, identity))
        publication = await lk_room.local_participant.publish_track(
            microphone.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        ear.own_track_sid = publication.sid
        microphone.start()
        await _until(lambda: ear.agent_track.is_set() and ear.agent_state() == "listening",
                     join_timeout, "the agent to join the room, publish audio and listen")
        yield Conversation(ear, microphone)
    finally:
        await microphone.aclose()
        await ear.aclose()
        await lk_room.disconnect()


async def call(livekit_url: str, api_key: str, api_secret: str, room: str, questions: list[str], *,
               turn_timeout: float = 30.0, join_timeout: float = 30.0, identity: str | None = None) -> list[HeardTurn]:
    """Joins `room`, waits for the agent, asks each question aloud once the agent is quiet, and
    returns what was heard per turn. A turn ends when the agent has been listening and silent for
    TURN_SETTLE seconds after speaking, or after `turn_timeout` seconds (then `timed_out`)."""
    spoken = [await asyncio.to_thread(speak, question) for question in questions]
    async with joined(livekit_url, api_key, api_secret, room, join_timeout=join_timeout,
                      identity=identity) as conversation:
        return [await conversation.ask(question, turn_timeout, samples) for question, samples in zip(questions, spoken)]
