"""The pre-response ("filler"): what to say, when not to say it, and its audio.

A filler is one short acknowledgement from the fast LLM, spoken while the main LLM prepares
the answer. The skip rule (also in docs/worker.md):

1. `skipped_trivial`: the caller said fewer than `min_words` words ("yes", "thank you"):
   the answer itself is short and quick, an acknowledgement would only be noise.
2. `skipped_answer_first`: the answer's first audio was ready before the filler's: the filler
   is dropped unspoken.
3. `cut`: the answer's first audio became ready while the filler was playing: the filler
   stops there and the answer starts; history keeps only the words the caller heard.
4. `skipped_invalid`: the fast LLM's text was empty, answered the question (held a digit),
   or repeated the previous filler, and no stock phrase could stand in.
5. `failed`: the fast LLM raised; the answer is unaffected.

The fast LLM call is made once per user transcript, as early as the main LLM's own call
(livekit starts that one preemptively, before the turn is committed), so the two run
concurrently from the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm, tts

logger = logging.getLogger("agent_worker.preresponse")

STOCK_PHRASES: tuple[str, ...] = ("Okay.", "Sure.", "Right.", "Got it.", "Let me check.", "One moment.", "Good question.")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class PreResponseOptions:
    enabled: bool = True
    max_words: int = 8
    min_words: int = 3
    use_cache: bool = True
    context_items: int = 4
    stock_phrases: Sequence[str] = STOCK_PHRASES


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def word_count(text: str) -> int:
    return len(normalize(text).split())


def is_trivial(transcript: str, options: PreResponseOptions) -> bool:
    return word_count(transcript) < options.min_words


def clean_filler(raw: str, *, max_words: int, previous: str | None) -> str | None:
    """The first sentence of `raw`, at most `max_words` words; None if unusable."""
    text = " ".join(raw.split())
    text = _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""
    words = text.split()
    if not words or any(ch.isdigit() for ch in text):
        return None
    if len(words) > max_words:
        text = " ".join(words[:max_words]).rstrip(",;:") + "..."
    if previous is not None and normalize(text) == normalize(previous):
        return None
    return text


def filler_prompt(options: PreResponseOptions, previous: str | None) -> str:
    avoid = f' Do not say "{previous}" again.' if previous else ""
    examples = " ".join(f'"{p}"' for p in options.stock_phrases)
    return (
        "Another assistant is preparing the answer to the caller's last message. Your only job is to "
        f"acknowledge it at once with one short phrase of at most {options.max_words} words. Never answer, "
        f"never state facts or numbers, never ask a question.{avoid} Prefer one of: {examples}."
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


class FillerCache:
    """Stock acknowledgements synthesized once per process and TTS voice."""

    _by_voice: dict[tuple[str, str, str], dict[str, list[rtc.AudioFrame]]] = {}

    def __init__(self, tts_engine: tts.TTS, phrases: Sequence[str]) -> None:
        voice = getattr(tts_engine, "voice", None) or getattr(getattr(tts_engine, "_opts", None), "voice", "")
        self._key = (tts_engine.provider, tts_engine.model, str(voice))
        self._tts = tts_engine
        self._phrases = list(phrases)
        self._task: asyncio.Task[None] | None = None

    def warm(self) -> asyncio.Task[None]:
        """Start synthesizing missing phrases in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._synthesize_missing(), name="FillerCache.warm")
        return self._task

    async def _synthesize_missing(self) -> None:
        store = FillerCache._by_voice.setdefault(self._key, {})
        missing = [phrase for phrase in self._phrases if normalize(phrase) not in store]
        results = await asyncio.gather(*(self._synthesize(phrase) for phrase in missing), return_exceptions=True)
        for phrase, frames in zip(missing, results):
            if isinstance(frames, BaseException):
                logger.warning("could not pre-synthesize %r (%s); it will be synthesized when used", phrase, frames)
            else:
                store[normalize(phrase)] = frames

    async def _synthesize(self, phrase: str) -> list[rtc.AudioFrame]:
        return [event.frame async for event in self._tts.synthesize(phrase)]

    def get(self, text: str) -> list[rtc.AudioFrame] | None:
        return FillerCache._by_voice.get(self._key, {}).get(normalize(text))

    def stock_alternative(self, previous: str | None) -> str | None:
        """A cached stock phrase other than `previous`, for when the fast LLM's text is unusable."""
        for phrase in self._phrases:
            if self.get(phrase) is not None and (previous is None or normalize(phrase) != normalize(previous)):
                return phrase
        return None


@dataclass
class Filler:
    """One turn's pre-response: the fast LLM's text, then its audio, unless the answer wins."""

    transcript: str
    text_task: asyncio.Task[str | None]
    answer_ready: asyncio.Event = field(default_factory=asyncio.Event)
    audio_started: asyncio.Future[bool] | None = None
    outcome: str | None = None
    text: str | None = None
    first_audio_at: float | None = None

    def __post_init__(self) -> None:
        self.audio_started = asyncio.get_running_loop().create_future()

    @property
    def audio_has_started(self) -> bool:
        """Whether the filler's audio started playing. A session closing while `text_stream` waits
        cancels the future it awaits: that is "not started", never an exception."""
        started = self.audio_started
        return started is not None and started.done() and not started.cancelled() and started.result()

    def settle(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
        if self.audio_started is not None and not self.audio_started.done():
            self.audio_started.set_result(False)

    async def text_stream(self) -> AsyncIterator[str]:
        """The filler's words, released only once its audio has started (never for a dropped one)."""
        assert self.audio_started is not None
        if await self.audio_started and self.text:
            yield self.text

    async def audio_stream(self, tts_engine: tts.TTS, cache: FillerCache | None) -> AsyncIterator[rtc.AudioFrame]:
        assert self.audio_started is not None
        try:
            self.text = await self.text_task
        except Exception:
            logger.warning("fast LLM failed; no pre-response this turn", exc_info=True)
            self.settle("failed")
            return
        if self.text is None:
            self.settle("skipped_invalid")
            return
        frames = cache.get(self.text) if cache else None
        if frames is None:
            try:
                frames = [event.frame async for event in tts_engine.synthesize(self.text)]
            except Exception:
                logger.warning("could not synthesize the pre-response; no pre-response this turn", exc_info=True)
                self.settle("failed")
                return
        if self.answer_ready.is_set():
            self.settle("skipped_answer_first")
            return
        self.first_audio_at = time.time()
        self.audio_started.set_result(True)
        for frame in frames:
            yield frame
