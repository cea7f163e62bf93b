"""Cloud providers stood in at HTTP level, answering after scripted latencies and costing next to
no CPU: the worker's own CPU can then be measured alone (bench/density.py).

  POST /v1/chat/completions      OpenAI/Groq-compatible, streamed: a scripted answer per model,
                                 its first token `ttft` seconds after the request, then tokens at
                                 `tokens_per_second`; usage in the last chunk
  POST /v1/audio/transcriptions  a fixed transcript, `stt` seconds after the upload
  GET  /v1/listen (WebSocket)    Deepgram's live API: the fixed transcript as each stretch of
                                 the caller's speech ends (an energy threshold finds it), once
                                 `stt` seconds of silence, and at least MIN_ENDPOINTING, follow it
  POST /v1/audio/speech          pre-rendered speech (espeak-ng, once at start), `tts_ttfb`
                                 seconds after the request, as long as the text takes to say

Waiting is `asyncio.sleep`: nothing is computed per request but a few string and byte copies (and,
for a live stream, one mean square per 50 ms of audio).
Token counts are estimates (four characters a token for the prompt, one word a token for the
answer); they feed the worker's usage metrics the way a provider's `usage` does.

Run: python tests/integration/harness/scripted_providers.py --port 8099 [--model NAME=TTFT ...]
(no imports from the harness package: it runs by path). In tests: the `scripted_providers` fixture.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import struct
import subprocess
import time
import uuid
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

OUTPUT_RATE = 24_000  # what OpenAI's speech endpoint returns for pcm
CHARACTERS_PER_SECOND = 14.0  # a speaking pace: how long the speech for a text lasts
CHUNK_SECONDS = 0.1  # audio goes out in chunks of this length, all at once (faster than real time)
# What the stand-in says: the filler for the small model, the answer for any other (a spoken
# sentence of about five seconds).
FILLER = "Sure, let me check that for you."
ANSWER = "From what I know, it should be mild and mostly sunny there today."
TRANSCRIPT = "What is the weather like in Paris today?"
VOICE_TEXT = ("The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun, "
              "and the birds sing in the tall green trees beside the quiet river. ") * 3

# The live stream's speech finder: 16-bit audio whose RMS is above SPEECH_RMS is speech, and a
# stretch of it ends after MIN_ENDPOINTING seconds below (the pauses between a question's words are
# shorter; a threshold cannot tell them from its end the way Deepgram's model does).
SPEECH_RMS = 300.0
MIN_ENDPOINTING = 0.3

log = logging.getLogger("scripted_providers")


@dataclass(frozen=True)
class Script:
    """Latencies in seconds and what is said. `ttft` maps a model name to its time to first
    token; a model not listed uses `default_ttft`; models in `fast_models` answer FILLER."""

    ttft: dict[str, float] = field(default_factory=dict)
    default_ttft: float = 0.2
    fast_models: frozenset[str] = frozenset()
    tokens_per_second: float = 250.0
    stt: float = 0.1
    tts_ttfb: float = 0.25
    transcript: str = TRANSCRIPT


def render_voice(text: str = VOICE_TEXT) -> bytes:
    """espeak-ng speech as 16-bit mono PCM at OUTPUT_RATE (nearest-sample resampling: it is only
    heard as "agent audio" by the caller), rendered once at start."""
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", "en-us", text], check=True, capture_output=True).stdout
    rate = struct.unpack_from("<I", wav, 24)[0]
    start = wav.find(b"data") + 8
    samples = memoryview(wav[start:start + (len(wav) - start) // 2 * 2]).cast("h")
    step = rate / OUTPUT_RATE
    out = [samples[min(int(i * step), len(samples) - 1)] for i in range(int(len(samples) / step))]
    return struct.pack(f"<{len(out)}h", *out)


def wav_header(rate: int, data_bytes: int = 0xFFFFFFFF - 36) -> bytes:
    """A 16-bit mono WAV header; the default size marks a stream of unknown length."""
    return (b"RIFF" + struct.pack("<I", data_bytes + 36) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", data_bytes))


class LiveStream:
    """One Deepgram live stream: linear16 mono audio in, Deepgram's messages out (SpeechStarted when
    asked for, a final `Results` with `speech_final` at the end of each stretch of speech, the
    pending one on `Finalize`, `Metadata` on `CloseStream`). No interim results."""

    def __init__(self, script: Script, *, sample_rate: int, endpointing: float, vad_events: bool) -> None:
        self.request_id = str(uuid.uuid4())
        self._script, self._rate, self._vad_events = script, sample_rate, vad_events
        self._endpointing = max(endpointing, script.stt, MIN_ENDPOINTING)
        self._position = 0.0  # seconds of audio received
        self._speech: tuple[float, float] | None = None  # the stretch of speech under way: start, end

    def feed(self, audio: bytes) -> list[dict]:
        samples = np.frombuffer(audio[:len(audio) // 2 * 2], dtype="<i2").astype(np.float32)
        start, self._position = self._position, self._position + len(samples) / self._rate
        speech = samples.size > 0 and float(np.sqrt(np.mean(samples * samples))) > SPEECH_RMS
        if speech:
            began = self._speech is None
            self._speech = (start if began else self._speech[0], self._position)  # type: ignore[index]
            return [{"type": "SpeechStarted", "channel": [0], "timestamp": start}] if began and self._vad_events else []
        if self._speech is not None and self._position - self._speech[1] >= self._endpointing:
            return [self._final(speech_final=True)]
        return []

    def finalize(self, *, closing: bool = False) -> list[dict]:
        messages = [self._final(speech_final=False, from_finalize=True)] if self._speech is not None else []
        if closing:
            messages.append({"type": "Metadata", "request_id": self.request_id, "duration": self._position,
                             "channels": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return messages

    def _final(self, *, speech_final: bool, from_finalize: bool = False) -> dict:
        (start, end), self._speech = self._speech, None  # type: ignore[misc]
        words = self._script.transcript.split()
        step = (end - start) / len(words)
        timed = [{"word": word.strip("?,.!").lower(), "punctuated_word": word, "start": start + i * step,
                  "end": start + (i + 1) * step, "confidence": 0.99} for i, word in enumerate(words)]
        return {
            "type": "Results", "channel_index": [0, 1], "start": start, "duration": end - start,
            "is_final": True, "speech_final": speech_final, "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": self._script.transcript, "confidence": 0.99, "words": timed}]},
            "metadata": {"request_id": self.request_id, "model_info": {"name": "scripted"}},
        }


def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def create_app(script: Script, voice: bytes) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    counts = {"chat": 0, "transcriptions": 0, "speech": 0, "listen": 0}
    app["counts"] = counts

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        counts["chat"] += 1
        text = FILLER if model in script.fast_models else ANSWER
        prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
        words = text.split(" ")
        usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": len(words),
                 "total_tokens": max(1, prompt_chars // 4) + len(words)}
        created, ident = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:12]}"

        def chunk(delta: dict, finish: str | None = None, with_usage: bool = False) -> bytes:
            payload = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if with_usage:
                payload["usage"] = usage
            return _sse(payload)

        if not body.get("stream"):
            await asyncio.sleep(script.ttft.get(model, script.default_ttft))
            return web.json_response({"id": ident, "object": "chat.completion", "created": created, "model": model,
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": text}}],
                                      "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await asyncio.sleep(script.ttft.get(model, script.default_ttft))
            await response.write(chunk({"role": "assistant", "content": ""}))
            for index, word in enumerate(words):
                if index:
                    await asyncio.sleep(1 / script.tokens_per_second)
                await response.write(chunk({"content": word if index == 0 else " " + word}))
            await response.write(chunk({}, "stop", with_usage=True))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the worker gave up on this answer (an interruption, a hang-up)
        return response

    async def transcriptions(request: web.Request) -> web.Response:
        form = await request.post()
        counts["transcriptions"] += 1
        await asyncio.sleep(script.stt)
        fmt = form.get("response_format") or "json"
        if fmt == "text":
            return web.Response(text=script.transcript)
        return web.json_response({"text": script.transcript, "language": "english", "duration": 0.0, "segments": []}
                                 if fmt == "verbose_json" else {"text": script.transcript})

    async def listen(request: web.Request) -> web.StreamResponse:
        query = request.query
        if query.get("encoding", "linear16") != "linear16" or query.get("channels", "1") != "1":
            return web.json_response({"err_code": "Bad Request", "err_msg": "only linear16 mono is scripted"}, status=400)
        endpointing = query.get("endpointing", "10")
        stream = LiveStream(script, sample_rate=int(query.get("sample_rate", "16000")),
                            endpointing=0.0 if endpointing == "false" else int(endpointing) / 1000,
                            vad_events=query.get("vad_events", "false").lower() == "true")
        counts["listen"] += 1
        socket = web.WebSocketResponse()
        socket.headers["dg-request-id"] = stream.request_id
        await socket.prepare(request)
        async for message in socket:
            if message.type == web.WSMsgType.BINARY:
                replies = stream.feed(message.data)
            elif message.type == web.WSMsgType.TEXT:
                kind = json.loads(message.data).get("type")
                if kind not in ("Finalize", "CloseStream"):
                    continue  # KeepAlive
                replies = stream.finalize(closing=kind == "CloseStream")
            else:
                break
            for reply in replies:
                await socket.send_json(reply)
            if replies and replies[-1]["type"] == "Metadata":
                await socket.close()
        return socket

    async def speech(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = str(body.get("input", "")).strip()
        if not text:
            return web.json_response({"error": {"message": "'input' must be non-empty text"}}, status=400)
        counts["speech"] += 1
        fmt = body.get("response_format") or "mp3"
        sse = body.get("stream_format") == "sse" and fmt in ("pcm", "wav")
        content_type = "text/event-stream" if sse else ("audio/pcm" if fmt == "pcm" else "audio/wav")
        samples = min(len(voice) // 2, int(len(text) / CHARACTERS_PER_SECOND * OUTPUT_RATE))
        audio = voice[:samples * 2]
        response = web.StreamResponse(headers={"Content-Type": content_type, "x-request-id": "scripted-speech"})
        await response.prepare(request)
        await asyncio.sleep(script.tts_ttfb)

        async def send(data: bytes) -> None:
            if sse:
                await response.write(_sse({"type": "speech.audio.delta", "delta": base64.b64encode(data).decode()}))
            else:
                await response.write(data)

        try:
            if fmt != "pcm":
                await send(wav_header(OUTPUT_RATE))
            step = int(CHUNK_SECONDS * OUTPUT_RATE) * 2
            for offset in range(0, len(audio), step):
                await send(audio[offset:offset + step])
            if sse:
                await response.write(_sse({"type": "speech.audio.done", "usage": {"input_tokens": 0, "output_tokens": 0}}))
            await response.write_eof()
        except ConnectionResetError:
            pass
        return response

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **counts})

    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/openai/v1/chat/completions", chat)  # Groq's path, for a base URL without /openai
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/v1/listen", listen)
    return app


FAST_MODEL, MAIN_MODEL = "scripted-fast", "scripted-main"


@pytest.fixture
def scripted_providers(spawn) -> Iterator[Callable[..., str]]:
    """Factory: `scripted_providers(*options) -> base URL (.../v1)` of a stand-in started with
    these command-line options (default: FAST_MODEL answers fillers, MAIN_MODEL answers); stopped
    after the test (through `spawn`)."""
    from .processes import free_port  # here: the module also runs by path, outside the package

    started = 0

    def start(*options: str) -> str:
        nonlocal started
        started += 1
        port = free_port()
        argv = [sys.executable, str(Path(__file__).resolve()), f"--port={port}", f"--fast-model={FAST_MODEL}",
                *options]
        spawn(f"scripted-providers-{started}", argv, ready_url=f"http://127.0.0.1:{port}/health")
        return f"http://127.0.0.1:{port}/v1"

    yield start


def _model_latency(text: str) -> tuple[str, float]:
    name, sep, seconds = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL=SECONDS (e.g. llama-3.3-70b-versatile=0.2)")
    return name, float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description="Scripted OpenAI/Groq-compatible providers (no CPU per request).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", type=_model_latency, action="append", default=[],
                        help="MODEL=TTFT seconds (repeatable)")
    parser.add_argument("--fast-model", action="append", default=[], help="a model that answers with a filler")
    parser.add_argument("--default-ttft", type=float, default=0.2)
    parser.add_argument("--tokens-per-second", type=float, default=250.0)
    parser.add_argument("--stt", type=float, default=0.1, help="seconds to a transcript")
    parser.add_argument("--tts-ttfb", type=float, default=0.25, help="seconds to the first audio byte")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    script = Script(ttft=dict(args.model), default_ttft=args.default_ttft, fast_models=frozenset(args.fast_model),
                    tokens_per_second=args.tokens_per_second, stt=args.stt, tts_ttfb=args.tts_ttfb)
    web.run_app(create_app(script, render_voice()), host=args.host, port=args.port, access_log=None,
                print=lambda line: log.info(line))


if __name__ == "__main__":
    main()
