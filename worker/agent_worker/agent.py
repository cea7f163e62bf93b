"""PreResponseAgent: carries out `decision.decide()` each turn; never hides the answer or a failure.

How a turn runs:

- livekit calls `llm_node` for the main answer as soon as it has a final transcript (preemptive
  generation). The agent notes when that request started and when its first token came, and
  starts the fast LLM for the same transcript (its own short timeout, no retries).
- At the commit (`on_user_turn_completed`, audio path only) it asks `decide()` whether the
  answer will be late, given this session's live latency estimate, and if so which phrase:
  the fast LLM's text when it is safe and its audio can start at once, else a pre-synthesized
  stock phrase. It never edits the turn context, so livekit keeps its preemptive answer,
  which is queued right behind the filler.
- A started filler always finishes (the decision only picks one that ends before the answer is
  due), so it is never cut mid-word; the answer follows it without a gap. If the answer's audio
  was ready first (preemptive TTS), no filler is said. The filler enters the history, and an
  answer that opens with the same words has them removed.
- If the caller barges in on the filler, the answer queued behind it is interrupted too.
- An empty or failed answer after a filler gets `recovery_line`, and every answer's outcome is
  counted. livekit resets its unrecoverable-error counters whenever the agent speaks; the agent
  puts them back when the speech was its own, so a failing main LLM closes the session on the
  same turn as without the pre-response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from livekit import rtc
from livekit.agents import APIConnectOptions, Agent, llm
from livekit.agents.voice import ModelSettings, SpeechHandle
from livekit.agents.voice.events import AgentStateChangedEvent, ConversationItemAddedEvent, ErrorEvent, SpeechCreatedEvent
from livekit.agents.voice.transcription.text_transforms import _apply_text_transforms

from .decision import Candidate, Decision, History, LatencyEstimator, Options, Turn, decide, normalize
from .preresponse import (
    FillerCache,
    LatencyLog,
    OpeningStripper,
    PreResponseOptions,
    cached_phrases,
    clean_filler,
    filler_context,
    frames_of,
    generate_filler_text,
)

logger = logging.getLogger("agent_worker.agent")

# The fast LLM's filler is useless after about a second: no retries, and a short timeout.
FAST_LLM_CONN_OPTIONS = APIConnectOptions(max_retry=0, timeout=1.0)
SECONDS_PER_WORD = 0.35  # expected length of a spoken word, for phrases not yet synthesized
# Priors for the live estimate before the session's first request (Groq 70B p95 and Aura-2 median).
LLM_TTFT_PRIOR, TTS_TTFB_PRIOR = 0.4, 0.313


class PreResponseObserver(Protocol):
    def on_preresponse(self, outcome: str, latency: float | None) -> None: ...

    def on_answer(self, outcome: str, recovered: bool) -> None: ...


FillerAnnouncer = Callable[[str], object]

# The participant attribute the worker sets to the filler's text when it starts to play.
FILLER_ATTRIBUTE = "agent_worker.filler"


@dataclass
class TurnRecord:
    """What the caller experienced in one turn (wall-clock seconds, time.time())."""

    transcript: str
    committed_at: float
    stopped_speaking_at: float | None
    decision: Decision | None = None
    filler_outcome: str | None = None
    filler_text: str | None = None
    filler_audio_at: float | None = None
    answer_audio_at: float | None = None
    answer_text: str | None = None
    answer_outcome: str | None = None
    recovered: bool = False


@dataclass
class _Request:
    started_at: float
    first_token_at: float | None = None
    first_token: asyncio.Event = field(default_factory=asyncio.Event)
    failed: bool = False
    empty: bool = False
    only_the_filler: bool = False  # the whole answer repeated the filler, which the caller heard


class PreResponseAgent(Agent):
    def __init__(
        self,
        *,
        instructions: str,
        fast_llm: llm.LLM | None,
        options: PreResponseOptions | None = None,
        observer: PreResponseObserver | None = None,
        announce_filler: FillerAnnouncer | None = None,
        fast_conn_options: APIConnectOptions = FAST_LLM_CONN_OPTIONS,
    ) -> None:
        """`announce_filler(text)` is called when a filler starts to play (the worker publishes it
        to the room, so a listener can tell the filler from the answer)."""
        super().__init__(instructions=instructions)
        self._fast_llm = fast_llm
        self._options = options or PreResponseOptions()
        self._decision_options = self._options.decision
        self._observer = observer
        self._announce_filler = announce_filler
        self._fast_conn_options = fast_conn_options
        self.estimator = LatencyEstimator(llm_prior=LLM_TTFT_PRIOR, tts_prior=TTS_TTFB_PRIOR)
        self._cache: FillerCache | None = None
        self._latency_log: LatencyLog | None = None
        self._requests: dict[str, _Request] = {}
        self._prepared: dict[str, asyncio.Task[str | None]] = {}
        self._answer_audio_for: str | None = None
        self._spoken: dict[str, str] = {}  # transcript key -> the filler said for it
        self._previous_filler: str | None = None
        self._last_filler_at: float | None = None
        self._filler_handle: SpeechHandle | None = None
        self._reply_handle: SpeechHandle | None = None
        self._own_speech: list[SpeechHandle] = []
        self._unrecoverable = {"llm_error": 0, "tts_error": 0}
        self._llm_error_at: float | None = None
        self.turns: list[TurnRecord] = []

    @property
    def preresponse_enabled(self) -> bool:
        return self._options.enabled and (self._fast_llm is not None or self._options.use_cache)

    @property
    def filler_cache(self) -> FillerCache | None:
        return self._cache

    async def on_enter(self) -> None:
        session = self.session
        session.on("speech_created", self._on_speech_created)
        session.on("conversation_item_added", self._on_item_added)
        session.on("agent_state_changed", self._on_agent_state)
        session.on("error", self._on_error)
        if session.tts is not None:
            session.tts.on("metrics_collected", self._on_tts_metrics)
        if self._options.enabled and self._options.use_cache and session.tts is not None:
            self._cache = FillerCache(session.tts, cached_phrases(self._options), self._options.cache_dir)
            self._cache.warm().add_done_callback(self._seed_tts_estimate)
        if self._options.enabled and session.llm is not None:
            main = session.llm
            self._latency_log = LatencyLog(self._options.cache_dir, f"{main.provider}|{main.model}|{_base_url(main)}")
            for seconds in self._latency_log.recent():  # the pod's earlier calls: this session's first samples
                self.estimator.observe_llm_ttft(seconds)

    async def on_exit(self) -> None:
        session = self.session
        session.off("speech_created", self._on_speech_created)
        session.off("conversation_item_added", self._on_item_added)
        session.off("agent_state_changed", self._on_agent_state)
        session.off("error", self._on_error)
        if session.tts is not None:
            session.tts.off("metrics_collected", self._on_tts_metrics)
        self._drop_prepared()

    # --- the main answer's nodes ---------------------------------------------------------

    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterator[Any]:
        last = chat_ctx.items[-1] if chat_ctx.items else None
        spoken_turn = self.session.input.audio is not None and self.session.input.audio_enabled
        key = None
        if spoken_turn and isinstance(last, llm.ChatMessage) and last.role == "user":
            key = normalize(last.text_content or "")
            self._prepare(key, chat_ctx)
        request = _Request(time.time())
        if key is not None:
            self._requests = {key: request}
        try:
            async for chunk in self._answer_chunks(chat_ctx, tools, model_settings, key, request):
                yield chunk
        except Exception:
            request.failed = True
            request.first_token.set()  # nothing more to wait for
            raise
        if request.first_token_at is None:  # an empty answer: no token will come either
            request.empty = True
            request.first_token.set()

    async def _answer_chunks(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings, key: str | None, request: _Request
    ) -> AsyncIterator[Any]:
        opening: OpeningStripper | None = None
        opening_kept = False
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            text = chunk.delta.content if isinstance(chunk, llm.ChatChunk) and chunk.delta else None
            if text and request.first_token_at is None:
                request.first_token_at = time.time()
                request.first_token.set()
                self.estimator.observe_llm_ttft(request.first_token_at - request.started_at)
                if self._latency_log is not None:  # file I/O: off the loop, the answer is streaming
                    asyncio.get_running_loop().run_in_executor(None, self._latency_log.add, request.first_token_at - request.started_at)
                if key is not None and key in self._spoken:
                    opening = OpeningStripper(self._spoken[key])
            if opening is not None and text and not (chunk.delta and chunk.delta.tool_calls):
                if kept := opening.feed(text):
                    opening_kept = True
                    yield kept
                continue
            yield chunk
        if opening is not None and (rest := opening.flush()):
            opening_kept = True
            yield rest
        request.only_the_filler = opening is not None and not opening_kept

    async def tts_node(self, text: AsyncIterable[str], model_settings: ModelSettings) -> AsyncIterator[rtc.AudioFrame]:
        # Only answers come here: fillers and the recovery line bring their own audio.
        key = next(iter(self._requests), None)
        first = True
        async for frame in Agent.default.tts_node(self, text, model_settings):
            if first:
                first = False
                self._answer_audio_for = key
            yield frame

    # --- the pre-response ----------------------------------------------------------------

    async def on_user_turn_completed(self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage) -> None:
        transcript = new_message.text_content or ""
        now = time.time()
        stopped = (new_message.metrics or {}).get("stopped_speaking_at")
        record = TurnRecord(transcript, committed_at=now, stopped_speaking_at=stopped)
        self.turns.append(record)
        if not self.preresponse_enabled:
            return
        key = normalize(transcript)
        decision = self._decide(record, key)
        self._drop_prepared(keep=key if decision.recheck_at is not None else None)
        if not decision.speak and decision.recheck_at is None:
            self._finish(record, decision.outcome, None)
            return
        self._hold_filler(record, key, decision)

    def _decide(self, record: TurnRecord, key: str) -> Decision:
        request = self._requests.get(key)
        now = time.time()
        turn = Turn(
            record.transcript, now=now, speech_ended_at=record.stopped_speaking_at or record.committed_at,
            llm_started_at=request.started_at if request else None,
            llm_first_token_at=request.first_token_at if request else None,
            answer_audio_ready=self._answer_audio_for == key,
            answer_failed=(request.failed or request.empty) if request else False,
        )
        history = History(self._previous_filler, self._last_filler_at)
        decision = decide(turn, self.estimator.estimate(), history, self._candidates(key), self._decision_options)
        record.decision = decision
        return decision

    def _hold_filler(self, record: TurnRecord, key: str, decision: Decision) -> None:
        """Reserve the filler's place ahead of the answer: it speaks at once, or, while the main
        LLM's first token is still due, when a new decision says the answer is late. A slot that
        stays silent ends without a sound and the answer queued behind it plays at once."""
        chosen: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        async def text() -> AsyncIterator[str]:
            if (said := await asyncio.shield(chosen)) is not None:
                yield said

        try:
            handle = self.session.say(text(), audio=self._filler_audio(record, key, decision, chosen), add_to_chat_ctx=True)
        except RuntimeError:  # the session is closing: the answer path decides what happens
            self._finish(record, "failed", None)
            return
        self._own_speech = [h for h in self._own_speech if not h.done()] + [handle]
        self._filler_handle = handle
        handle.add_done_callback(lambda h: self._on_filler_done(h, record, chosen))

    async def _filler_audio(
        self, record: TurnRecord, key: str, decision: Decision, chosen: asyncio.Future[str | None]
    ) -> AsyncIterator[rtc.AudioFrame]:
        try:
            while not decision.speak and decision.recheck_at is not None:
                request = self._requests.get(key)
                waits = [asyncio.ensure_future(asyncio.sleep(max(0.0, decision.recheck_at - time.time())))]
                if request is not None:
                    waits.append(asyncio.ensure_future(request.first_token.wait()))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
                decision = self._decide(record, key)
            self._drop_prepared()
            if not decision.speak or decision.phrase is None:
                chosen.set_result(None)
                return
            phrase = decision.phrase.text
            self._spoken = {key: phrase}
            self._previous_filler, self._last_filler_at = phrase, time.time()
            record.filler_text = phrase
            clip = self._cache.get(phrase) if self._cache else None
            audio = frames_of(clip) if clip is not None else self._synthesized(phrase)
            chosen.set_result(phrase)
            async for frame in audio:
                if record.filler_audio_at is None:
                    record.filler_audio_at = time.time()
                    if self._announce_filler is not None:
                        self._announce_filler(phrase)
                yield frame
        finally:
            if not chosen.done():
                chosen.set_result(None)

    def _candidates(self, key: str) -> list[Candidate]:
        """The fast LLM's phrase when it is ready and safe, then the stock phrases, starting after
        the previous filler so the wording rotates."""
        out: list[Candidate] = []
        task = self._prepared.get(key)
        text = task.result() if task is not None and task.done() and not task.cancelled() and task.exception() is None else None
        if text:
            clip = self._cache.get(text) if self._cache else None
            ttfb = self.estimator.estimate().tts_ttfb
            out.append(Candidate(text, "fast_llm", 0.0 if clip else ttfb, clip.duration if clip else SECONDS_PER_WORD * len(text.split())))
        if self._cache is not None:
            phrases = list(self._options.stock_phrases)
            previous = normalize(self._previous_filler) if self._previous_filler else None
            start = next((i + 1 for i, p in enumerate(phrases) if normalize(p) == previous), 0)
            for phrase in phrases[start:] + phrases[:start]:
                if (clip := self._cache.get(phrase)) is not None:
                    out.append(Candidate(phrase, "stock", 0.0, clip.duration))
        return out

    async def _synthesized(self, text: str) -> AsyncIterator[rtc.AudioFrame]:
        """A phrase not in the cache: through the session's TTS text transforms, each frame as
        soon as it is synthesized."""

        async def words() -> AsyncIterator[str]:
            yield text

        stream: AsyncIterable[str] = words()
        if transforms := self.session.options.tts_text_transforms:
            stream = _apply_text_transforms(stream, transforms)
        async for frame in Agent.default.tts_node(self, stream, ModelSettings()):
            yield frame

    def _on_filler_done(self, handle: SpeechHandle, record: TurnRecord, chosen: asyncio.Future[str | None]) -> None:
        started = record.filler_audio_at is not None
        if handle.interrupted:
            outcome = "interrupted"
        elif started:
            outcome = "spoken"
        elif record.decision is not None and not record.decision.speak:
            outcome = record.decision.outcome
        else:
            outcome = "failed"
        if handle.interrupted and self._reply_handle is not None and not self._reply_handle.done():
            self._reply_handle.interrupt(force=True)  # barge-in on the filler stops the answer too
        latency = None
        if started and record.stopped_speaking_at is not None:
            latency = record.filler_audio_at - record.stopped_speaking_at  # type: ignore[operator]
        self._finish(record, outcome, latency)

    def _finish(self, record: TurnRecord, outcome: str, latency: float | None) -> None:
        record.filler_outcome = outcome
        expected = record.decision.answer_expected_after if record.decision else None
        committed = record.committed_at - record.stopped_speaking_at if record.stopped_speaking_at else None
        logger.info("pre-response %s: %s%s%s", outcome,
                    f"turn committed {committed:.3f} s after the end of speech, " if committed is not None else "",
                    f"filler {record.filler_text!r} at {latency:.3f} s" if latency is not None else "no filler",
                    f", answer expected {expected:.3f} s after it" if expected is not None else "")
        if self._observer is not None:
            self._observer.on_preresponse(outcome, latency)

    # --- the fast LLM --------------------------------------------------------------------

    def _prepare(self, key: str, chat_ctx: llm.ChatContext) -> None:
        """Start the fast LLM's text once per transcript, as early as the main answer."""
        if self._fast_llm is None or not self._options.enabled or key in self._prepared:
            return
        if len(key.split()) < self._decision_options.min_words:
            return
        self._drop_prepared()
        task = asyncio.get_running_loop().create_task(self._filler_text(chat_ctx), name="PreResponseAgent.filler_text")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._prepared[key] = task

    def _drop_prepared(self, keep: str | None = None) -> None:
        for key, stale in self._prepared.items():
            if key != keep:
                stale.cancel()
        self._prepared = {key: task for key, task in self._prepared.items() if key == keep}

    async def _filler_text(self, chat_ctx: llm.ChatContext) -> str | None:
        assert self._fast_llm is not None
        previous = self._previous_filler
        raw = await generate_filler_text(
            self._fast_llm, filler_context(chat_ctx, self._options, previous),
            max_words=self._options.max_words, conn_options=self._fast_conn_options,
        )
        return clean_filler(raw, max_words=self._options.max_words, previous=previous)

    # --- answers, failures and session events --------------------------------------------

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        if ev.source == "generate_reply":  # a preemptive answer is created before its turn is committed
            self._reply_handle = ev.speech_handle
            ev.speech_handle.add_done_callback(self._on_answer_done)

    def _on_answer_done(self, handle: SpeechHandle) -> None:
        if not handle.scheduled or not self.turns:  # a discarded preemptive answer
            return
        record = self.turns[-1]
        if record.answer_outcome is not None:
            return
        said = "".join(
            item.text_content or "" for item in handle.chat_items if isinstance(item, llm.ChatMessage) and item.role == "assistant"
        )
        request = self._requests.get(normalize(record.transcript))
        if handle.interrupted:
            outcome = "interrupted"
        elif said.strip() or (request is not None and request.only_the_filler):
            outcome = "answered"
        else:
            failed = self._llm_error_at is not None and self._llm_error_at >= (record.stopped_speaking_at or record.committed_at) - 1.0
            outcome = "failed" if failed else "empty"
        record.answer_outcome = outcome
        if outcome in ("failed", "empty") and record.filler_outcome == "spoken":
            record.recovered = self._say_recovery()
        if self._observer is not None:
            self._observer.on_answer(outcome, record.recovered)

    def _say_recovery(self) -> bool:
        line = self._options.recovery_line
        clip = self._cache.get(line) if self._cache else None
        try:
            handle = self.session.say(line, audio=frames_of(clip) if clip else self._synthesized(line), add_to_chat_ctx=True)
        except RuntimeError:
            return False
        self._own_speech = [h for h in self._own_speech if not h.done()] + [handle]
        return True

    def _on_error(self, ev: ErrorEvent) -> None:
        kind = getattr(ev.error, "type", None)
        if kind in self._unrecoverable and not getattr(ev.error, "recoverable", True):
            self._unrecoverable[kind] += 1
        if kind == "llm_error":
            self._llm_error_at = time.time()

    def _on_agent_state(self, ev: AgentStateChangedEvent) -> None:
        """livekit has just reset its unrecoverable-error counters because the agent speaks. For
        the agent's own filler or recovery line, put them back (livekit 1.8.9 has no public API for
        this); an answer resets them, as livekit intends."""
        if ev.new_state != "speaking":
            return
        speech = self.session.current_speech
        if speech is not None and any(speech is own for own in self._own_speech):
            self.session._llm_error_counts = self._unrecoverable["llm_error"]
            self.session._tts_error_counts = self._unrecoverable["tts_error"]
        else:
            self._unrecoverable = {"llm_error": 0, "tts_error": 0}

    def _on_tts_metrics(self, ev: Any) -> None:
        if getattr(ev, "ttfb", -1) >= 0:
            self.estimator.observe_tts_ttfb(ev.ttfb)

    def _seed_tts_estimate(self, task: asyncio.Task[None]) -> None:
        """The stock phrases' synthesis times are the session's first TTS samples."""
        if task.cancelled() or task.exception() is not None or self._cache is None:
            return
        for phrase in self._cache.phrases:
            if (clip := self._cache.get(phrase)) is not None:
                self.estimator.observe_tts_ttfb(clip.ttfb)

    def _on_item_added(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or item.role != "assistant" or not self.turns:
            return
        if any(own is not None and any(i is item for i in own.chat_items) for own in self._own_speech):
            return
        record = self.turns[-1]
        if record.answer_audio_at is None:
            record.answer_audio_at = (item.metrics or {}).get("started_speaking_at")
            record.answer_text = item.text_content


def _base_url(model: llm.LLM) -> str:
    """Where an OpenAI-compatible model is served (two endpoints of one model name can differ)."""
    client = getattr(model, "_client", None)
    return str(getattr(client, "base_url", "") or "")
