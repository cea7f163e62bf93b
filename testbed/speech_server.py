"""A local, offline stand-in for OpenAI's speech endpoints, for the test bed.

  POST /v1/audio/speech           text -> speech with espeak-ng (Debian)
  POST /v1/audio/transcriptions   speech -> text with pocketsphinx (PyPI, bundled US English model)

It speaks the same wire format as the OpenAI API, so livekit-plugins-openai's TTS and STT run
unmodified against it (`base_url=http://127.0.0.1:PORT/v1`):

* speech: `response_format` "pcm" (24 kHz 16-bit mono) or "wav" is honoured; any other format is
  answered as WAV with `Content-Type: audio/wav`, which the plugin decodes by its content type.
  With `stream_format: "sse"` and pcm/wav, audio arrives as `speech.audio.delta` events followed
  by `speech.audio.done`; otherwise the body is the audio itself. Either way the text is spoken
  sentence by sentence, so the first audio leaves before the whole text is synthesized.
* transcriptions: multipart `file` (WAV of any rate/channels), answers `json` ({"text"}),
  `verbose_json` (adds language and duration) or `text`.

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
import wave

import numpy as np
from aiohttp import web
from pocketsphinx import Decoder

OUTPUT_RATE = 24_000  # what OpenAI's speech endpoint returns for pcm
RECOGNIZER_RATE = 16_000  # what pocketsphinx's en-us acoustic model expects
ESPEAK_WORDS_PER_MINUTE = 130  # at speed 1.0; slower than espeak's default, pocketsphinx hears it better
SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")

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
