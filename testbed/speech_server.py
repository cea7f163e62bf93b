"""A local, offline stand-in for OpenAI's and Deepgram's speech endpoints, for the test bed.

  POST /v1/audio/speech           text -> speech with espeak-ng (Debian)
  POST /v1/audio/transcriptions   speech -> text with pocketsphinx (PyPI, bundled US English model)
  GET  /v1/listen (WebSocket)     streaming speech -> text, Deepgram's live API, with pocketsphinx

It speaks the same wire formats as those APIs, so livekit-plugins-openai's TTS and STT run
unmodified against it (`base_url=http://127.0.0.1:PORT/v1`), and so does livekit-plugins-deepgram's
streaming STT (`base_url=http://127.0.0.1:PORT/v1/listen`):

* speech: `response_format` "pcm" (24 kHz 16-bit mono) or "wav" is honoured; any other format is
  answered as WAV with `Content-Type: audio/wav`, which the plugin decodes by its content type.
  With `stream_format: "sse"` and pcm/wav, audio arrives as `speech.audio.delta` events followed
  by `speech.audio.done`; otherwise the body is the audio itself. Either way the text is spoken
  sentence by sentence, so the first audio leaves before the whole text is synthesized.
* transcriptions: multipart `file` (WAV of any rate/channels), answers `json` ({"text"}),
  `verbose_json` (adds language and duration) or `text`.
* listen: 16 kHz linear16 mono in binary messages. pocketsphinx decodes while the caller speaks, so
  a segment's final transcript leaves as soon as its end is heard, as a streaming recognizer's
  does. WebRTC's VAD (pocketsphinx's) finds speech; a segment ends after `endpointing` ms of
  non-speech, but never under MIN_ENDPOINTING (pocketsphinx, unlike Deepgram's model, cannot tell
  the gap before a stop consonant from the end of speech), and starts one only after MIN_SPEECH of
  speech in a row. Sends `SpeechStarted` (vad_events),
  interim `Results` (interim_results), a final `Results` with `speech_final` at each endpoint (with
  `from_finalize` after a `Finalize` message) and `Metadata` after `CloseStream`; `KeepAlive` is
  accepted. Word timings come from the decoder; confidence is the hypothesis' posterior.

Run: python testbed/speech_server.py --host 127.0.0.1 --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import re
import struct
import time
import uuid
import wave
from collections import deque

import numpy as np
from aiohttp import web
from pocketsphinx import Decoder, Vad

OUTPUT_RATE = 24_000  # what OpenAI's speech endpoint returns for pcm
RECOGNIZER_RATE = 16_000  # what pocketsphinx's en-us acoustic model expects
ESPEAK_WORDS_PER_MINUTE = 130  # at speed 1.0; slower than espeak's default, pocketsphinx hears it better
SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
MIN_ENDPOINTING = 0.3  # seconds of non-speech that end a streamed segment, whatever the client asks
MIN_SPEECH = 0.09  # seconds of speech in a row that start a segment (a click or a breath does not)
PREROLL = 0.3  # seconds of audio before a segment's start that go to the decoder with it
INTERIM_EVERY = 0.3  # seconds of speech between interim results
FRAMES_PER_SECOND = 100  # pocketsphinx's feature frame rate (word timings are in frames)

log = logging.getLogger("speech_server")


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resamples mono float samples, removing what the target rate cannot carry first."""
    if rate == target_rate or len(samples) == 0:
        return samples
    if target_rate < rate:
        spectrum = np.fft.rfft(samples)
        spectrum[np.fft.rfftfreq(len(samples), 1 / rate) > 0.48 * target_rate] = 0
        samples = np.fft.irfft(spectrum, len(samples))
    duration = len(samples) / rate
    target_times = np.arange(0, duration, 1 / target_rate)
    return np.interp(target_times, np.arange(len(samples)) / rate, samples)


