"""Where a worker's CPU goes: py-spy samples of its whole process tree during one density step,
summarized by owner (ours: worker/agent_worker; livekit-agents; the livekit rtc client and its
native FFI; ONNX models; the rest), with the hottest frames.

py-spy (`pip install py-spy`, the bench extra) samples only running Python threads (not idle
ones), so a share of samples is a share of the Python threads' CPU time. It does not stop the
worker (--nonblocking), so it cannot see native threads (livekit's Rust FFI runtime, onnxruntime's
pool): bench/density.py's per-thread CPU (density_proc.thread_cpu) covers those.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections import Counter
from pathlib import Path

OWNERS = (  # first match on a frame's file (as py-spy names it) wins
    ("ours", re.compile(r"agent_worker/|density_plain")),
    ("onnx models (VAD, turn detector)", re.compile(r"onnxruntime|silero/|turn_detector")),
    ("livekit rtc client (FFI calls)", re.compile(r"^rtc/|livekit_ffi")),
    ("livekit-agents", re.compile(r"^agents/")),
    ("livekit plugins", re.compile(r"^plugins/|^(openai|groq|deepgram)/")),
    ("imports and settings (process and job start)", re.compile(r"importlib|pydantic")),
    ("asyncio, threads, http, json: the interpreter", re.compile(r".")),
)
# Leaves where a thread waits (py-spy's --nonblocking cannot always tell them idle): not CPU.
WAITING = re.compile(r"^(EpollSelector\.select|select|Condition\.wait|_worker|wait|acquire|Event\.wait|poll)$")
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def owner(frame_file: str) -> str:
    return next(name for name, pattern in OWNERS if pattern.search(frame_file))


def summarize(collapsed: str, top: int = 15) -> dict:
    """Self samples by owner; samples whose stack passes through our code; the hottest frames."""
    self_by_owner: Counter[str] = Counter()
    through_ours = 0
    hottest: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [FRAME.match(frame) for frame in stack.split(";")]
        files = [match["file"] for match in frames if match]
        if not files:
            continue
        leaf = frames[-1]
        if leaf and WAITING.match(leaf["function"]):
            continue
        total += count
        self_by_owner[owner(files[-1])] += count
        if any(owner(file) == "ours" for file in files):
            through_ours += count
        if leaf:
            hottest[f"{leaf['function']} ({Path(leaf['file']).name})"] += count
    share = lambda value: round(value / total, 3) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "self_share_by_owner": {name: share(value) for name, value in self_by_owner.most_common()},
        "share_with_our_code_on_the_stack": share(through_ours),
        "hottest_frames": [{"frame": frame, "share": share(value)} for frame, value in hottest.most_common(top)],
    }


async def record(pid: int, seconds: float, out: Path, rate: int = 50) -> dict:
    """py-spy over `pid` and its subprocesses for `seconds`; the collapsed stacks are kept at `out`."""
    py_spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
    process = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", str(rate),
        "--duration", str(int(seconds)), "--format", "raw", "--output", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    log, _ = await process.communicate()
    if process.returncode != 0 or not out.exists():
        return {"error": f"py-spy exited {process.returncode}: {log.decode(errors='replace')[-400:]}"}
    return summarize(out.read_text())
