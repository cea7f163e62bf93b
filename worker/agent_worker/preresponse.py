"""The filler's words and audio: which texts are safe to say, and the pod-wide stock phrases.

- `is_safe_filler(text)`: a filler may only acknowledge. It is made of acknowledgement words
  only ("Okay.", "Let me check that for you."), so it can never answer ("Yes, it is open."),
  state a fact ("Paris."), ask ("What planet?"), refuse or apologize ("I'm sorry, I can't.").
  Every fast-LLM text passes through it before it is spoken.
- `FillerCache`: the stock phrases, synthesized once per worker pod (not per call: livekit runs
  one job per process) into a shared directory, under a file lock, and read by every job.
- `strip_repeated_opening`: the answer does not repeat the filler ("Sure. Sure, ...").

When and which phrase to say is decided in `decision.py`; `agent.py` carries it out.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm, tts

from .decision import Options, normalize

logger = logging.getLogger("agent_worker.preresponse")

STOCK_PHRASES: tuple[str, ...] = ("Okay.", "Sure.", "Right.", "Got it.", "Let me check.", "One moment.", "Good question.")
RECOVERY_LINE = "Sorry, I lost my train of thought. Could you say that again?"
DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "agent-worker-fillers"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")

# Words an acknowledgement is made of. Anything else (a name, a number, yes/no, a verb of fact,
# sorry, can't) could carry an answer, a refusal or an apology, so the text is not a filler.
ACKNOWLEDGEMENT_WORDS = frozenset(
    """
    okay ok sure right alright all got it gotcha understood noted let let's me us check checking see
    one moment moments second sec minute just a quick give think thinking look looking into that this
    on hold bear with find out pull up good great interesting question questions thanks thank you for
    asking so well i'll i'm i will am now hmm mm um uh take working there thing
    """.split()
)
MAX_FILLER_WORDS = 10


@dataclass(frozen=True)
class PreResponseOptions:
    enabled: bool = True
    max_words: int = 8
    use_cache: bool = True
    context_items: int = 4
    decision: Options = Options()  # when a turn gets a filler (agent_worker.decision)
    stock_phrases: Sequence[str] = STOCK_PHRASES
    recovery_line: str = RECOVERY_LINE
    cache_dir: Path = DEFAULT_CACHE_DIR


def cached_phrases(options: PreResponseOptions) -> list[str]:
    """What the pod synthesizes once: the stock phrases and the recovery line."""
    return [*options.stock_phrases, options.recovery_line]


def is_safe_filler(text: str) -> bool:
    """Whether `text` only acknowledges: one short sentence of acknowledgement words, no digit,
    no question mark. Conservative by design: a text it rejects is replaced by a stock phrase."""
    stripped = text.strip().replace("\u2019", "'")
    if not stripped or "?" in stripped or any(ch.isdigit() for ch in stripped):
        return False
    words = normalize(stripped).split()
    return 0 < len(words) <= MAX_FILLER_WORDS and all(word in ACKNOWLEDGEMENT_WORDS for word in words)


def clean_filler(raw: str, *, max_words: int, previous: str | None) -> str | None:
    """The fast LLM's first sentence if it is a safe filler of at most `max_words` words and not
    the previous filler; None otherwise (a stock phrase stands in)."""
    text = " ".join(raw.split())
    text = _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""
    if not text or len(text.split()) > max_words or not is_safe_filler(text):
        return None
    if previous is not None and normalize(text) == normalize(previous):
        return None
    return text


def strip_repeated_opening(answer: str, filler: str) -> str:
    """`answer` without a leading repetition of `filler` ("Sure, the shop..." after "Sure.")."""
    said = normalize(filler).split()
    tokens = answer.lstrip().split(" ")
    if not said or len(tokens) < len(said) or [normalize(t) for t in tokens[: len(said)]] != said:
        return answer
    rest = " ".join(tokens[len(said) :]).lstrip(" ,.;:!-")
    return rest[:1].upper() + rest[1:] if rest else ""


class OpeningStripper:
    """Holds the start of a streamed answer until it can tell whether it repeats the filler."""

    def __init__(self, filler: str) -> None:
        self._filler = filler
        self._needed = len(normalize(filler).split()) + 1
        self._held: list[str] | None = []

    def feed(self, text: str) -> str:
        if self._held is None:
            return text
        self._held.append(text)
        joined = "".join(self._held)
        if len(joined.split()) <= self._needed and not joined[-1:].isspace():
            return ""
        return self.flush()

    def flush(self) -> str:
        if self._held is None:
            return ""
        joined, self._held = "".join(self._held), None
        return strip_repeated_opening(joined, self._filler)


def filler_prompt(options: PreResponseOptions, previous: str | None) -> str:
    avoid = f' Do not say "{previous}" again.' if previous else ""
    examples = " ".join(f'"{p}"' for p in options.stock_phrases)
    return (
        "Another assistant is preparing the answer to the caller's last message. Your only job is to "
        f"acknowledge it at once with one short phrase of at most {options.max_words} words. Never answer, "
        f"never state facts or numbers, never ask a question, never apologize.{avoid} Prefer one of: {examples}."
    )


def filler_context(chat_ctx: llm.ChatContext, options: PreResponseOptions, previous: str | None) -> llm.ChatContext:
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content=filler_prompt(options, previous))
    recent = [item for item in chat_ctx.items if item.type == "message" and item.role in ("user", "assistant")]
    for message in recent[-options.context_items :]:
        ctx.add_message(role=message.role, content=message.text_content or "")
    return ctx


def holds_the_filler(text: str, max_words: int) -> bool:
    """Whether `text`, the start of a reply, already decides `clean_filler`'s result: its first
    sentence has ended, or a word beyond the limit has begun (so the first `max_words` are whole)."""
    text = " ".join(text.split()) + (" " if text[-1:].isspace() else "")
    return bool(_SENTENCE_END.search(text)) or len(text.split()) > max_words


_draining: set[asyncio.Task[None]] = set()


async def generate_filler_text(
    fast_llm: llm.LLM,
    chat_ctx: llm.ChatContext,
    *,
    max_words: int | None = None,
    conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
) -> str:
    """The fast LLM's reply, returned as soon as it holds the filler (see `holds_the_filler`):
    the filler never waits for text it will not speak. The rest of the reply is still read, in
    the background, so the request ends normally and its usage is recorded."""
    parts: list[str] = []
    stream = fast_llm.chat(chat_ctx=chat_ctx, conn_options=conn_options)
    try:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                parts.append(chunk.delta.content)
                if max_words is not None and holds_the_filler("".join(parts), max_words):
                    task = asyncio.create_task(_read_to_the_end(stream), name="preresponse.drain_fast_llm")
                    _draining.add(task)
                    task.add_done_callback(_draining.discard)
                    return "".join(parts)
    except BaseException:
        await stream.aclose()
        raise
    await stream.aclose()
    return "".join(parts)


async def _read_to_the_end(stream: llm.LLMStream) -> None:
    try:
        async for _chunk in stream:
            pass
    except Exception:
        logger.debug("the rest of the fast LLM's reply failed; the filler already had its text", exc_info=True)
    finally:
        await stream.aclose()


@dataclass(frozen=True)
class Clip:
    frames: tuple[rtc.AudioFrame, ...]
    ttfb: float  # how long the TTS took to its first byte when this clip was made

    @property
    def duration(self) -> float:
        return sum(frame.duration for frame in self.frames)


class FillerCache:
    """Stock phrases synthesized once per pod and TTS voice, shared by every job process.

    The first process that needs a voice's phrases takes an exclusive lock on the voice's folder
    under `directory` (an emptyDir in the pod), synthesizes what is missing and writes one file
    per phrase; the others wait for the lock and read the files. Each process keeps what it read."""

    _memory: dict[str, dict[str, Clip]] = {}

    def __init__(self, tts_engine: tts.TTS, phrases: Sequence[str], directory: Path = DEFAULT_CACHE_DIR) -> None:
        voice = getattr(tts_engine, "voice", None) or getattr(getattr(tts_engine, "_opts", None), "voice", "")
        identity = f"{tts_engine.provider}|{tts_engine.model}|{voice}|{tts_engine.sample_rate}"
        self._key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self._folder = Path(directory) / self._key
        self._tts = tts_engine
        self._phrases = list(dict.fromkeys(phrases))
        self._task: asyncio.Task[None] | None = None

    @property
    def phrases(self) -> list[str]:
        return list(self._phrases)

    def warm(self) -> asyncio.Task[None]:
        """Load (or, first in the pod, synthesize) the phrases in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._load(), name="FillerCache.warm")
        return self._task

    def get(self, text: str) -> Clip | None:
        return FillerCache._memory.get(self._key, {}).get(normalize(text))

    async def _load(self) -> None:
        store = FillerCache._memory.setdefault(self._key, {})
        if all(normalize(p) in store for p in self._phrases):
            return
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = os.open(self._folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
            missing = []
            for phrase in self._phrases:
                clip = _read_clip(self._path(phrase))
                if clip is not None:
                    store[normalize(phrase)] = clip
                elif normalize(phrase) not in store:
                    missing.append(phrase)
            results = await asyncio.gather(*(self._synthesize(p) for p in missing), return_exceptions=True)
            for phrase, clip in zip(missing, results):
                if isinstance(clip, BaseException):
                    logger.warning("could not pre-synthesize %r (%s); it is left out", phrase, clip)
                    continue
                store[normalize(phrase)] = clip
                _write_clip(self._path(phrase), clip)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)

    def _path(self, phrase: str) -> Path:
        return self._folder / (hashlib.sha256(normalize(phrase).encode()).hexdigest()[:16] + ".pcm")

    async def _synthesize(self, phrase: str) -> Clip:
        started = time.perf_counter()
        frames, ttfb = [], -1.0
        async for event in self._tts.synthesize(phrase):
            ttfb = ttfb if ttfb >= 0 else time.perf_counter() - started
            frames.append(event.frame)
        return Clip(tuple(_split(frames)), ttfb)


