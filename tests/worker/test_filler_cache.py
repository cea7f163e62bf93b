"""The stock phrases are synthesized once per worker pod, not once per call: livekit runs each
call in its own process, so the cache is a folder the pod's processes share, under a lock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from agent_worker.preresponse import STOCK_PHRASES, FillerCache
from agent_worker.scripted import ScriptedTTS

JOB = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from agent_worker.preresponse import STOCK_PHRASES, FillerCache
    from agent_worker.scripted import ScriptedTTS

    async def main():
        tts = ScriptedTTS(ttfb=0.2)
        cache = FillerCache(tts, STOCK_PHRASES, Path(sys.argv[1]))
        await cache.warm()
        assert all(cache.get(p) is not None for p in STOCK_PHRASES)
        with open(sys.argv[2], "a") as log:
            log.writelines(f"{text}\\n" for text in tts.texts)

    asyncio.run(main())
    """
)


def test_calls_in_separate_processes_of_one_pod_synthesize_each_phrase_once(tmp_path: Path):
    requests = tmp_path / "tts-requests.log"
    requests.touch()
    calls = [subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path / "cache"), str(requests)]) for _ in range(4)]
    assert [call.wait(timeout=120) for call in calls] == [0, 0, 0, 0]
    assert sorted(requests.read_text().splitlines()) == sorted(STOCK_PHRASES)


async def test_a_new_job_process_reads_the_pods_phrases_without_a_tts_request(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(FillerCache, "_memory", {})
    first = ScriptedTTS(seconds_per_char=0.02)
    await FillerCache(first, STOCK_PHRASES, tmp_path).warm()
    monkeypatch.setattr(FillerCache, "_memory", {})  # what a fresh job process starts with
    second = ScriptedTTS(seconds_per_char=0.02)
    cache = FillerCache(second, STOCK_PHRASES, tmp_path)
    await cache.warm()
    assert len(first.texts) == len(STOCK_PHRASES) and second.texts == []
    clip = cache.get("one moment")
    assert clip is not None and abs(clip.duration - len("One moment.") * 0.02) < 0.021
    assert all(frame.duration <= 0.021 for frame in clip.frames)  # streams in 20 ms frames


async def test_another_voice_gets_its_own_phrases(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(FillerCache, "_memory", {})
    await FillerCache(ScriptedTTS(seconds_per_char=0.02), STOCK_PHRASES, tmp_path).warm()
    other = ScriptedTTS(seconds_per_char=0.05)
    await asyncio.wait_for(FillerCache(other, STOCK_PHRASES, tmp_path).warm(), 10)
    assert len(other.texts) == len(STOCK_PHRASES)