def to_int16(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def wav_header(rate: int, data_bytes: int = 0xFFFFFFFF - 36) -> bytes:
    """A 16-bit mono WAV header; the default size marks a stream of unknown length."""
    return (
        b"RIFF" + struct.pack("<I", data_bytes + 36) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float samples and their rate from a 16-bit PCM WAV file."""
    with wave.open(io.BytesIO(data)) as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit PCM WAV, got {8 * wav.getsampwidth()}-bit")
        rate, channels = wav.getframerate(), wav.getnchannels()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    return frames.reshape(-1, channels).mean(axis=1), rate


async def espeak(text: str, speed: float) -> np.ndarray:
    """Speaks one piece of text; returns float samples at OUTPUT_RATE."""
    words_per_minute = str(max(80, min(450, round(ESPEAK_WORDS_PER_MINUTE * speed))))
    process = await asyncio.create_subprocess_exec(
        "espeak-ng", "--stdout", "-v", "en-us", "-s", words_per_minute, text,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"espeak-ng failed ({process.returncode}): {err.decode().strip()}")
    # espeak-ng writes a streaming WAV header (its sizes are placeholders): read past "data" by hand.
    rate = struct.unpack_from("<I", out, 24)[0]
    start = out.find(b"data") + 8
    usable = (len(out) - start) // 2 * 2
    samples = np.frombuffer(out[start:start + usable], dtype="<i2").astype(np.float64)
    return resample(samples, rate, OUTPUT_RATE)


def sentences(text: str) -> list[str]:
    return [part for part in SENTENCE_END.split(text.strip()) if part.strip()]


async def speech(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    text = str(body.get("input", "")).strip()
    if not text:
        return web.json_response({"error": {"message": "'input' must be non-empty text"}}, status=400)
    speed = float(body.get("speed") or 1.0)
    fmt = body.get("response_format") or "mp3"
    pcm = fmt == "pcm"
    sse = body.get("stream_format") == "sse" and fmt in ("pcm", "wav")
    content_type = "text/event-stream" if sse else ("audio/pcm" if pcm else "audio/wav")
    response = web.StreamResponse(headers={"Content-Type": content_type, "x-request-id": "local-speech"})
    await response.prepare(request)

    async def send(audio: bytes) -> None:
        if sse:
            event = {"type": "speech.audio.delta", "delta": base64.b64encode(audio).decode()}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        else:
            await response.write(audio)

    if not pcm:
        await send(wav_header(OUTPUT_RATE))
    for sentence in sentences(text):
        await send(to_int16(await espeak(sentence, speed)))
    if sse:
        done = {"type": "speech.audio.done", "usage": {"input_tokens": 0, "output_tokens": 0}}
        await response.write(f"data: {json.dumps(done)}\n\n".encode())
    await response.write_eof()
    log.info("spoke %d characters as %s%s", len(text), fmt, " (sse)" if sse else "")
    return response


class Recognizer:
    """One pocketsphinx decoder, used by one request at a time off the event loop."""

    def __init__(self) -> None:
        self._decoder = Decoder(samprate=RECOGNIZER_RATE, logfn="/dev/null")
        self._lock = asyncio.Lock()

    def _decode(self, audio: bytes) -> str:
        self._decoder.start_utt()
        self._decoder.process_raw(audio, full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis else ""

    async def transcribe(self, samples: np.ndarray, rate: int) -> str:
        audio = to_int16(resample(samples, rate, RECOGNIZER_RATE))
        async with self._lock:
            return await asyncio.to_thread(self._decode, audio)


class LiveTranscriber:
    """One streamed conversation: audio in, Deepgram live messages out. Synchronous (it decodes as
    audio arrives); the WebSocket handler runs it off the event loop."""

    def __init__(self, *, endpointing: float, interim_results: bool, vad_events: bool) -> None:
        self.request_id = str(uuid.uuid4())
        self._decoder = Decoder(samprate=RECOGNIZER_RATE, logfn="/dev/null")
        self._vad = Vad(Vad.LOOSE, sample_rate=RECOGNIZER_RATE)
        self._endpointing = max(endpointing, MIN_ENDPOINTING)
        self._interim_results, self._vad_events = interim_results, vad_events
        self._frame_seconds = self._vad.frame_length
        self._pending = b""  # less than one VAD frame
        self._preroll: deque[bytes] = deque(maxlen=max(1, round(PREROLL / self._frame_seconds)))
        self._position = 0.0  # seconds of audio received
        self._segment: float | None = None  # where the segment being decoded starts, if any
        self._voiced = 0  # speech frames in a row before a segment starts
        self._silence = 0.0  # trailing non-speech in that segment
        self._last_interim = ("", 0.0)  # its text, and where in the audio it was sent

    def feed(self, audio: bytes) -> list[dict]:
        """Takes linear16 audio; returns the messages it causes, in order."""
        messages: list[dict] = []
        data, size = self._pending + audio, self._vad.frame_bytes
        whole = len(data) // size * size
        self._pending = data[whole:]
        for start in range(0, whole, size):
            messages.extend(self._frame(data[start:start + size]))
        return messages

    def finalize(self, *, closing: bool = False) -> list[dict]:
        """A `Finalize` (or `CloseStream`): what is being decoded becomes final now."""
        messages = [self._final(speech_final=False, from_finalize=True)] if self._segment is not None else []
        if closing:
            messages.append({"type": "Metadata", "request_id": self.request_id, "duration": self._position,
                             "channels": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return messages

    def _frame(self, frame: bytes) -> list[dict]:
        speech = self._vad.is_speech(frame)
        self._position += self._frame_seconds
        if self._segment is None:
            self._preroll.append(frame)
            self._voiced = self._voiced + 1 if speech else 0
            if self._voiced * self._frame_seconds < MIN_SPEECH:
                return []
            self._segment = self._position - len(self._preroll) * self._frame_seconds
            self._silence, self._last_interim = 0.0, ("", self._position)
            self._decoder.start_utt()
            self._decoder.process_raw(b"".join(self._preroll))
            self._preroll.clear()
            return [{"type": "SpeechStarted", "channel": [0], "timestamp": self._segment}] if self._vad_events else []
        self._decoder.process_raw(frame)
        self._silence = 0.0 if speech else self._silence + self._frame_seconds
        if self._silence >= self._endpointing:
            return [self._final(speech_final=True)]
        text, sent_at = self._last_interim
        if self._interim_results and self._position - sent_at >= INTERIM_EVERY:
            hypothesis = self._decoder.hyp()
            current = hypothesis.hypstr if hypothesis else ""
            self._last_interim = (current, self._position)
            if current and current != text:
                return [self._results(current, [], 0.0, is_final=False, speech_final=False)]
        return []

    def _final(self, *, speech_final: bool, from_finalize: bool = False) -> dict:
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        start = self._segment or 0.0
        words = [
            {"word": seg.word.split("(")[0], "punctuated_word": seg.word.split("(")[0],
             "start": start + seg.start_frame / FRAMES_PER_SECOND, "end": start + (seg.end_frame + 1) / FRAMES_PER_SECOND,
             "confidence": min(1.0, self._decoder.logmath.exp(seg.prob))}
            for seg in self._decoder.seg()
            if not seg.word.startswith(("<", "["))  # silence, sentence marks and noise are not words
        ]
        confidence = min(1.0, self._decoder.logmath.exp(hypothesis.prob)) if hypothesis else 0.0
        self._segment = None
        text = " ".join(word["word"] for word in words)
        return self._results(text, words, confidence, is_final=True, speech_final=speech_final,
                             from_finalize=from_finalize, start=start)

    def _results(self, text: str, words: list[dict], confidence: float, *, is_final: bool, speech_final: bool,
                 from_finalize: bool = False, start: float | None = None) -> dict:
        start = self._segment if start is None else start
        return {
            "type": "Results", "channel_index": [0, 1], "start": start, "duration": self._position - start,
            "is_final": is_final, "speech_final": speech_final, "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": confidence, "words": words}]},
            "metadata": {"request_id": self.request_id, "model_info": {"name": "pocketsphinx-en-us"}},
        }


def _flag(request: web.Request, name: str, default: bool) -> bool:
    return request.query.get(name, str(default)).lower() == "true"


async def listen(request: web.Request) -> web.StreamResponse:
    """Deepgram's live transcription over a WebSocket (see the module's docstring)."""
    query = request.query
    problems = [f"{name}={query[name]!r} is not supported (use {allowed})"
                for name, allowed in (("encoding", "linear16"), ("sample_rate", str(RECOGNIZER_RATE)), ("channels", "1"))
                if query.get(name, allowed) != allowed]
    endpointing = query.get("endpointing", "10")
    if not (endpointing == "false" or endpointing.isdigit()):
        problems.append(f"endpointing={endpointing!r} must be milliseconds or false")
    if problems:
        return web.json_response({"err_code": "Bad Request", "err_msg": "; ".join(problems)}, status=400)
    transcriber = await asyncio.to_thread(
        LiveTranscriber, endpointing=0.0 if endpointing == "false" else int(endpointing) / 1000,
        interim_results=_flag(request, "interim_results", False), vad_events=_flag(request, "vad_events", False))
    socket = web.WebSocketResponse()
    socket.headers["dg-request-id"] = transcriber.request_id
    await socket.prepare(request)
    heard: list[str] = []
    async for message in socket:
        if message.type == web.WSMsgType.BINARY:
            replies = await asyncio.to_thread(transcriber.feed, message.data)
        elif message.type == web.WSMsgType.TEXT:
            kind = json.loads(message.data).get("type")
            if kind not in ("Finalize", "CloseStream"):
                continue  # KeepAlive
            replies = await asyncio.to_thread(transcriber.finalize, closing=kind == "CloseStream")
        else:
            break
        for reply in replies:
            await socket.send_json(reply)
            if reply.get("is_final") and reply["channel"]["alternatives"][0]["transcript"]:
                heard.append(reply["channel"]["alternatives"][0]["transcript"])
        if replies and replies[-1]["type"] == "Metadata":
            await socket.close()
    log.info("streamed %s: heard %r", transcriber.request_id, heard)
    return socket


async def transcriptions(request: web.Request) -> web.Response:
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return web.json_response({"error": {"message": "multipart field 'file' (a WAV file) is required"}}, status=400)
    try:
        samples, rate = read_wav(upload.file.read())
    except (wave.Error, ValueError, EOFError) as error:
        return web.json_response({"error": {"message": f"unreadable WAV upload: {error}"}}, status=400)
    text = await request.app["recognizer"].transcribe(samples, rate)
    log.info("heard %.2f s of audio: %r", len(samples) / rate, text)
    fmt = form.get("response_format") or "json"
    if fmt == "text":
        return web.Response(text=text)
    result: dict = {"text": text}
    if fmt == "verbose_json":
        result.update(language="english", duration=len(samples) / rate, segments=[])
    return web.json_response(result)


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def models(_: web.Request) -> web.Response:
    names = ("tts-1", "gpt-4o-mini-tts", "whisper-1", "gpt-4o-mini-transcribe")
    return web.json_response({"object": "list", "data": [{"id": n, "object": "model"} for n in names]})


def create_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["recognizer"] = Recognizer()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_get("/v1/listen", listen)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Local OpenAI-compatible speech endpoints (espeak-ng, pocketsphinx).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    web.run_app(create_app(), host=args.host, port=args.port, print=lambda line: log.info(line))


if __name__ == "__main__":
    main()
