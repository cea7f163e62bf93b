"""The local speech endpoints speak and hear English, over OpenAI's wire format, and
livekit-plugins-openai's TTS and STT work against them unmodified."""

from __future__ import annotations

import io
import wave

import pytest
from livekit import rtc
from livekit.plugins import openai as lk_openai
from openai import AsyncOpenAI

pytestmark = pytest.mark.testbed

SENTENCE = "What is the weather like today?"
EXPECTED_WORDS = {"weather", "today"}


def client(speech_server) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=speech_server.base_url, api_key="local")


async def test_spoken_text_comes_back_as_a_transcript_with_its_words(speech_server):
    speech = await client(speech_server).audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="wav")
    audio = speech.read()
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24_000, 1, 2)

    transcript = await client(speech_server).audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", audio, "audio/wav"))

    assert EXPECTED_WORDS <= set(transcript.text.lower().split()), transcript.text


async def test_sse_speech_arrives_as_audio_delta_events(speech_server):
    async with client(speech_server).audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="ash", input="First sentence. Second sentence.",
        response_format="pcm", extra_body={"stream_format": "sse"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line async for line in response.iter_lines() if line.startswith("data: ")]

    deltas = [e for e in events if '"speech.audio.delta"' in e]
    assert len(deltas) == 2  # one per sentence: the first is sent before the second is synthesized
    assert '"speech.audio.done"' in events[-1]


@pytest.mark.parametrize("model", ["tts-1", "gpt-4o-mini-tts"])
async def test_livekit_openai_plugins_round_trip_through_the_server(speech_server, model):
    tts = lk_openai.TTS(model=model, voice="alloy", base_url=speech_server.base_url, api_key="local")
    stt = lk_openai.STT(model="whisper-1", base_url=speech_server.base_url, api_key="local")
    try:
        frames = [event.frame async for event in tts.synthesize(SENTENCE)]
        audio = rtc.combine_audio_frames(frames)
        assert audio.sample_rate == 24_000
        assert 1.0 < audio.duration < 5.0

        event = await stt.recognize(frames)

        assert EXPECTED_WORDS <= set(event.alternatives[0].text.lower().split()), event.alternatives[0].text
    finally:
        await tts.aclose()
        await stt.aclose()
