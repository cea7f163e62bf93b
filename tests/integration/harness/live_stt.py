"""Audio through livekit-plugins-deepgram's streaming STT, unmodified, to a Deepgram live endpoint
(the test bed's speech server, or the scripted stand-in's)."""

from __future__ import annotations

import asyncio

import aiohttp
from livekit import rtc
from livekit.agents import stt
from livekit.plugins import deepgram as lk_deepgram


def silence(seconds: float, rate: int) -> list[rtc.AudioFrame]:
    """`seconds` of digital silence in 10 ms frames."""
    return [rtc.AudioFrame(bytes(2 * rate // 100), rate, 1, rate // 100)] * round(seconds * 100)


async def stream_live(listen_url: str, frames: list[rtc.AudioFrame], **options) -> list[stt.SpeechEvent]:
    """Streams `frames` at four times real time and ends the input; returns every event until the
    stream ends."""
    async with aiohttp.ClientSession() as session:
        recognizer = lk_deepgram.STT(base_url=listen_url, api_key="local", http_session=session, **options)
        stream = recognizer.stream()

        async def speak() -> None:
            for frame in frames:
                stream.push_frame(frame)
                await asyncio.sleep(frame.duration / 4)
            stream.end_input()

        speaking = asyncio.create_task(speak())
        try:
            return await asyncio.wait_for(_events(stream), timeout=60)
        finally:
            await speaking
            await stream.aclose()
            await recognizer.aclose()


async def _events(stream: stt.SpeechStream) -> list[stt.SpeechEvent]:
    return [event async for event in stream]