class LatencyLog:
    """The main LLM's recent times to first token in this pod, shared by its job processes.

    livekit runs each call in its own process, so a session alone knows nothing of its provider
    until its first answer; it starts instead from the last `KEEP` answers of the pod's earlier
    calls to the same model (one small file per model in the cache folder). Appends are single
    short writes (atomic with O_APPEND); the file is cut back to its last lines when it grows."""

    KEEP = 20
    _MAX_BYTES = 4096

    def __init__(self, directory: Path, identity: str) -> None:
        self._path = Path(directory) / f"llm-ttft-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.log"

    def recent(self) -> list[float]:
        try:
            lines = self._path.read_text().split()
        except OSError:
            return []
        samples = []
        for line in lines[-self.KEEP:]:
            try:
                samples.append(float(line))
            except ValueError:
                continue  # a line cut by a crash mid-write
        return samples

    def add(self, seconds: float) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, f"{seconds:.4f}\n".encode())
                size = os.fstat(descriptor).st_size
            finally:
                os.close(descriptor)
            if size > self._MAX_BYTES:
                # one name per writer: the pod's job processes, or the worker's threads (AGENT_JOB_EXECUTOR=thread)
                temporary = self._path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
                temporary.write_text("".join(f"{sample:.4f}\n" for sample in self.recent()))
                temporary.replace(self._path)
        except OSError as error:  # a full or read-only folder costs only the shared estimate
            logger.debug("could not record the LLM's time to first token: %s", error)


