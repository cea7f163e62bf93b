"""The scripted stand-ins' Deepgram live endpoint, through livekit-plugins-deepgram unmodified: each
stretch of speech comes back as one final transcript with an endpoint, the pauses between a
sentence's words do not split it, and silence alone is never transcribed (bench/density.py relies
on it to run the worker's production STT path)."""

from __future__ import annotations


import pytest
from livekit import rtc
from livekit.agents import stt
from livekit.plugins import openai as lk_openai

from .harness.live_stt import silence, stream_live
from .harness.scripted_providers import TRANSCRIPT, scripted_providers  # noqa: F401 (fixture)

pytestmark = pytest.mark.testbed

SPOKEN = "What is the weather like in Paris today?"  # the stand-in says as much of its voice, no comma in it


async def _speech(base_url: str) -> list[rtc.AudioFrame]:
    tts = lk_openai.TTS(model="tts-1", voice="alloy", base_url=base_url, api_key="scripted")
    try:
        return [event.frame async for event in tts.synthesize(SPOKEN)]
    finally:
        await tts.aclose()


async def test_each_question_comes_back_as_one_final_transcript_with_an_endpoint(scripted_providers):  # noqa: F811
    base_url = scripted_providers()
    frames = await _speech(base_url)
    spoken = sum(frame.duration for frame in frames)

    pause = silence(1.0, frames[0].sample_rate)
    events = await stream_live(base_url + "/listen", pause + frames + pause + frames + pause)

    kinds = [event.type for event in events if event.type != stt.SpeechEventType.RECOGNITION_USAGE]
    finals = [event.alternatives[0] for event in events if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert kinds == [stt.SpeechEventType.START_OF_SPEECH, stt.SpeechEventType.FINAL_TRANSCRIPT,
                     stt.SpeechEventType.END_OF_SPEECH] * 2, kinds
    assert [final.text for final in finals] == [TRANSCRIPT, TRANSCRIPT]
    # where the speech was in the stream: after the first second of silence, and after the second
    assert 0.9 <= finals[0].start_time < finals[0].end_time <= 1.0 + spoken + 0.1
    assert 2.0 + spoken - 0.1 <= finals[1].start_time < finals[1].end_time <= 2.0 + 2 * spoken + 0.1
    assert [str(word) for word in finals[0].words] == TRANSCRIPT.split()


async def test_silence_alone_is_never_transcribed(scripted_providers):  # noqa: F811
    events = await stream_live(scripted_providers() + "/listen", silence(3.0, 24_000))

    assert [event for event in events if event.type != stt.SpeechEventType.RECOGNITION_USAGE] == []
