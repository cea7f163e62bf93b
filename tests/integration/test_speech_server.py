"""The local speech endpoints speak and hear English, over OpenAI's and Deepgram's wire formats, and
livekit-plugins-openai's TTS and STT and livekit-plugins-deepgram's streaming STT work against them
unmodified."""

from __future__ import annotations

import io
import wave

import aiohttp
import pytest
from livekit import rtc
from livekit.agents import stt
from livekit.plugins import openai as lk_openai
from openai import AsyncOpenAI

from .harness.live_stt import silence, stream_live

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


async def test_streamed_speech_comes_back_as_interim_and_final_transcripts_with_an_endpoint(speech_server):
    tts = lk_openai.TTS(model="tts-1", voice="alloy", base_url=speech_server.base_url, api_key="local")
    try:
        frames = [event.frame async for event in tts.synthesize(SENTENCE)]
    finally:
        await tts.aclose()

    events = await stream_live(speech_server.base_url + "/listen", frames + silence(1.0, frames[0].sample_rate))

    kinds = [event.type for event in events if event.type != stt.SpeechEventType.RECOGNITION_USAGE]
    finals = [event.alternatives[0] for event in events if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert kinds[0] == stt.SpeechEventType.START_OF_SPEECH
    assert stt.SpeechEventType.INTERIM_TRANSCRIPT in kinds[:kinds.index(stt.SpeechEventType.FINAL_TRANSCRIPT)]
    assert kinds[-1] == stt.SpeechEventType.END_OF_SPEECH  # the endpoint, before the stream closed
    # "weather" only: a fresh stream's first words are heard with the decoder's initial cepstral
    # mean (it adapts as the caller speaks), where a batch request normalizes over the whole clip
    assert len(finals) == 1 and "weather" in finals[0].text.split(), finals
    assert 0.0 <= finals[0].start_time < finals[0].end_time <= sum(f.duration for f in frames) + 0.5
    assert [str(w) for w in finals[0].words] == finals[0].text.split()
    assert all(a.end_time <= b.start_time for a, b in zip(finals[0].words, finals[0].words[1:]))


async def test_the_live_endpoint_refuses_audio_it_cannot_hear_naming_the_parameter(speech_server):
    async with aiohttp.ClientSession() as session:
        async with session.get(speech_server.base_url + "/listen?encoding=opus&sample_rate=48000") as response:
            body = await response.json()

    assert response.status == 400
    assert "encoding='opus' is not supported (use linear16)" in body["err_msg"]
    assert "sample_rate='48000' is not supported (use 16000)" in body["err_msg"]