def _split(frames: Sequence[rtc.AudioFrame], seconds: float = 0.02) -> list[rtc.AudioFrame]:
    """The same audio in 20 ms frames, so a clip streams like a TTS's output."""
    if not frames:
        return []
    rate, channels = frames[0].sample_rate, frames[0].num_channels
    data = b"".join(bytes(frame.data) for frame in frames)
    step = int(rate * seconds) * channels * 2
    return [
        rtc.AudioFrame(data[i : i + step], rate, channels, len(data[i : i + step]) // (2 * channels))
        for i in range(0, len(data), step)
    ]


def _write_clip(path: Path, clip: Clip) -> None:
    first = clip.frames[0]
    header = {"sample_rate": first.sample_rate, "channels": first.num_channels, "ttfb": clip.ttfb}
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(bytes(f.data) for f in clip.frames))
    temporary.replace(path)


def _read_clip(path: Path) -> Clip | None:
    try:
        header, _, data = path.read_bytes().partition(b"\n")
        meta = json.loads(header)
        frame = rtc.AudioFrame(data, meta["sample_rate"], meta["channels"], len(data) // (2 * meta["channels"]))
    except (OSError, ValueError, KeyError):
        return None
    return Clip(tuple(_split([frame])), float(meta["ttfb"]))


async def frames_of(clip: Clip) -> AsyncIterator[rtc.AudioFrame]:
    for frame in clip.frames:
        yield frame
