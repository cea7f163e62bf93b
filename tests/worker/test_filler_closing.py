"""A filler whose session closes while its transcript waits for the audio: no exception, not started."""

from __future__ import annotations

import asyncio

from agent_worker.preresponse import Filler


async def _never() -> str | None:
    await asyncio.Event().wait()
    return None


async def test_a_session_closing_while_the_filler_waits_leaves_it_not_started_without_raising():
    filler = Filler("what is the capital of France", asyncio.ensure_future(_never()))
    reading = asyncio.ensure_future(anext(filler.text_stream(), None))
    await asyncio.sleep(0)

    reading.cancel()  # what livekit does to a speech's text stream when the session closes
    await asyncio.gather(reading, return_exceptions=True)

    assert filler.audio_started is not None and filler.audio_started.cancelled()
    assert filler.audio_has_started is False
    filler.text_task.cancel()


async def test_a_filler_is_started_only_once_its_audio_began():
    filler = Filler("q", asyncio.ensure_future(_never()))
    assert filler.audio_has_started is False
    assert filler.audio_started is not None
    filler.audio_started.set_result(True)
    assert filler.audio_has_started is True
    filler.text_task.cancel()
