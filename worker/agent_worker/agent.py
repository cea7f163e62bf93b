"""PreResponseAgent: a fast acknowledgement that never holds up the real answer.

How a turn runs (strategy "concurrent", the default):

- livekit calls `llm_node` for the main answer as soon as it has a final transcript
  (preemptive generation, before the turn is committed). That is where the fast LLM is started
  too, for the same transcript, so both models work from the same moment.
- `on_user_turn_completed` (audio path only) returns at once after queueing the filler with
  `session.say(text, audio=...)`: it never edits the turn context, so livekit keeps its
  preemptive answer, which is queued right behind the filler.
- When the answer's first audio frame is synthesized (`tts_node`), a filler that has not started
  is dropped and one that is playing is interrupted, so the answer plays without waiting.
- livekit records the filler in history only if it was heard, truncated to the words played;
  an answer interrupted by the caller is truncated the same way.
- If the caller barges in on the filler, the answer queued behind it is interrupted too.

Strategy "sequential" reproduces the seed prototype (wait for the whole filler text, add it to
the turn context, answer afterwards) for the latency benchmark only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from livekit import rtc
from livekit.agents import Agent, llm
from livekit.agents.voice import ModelSettings, SpeechHandle
from livekit.agents.voice.events import ConversationItemAddedEvent, SpeechCreatedEvent

from .preresponse import (
    Filler,
    FillerCache,
    PreResponseOptions,
    clean_filler,
    filler_context,
    generate_filler_text,
    is_trivial,
    normalize,
)

logger = logging.getLogger("agent_worker.agent")

Strategy = Literal["concurrent", "sequential"]


class PreResponseObserver(Protocol):
    def on_preresponse(self, outcome: str, latency: float | None) -> None: ...


FillerAnnouncer = Callable[[str], object]

# The participant attribute the worker sets to the filler's text when it starts to play.
FILLER_ATTRIBUTE = "agent_worker.filler"


@dataclass
class TurnRecord:
    """What the caller experienced in one turn (wall-clock seconds, time.time())."""

    transcript: str
    committed_at: float
    stopped_speaking_at: float | None
    filler_outcome: str | None = None
    filler_text: str | None = None
    filler_audio_at: float | None = None
    answer_audio_at: float | None = None
    answer_text: str | None = None


class PreResponseAgent(Agent):
    def __init__(
        self,
        *,
        instructions: str,
        fast_llm: llm.LLM | None,
        options: PreResponseOptions | None = None,
        strategy: Strategy = "concurrent",
        observer: PreResponseObserver | None = None,
        announce_filler: FillerAnnouncer | None = None,
    ) -> None:
        """`announce_filler(text)` is called when a filler starts to play (the worker publishes it
        to the room, so a listener can tell the filler from the answer)."""
        super().__init__(instructions=instructions)
        self._announce_filler = announce_filler
        self._fast_llm = fast_llm
        self._options = options or PreResponseOptions()
        self._strategy = strategy
        self._observer = observer
        self._cache: FillerCache | None = None
        self._prepared: dict[str, asyncio.Task[str | None]] = {}
        self._consumed: str | None = None
        self._previous_filler: str | None = None
        self._filler: Filler | None = None
        self._filler_handle: SpeechHandle | None = None
        self._reply_handle: SpeechHandle | None = None
        self.turns: list[TurnRecord] = []

    @property
    def preresponse_enabled(self) -> bool:
        return self._options.enabled and self._fast_llm is not None

    @property
    def filler_cache(self) -> FillerCache | None:
        return self._cache

    async def on_enter(self) -> None:
        self.session.on("speech_created", self._on_speech_created)
        self.session.on("conversation_item_added", self._on_item_added)
        if self.preresponse_enabled and self._options.use_cache and self.session.tts is not None:
            self._cache = FillerCache(self.session.tts, self._options.stock_phrases)
            self._cache.warm()

    async def on_exit(self) -> None:
        self.session.off("speech_created", self._on_speech_created)
        self.session.off("conversation_item_added", self._on_item_added)
        self._drop_prepared()

    # --- the main answer's nodes ---------------------------------------------------------

    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterator[Any]:
        last = chat_ctx.items[-1] if chat_ctx.items else None
        spoken_turn = self.session.input.audio is not None and self.session.input.audio_enabled
        if self._strategy == "concurrent" and spoken_turn and isinstance(last, llm.ChatMessage) and last.role == "user":
            self._prepare(last.text_content or "", chat_ctx)
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            yield chunk

    async def tts_node(self, text: AsyncIterable[str], model_settings: ModelSettings) -> AsyncIterator[rtc.AudioFrame]:
        first = True
        async for frame in Agent.default.tts_node(self, text, model_settings):
            if first:
                first = False
                self._answer_audio_ready()
            yield frame

    # --- the pre-response ----------------------------------------------------------------

    async def on_user_turn_completed(self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage) -> None:
        transcript = new_message.text_content or ""
        metrics = new_message.metrics or {}
        record = TurnRecord(transcript, committed_at=time.time(), stopped_speaking_at=metrics.get("stopped_speaking_at"))
        self.turns.append(record)
        if not self.preresponse_enabled:
            return
        if is_trivial(transcript, self._options):
            self._finish(record, "skipped_trivial", None)
            return
        ctx = turn_ctx.copy()
        ctx.items.append(new_message)
        if self._strategy == "sequential":
            await self._speak_then_answer(turn_ctx, ctx, record)
            return
        filler = Filler(transcript, self._take_prepared(transcript, ctx))
        try:
            handle = self.session.say(
                filler.text_stream(), audio=filler.audio_stream(self.session.tts, self._cache), add_to_chat_ctx=True
            )
        except RuntimeError:  # the session is closing: the answer path decides what happens
            filler.text_task.cancel()
            self._finish(record, "failed", None)
            return
        self._filler, self._filler_handle = filler, handle
        handle.add_done_callback(lambda h: self._on_filler_done(filler, h, record))
        if filler.audio_started is not None:
            filler.audio_started.add_done_callback(lambda started: self._on_filler_audio(filler, started))

    def _on_filler_audio(self, filler: Filler, started: asyncio.Future[bool]) -> None:
        if self._announce_filler is not None and not started.cancelled() and started.result() and filler.text:
            self._announce_filler(filler.text)

    def _prepare(self, transcript: str, chat_ctx: llm.ChatContext) -> None:
        """Start the fast LLM's filler text early, once per transcript (from the main answer's llm_node)."""
        key = normalize(transcript)
        if not self.preresponse_enabled or key in self._prepared or key == self._consumed or is_trivial(transcript, self._options):
            return
        self._drop_prepared()
        self._prepared[key] = self._start_filler_text(chat_ctx)

    def _take_prepared(self, transcript: str, chat_ctx: llm.ChatContext) -> asyncio.Task[str | None]:
        """The filler text task for the committed turn: the one started early, or a new one."""
        key = normalize(transcript)
        task = self._prepared.pop(key, None) or self._start_filler_text(chat_ctx)
        self._drop_prepared()
        self._consumed = key
        return task

    def _drop_prepared(self) -> None:
        for stale in self._prepared.values():
            stale.cancel()
        self._prepared = {}

    def _start_filler_text(self, chat_ctx: llm.ChatContext) -> asyncio.Task[str | None]:
        task = asyncio.get_running_loop().create_task(self._filler_text(chat_ctx), name="PreResponseAgent.filler_text")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _filler_text(self, chat_ctx: llm.ChatContext) -> str | None:
        assert self._fast_llm is not None
        previous = self._previous_filler
        raw = await generate_filler_text(
            self._fast_llm,
            filler_context(chat_ctx, self._options, previous),
            max_words=self._options.max_words,
            conn_options=self.session.conn_options.llm_conn_options,
        )
        text = clean_filler(raw, max_words=self._options.max_words, previous=previous)
        if text is None and self._cache is not None:
            text = self._cache.stock_alternative(previous)
        return text

    async def _speak_then_answer(self, turn_ctx: llm.ChatContext, ctx: llm.ChatContext, record: TurnRecord) -> None:
        """The seed prototype's order: the whole filler text first, then the answer starts."""
        try:
            text = await self._filler_text(ctx)
        except Exception:
            logger.warning("fast LLM failed; no pre-response this turn", exc_info=True)
            self._finish(record, "failed", None)
            return
        if text is None:
            self._finish(record, "skipped_invalid", None)
            return
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        done.set_result(text)
        filler = Filler(record.transcript, asyncio.ensure_future(done))
        handle = self.session.say(filler.text_stream(), audio=filler.audio_stream(self.session.tts, self._cache))
        self._filler, self._filler_handle = None, handle
        handle.add_done_callback(lambda h: self._on_filler_done(filler, h, record))
        turn_ctx.add_message(role="assistant", content=text)

    def _answer_audio_ready(self) -> None:
        filler, handle = self._filler, self._filler_handle
        if filler is None or handle is None or handle.done() or filler.outcome is not None:
            return
        filler.answer_ready.set()
        started = filler.audio_has_started
        filler.settle("cut" if started else "skipped_answer_first")
        handle.interrupt(force=True)

    def _on_filler_done(self, filler: Filler, handle: SpeechHandle, record: TurnRecord) -> None:
        started = filler.audio_has_started
        if filler.outcome is None:
            filler.settle("interrupted" if handle.interrupted else "spoken" if started else "failed")
            if handle.interrupted and self._reply_handle is not None and not self._reply_handle.done():
                self._reply_handle.interrupt(force=True)  # barge-in on the filler stops the answer too
        if started:
            self._previous_filler = filler.text
        latency = None
        if started and filler.first_audio_at is not None and record.stopped_speaking_at is not None:
            latency = filler.first_audio_at - record.stopped_speaking_at
        record.filler_text = filler.text if started else None
        record.filler_audio_at = filler.first_audio_at if started else None
        self._finish(record, filler.outcome or "spoken", latency)

    def _finish(self, record: TurnRecord, outcome: str, latency: float | None) -> None:
        record.filler_outcome = outcome
        if self._observer is not None:
            self._observer.on_preresponse(outcome, latency)

    # --- session events ------------------------------------------------------------------

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        if ev.source == "generate_reply":
            self._reply_handle = ev.speech_handle

    def _on_item_added(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or item.role != "assistant" or not self.turns:
            return
        if self._filler_handle is not None and any(i is item for i in self._filler_handle.chat_items):
            return
        record = self.turns[-1]
        if record.answer_audio_at is None:
            record.answer_audio_at = (item.metrics or {}).get("started_speaking_at")
            record.answer_text = item.text_content
