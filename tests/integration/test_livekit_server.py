"""livekit-server --dev on loopback: the server API creates rooms, and two rtc clients holding
tokens join and exchange audio over real WebRTC."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from livekit import api, rtc

pytestmark = pytest.mark.testbed

SAMPLE_RATE = 48_000
FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms


def token(server, room: str, identity: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return (api.AccessToken(server.api_key, server.api_secret)
            .with_identity(identity).with_grants(grants).to_jwt())


async def test_the_server_api_creates_and_lists_a_room(livekit_server):
    name = f"room-{uuid.uuid4().hex[:8]}"
    async with api.LiveKitAPI(livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret) as lk:
        created = await lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=60))
        listed = await lk.room.list_rooms(api.ListRoomsRequest(names=[name]))

    assert created.name == name
    assert [room.name for room in listed.rooms] == [name]


async def test_two_clients_join_with_tokens_and_audio_flows_between_them(livekit_server):
    room_name = f"room-{uuid.uuid4().hex[:8]}"
    caller, listener = rtc.Room(), rtc.Room()
    received: asyncio.Queue[rtc.AudioFrame] = asyncio.Queue()
    tasks: list[asyncio.Task] = []

    @listener.on("track_subscribed")
    def on_track(track: rtc.Track, _pub, participant: rtc.RemoteParticipant) -> None:
        async def drain() -> None:
            async for event in rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1):
                await received.put(event.frame)
        tasks.append(asyncio.create_task(drain()))

    try:
        await listener.connect(livekit_server.url, token(livekit_server, room_name, "listener"))
        await caller.connect(livekit_server.url, token(livekit_server, room_name, "caller"))
        assert caller.connection_state == rtc.ConnectionState.CONN_CONNECTED
        assert listener.name == caller.name == room_name

        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await caller.local_participant.publish_track(track, options)

        tone = (np.sin(2 * np.pi * 440 * np.arange(FRAME_SAMPLES) / SAMPLE_RATE) * 8000).astype(np.int16)
        loudest = 0
        for _ in range(300):  # up to 3 s of a 440 Hz tone, until the listener hears it
            await source.capture_frame(rtc.AudioFrame(tone.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES))
            while not received.empty():
                frame = received.get_nowait()
                loudest = max(loudest, int(np.abs(np.frombuffer(frame.data, dtype=np.int16)).max()))
            if loudest > 1000:
                break

        assert "caller" in {p.identity for p in listener.remote_participants.values()}
        assert loudest > 1000, "the listener received no audible audio from the caller"
    finally:
        for task in tasks:
            task.cancel()
        await caller.disconnect()
        await listener.disconnect()
