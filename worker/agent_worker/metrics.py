"""Per-session recording: Prometheus metrics, usage, cost, and the session's JSON log line.

A `SessionRecorder` lives in the job process that serves one session. It listens to the
per-component `metrics_collected`/`error` events of every provider instance (each fallback
member separately, so usage lands under the model that really served it, and the fast LLM
under role "fast"), and to the session's `conversation_item_added` for per-turn latencies
(`ChatMessage.metrics`). Each event is counted exactly once: events carry per-request usage,
never running totals.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter as Tally
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from . import metric_names as names
from .pricing import Cost, PriceTable

logger = logging.getLogger("agent_worker.metrics")
session_logger = logging.getLogger("agent_worker.session")


def _create(metric: names.Metric) -> MetricWrapperBase:
    if metric.kind == "counter":
        return Counter(metric.name, metric.help, metric.labels)
    if metric.kind == "gauge":
        # livesum: the gauge is the sum over live processes; a dead job process's share is dropped.
        return Gauge(metric.name, metric.help, metric.labels, multiprocess_mode="livesum")
    return Histogram(metric.name, metric.help, metric.labels, buckets=names.LATENCY_BUCKETS)


_BY_NAME = {metric.name: metric for metric in names.CATALOGUE}
# Created at first use, not at import: livekit empties PROMETHEUS_MULTIPROC_DIR when the worker
# starts, after this module is imported, and a metric without labels opens its process's file when
# it is created. With calls as threads (AGENT_JOB_EXECUTOR=thread) the worker's own process records
# them, and values written to a file livekit had already deleted would never be served.
_created: dict[str, MetricWrapperBase] = {}
_creating = threading.Lock()  # the calls' threads may ask for the same metric at once


def _metric(short_name: str, **labels: str) -> Any:
    name = short_name if short_name.startswith(names.PREFIX) else names.PREFIX + short_name
    with _creating:
        if name not in _created:
            _created[name] = _create(_BY_NAME[name])
        metric = _created[name]
    return metric.labels(**labels) if labels else metric


@dataclass
class ModelUsage:
    role: str
    provider: str
    model: str
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    characters: int = 0

    def as_dict(self) -> dict[str, Any]:
        fields = {"role": self.role, "provider": self.provider, "model": self.model, "requests": self.requests}
        if self.role in ("main", "fast"):
            fields |= {"prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens, "completion_tokens": self.completion_tokens}
        elif self.role == "stt":
            fields["audio_seconds"] = round(self.audio_seconds, 3)
        else:
            fields["characters"] = self.characters
        return fields


class SessionRecorder:
    """Metrics, usage and cost of one session; `finish()` logs the session's JSON line."""

    def __init__(self, prices: PriceTable, *, room: str = "") -> None:
        self._prices = prices
        self._room = room
        self._usage: dict[tuple[str, str, str], ModelUsage] = {}
        self._costs: dict[tuple[str, str, str], float] = defaultdict(float)
        self._preresponses: Tally[str] = Tally()
        self._answers: Tally[str] = Tally()
        self.recoveries = 0
        self.turns = 0
        self.interruptions = 0
        self._started_at: float | None = None
        self._finished = False

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._started_at = time.time()
        _metric("sessions").inc()
        _metric(names.ACTIVE_SESSIONS).inc()

    def finish(self, reason: str = "") -> dict[str, Any]:
        """Close the session's books (idempotent) and log one JSON line with usage and cost."""
        summary = self.summary(reason)
        if not self._finished and self._started_at is not None:
            self._finished = True
            _metric(names.ACTIVE_SESSIONS).dec()
            session_logger.info(json.dumps(summary, sort_keys=True))
        return summary

    def summary(self, reason: str = "") -> dict[str, Any]:
        by_model = [
            {"provider": provider, "model": model, "kind": kind, "usd": round(usd, 9)}
            for (provider, model, kind), usd in sorted(self._costs.items())
        ]
        return {
            "event": "session_finished",
            "room": self._room,
            "reason": reason,
            "duration_seconds": round(time.time() - (self._started_at or time.time()), 3),
            "turns": self.turns,
            "interruptions": self.interruptions,
            "preresponses": dict(self._preresponses),
            "answers": dict(self._answers),
            "recoveries": self.recoveries,
            "usage": [usage.as_dict() for usage in self._usage.values()],
            "cost_usd": {"total": round(sum(self._costs.values()), 9), "by_model": by_model},
        }

    # --- providers -----------------------------------------------------------------------

    def watch_llm(self, instance: Any, *, role: str, provider: str, model: str) -> None:
        instance.on("metrics_collected", lambda ev: self.on_llm_metrics(ev, role=role, provider=provider, model=model))
        instance.on("error", lambda ev: self.on_provider_error(ev, role=role, provider=provider, model=model))

    def watch_stt(self, instance: Any, *, provider: str, model: str) -> None:
        instance.on("metrics_collected", lambda ev: self.on_stt_metrics(ev, provider=provider, model=model))
        instance.on("error", lambda ev: self.on_provider_error(ev, role="stt", provider=provider, model=model))

    def watch_tts(self, instance: Any, *, provider: str, model: str) -> None:
        instance.on("metrics_collected", lambda ev: self.on_tts_metrics(ev, provider=provider, model=model))
        instance.on("error", lambda ev: self.on_provider_error(ev, role="tts", provider=provider, model=model))

    def on_llm_metrics(self, ev: Any, *, role: str, provider: str, model: str) -> None:
        labels = {"provider": provider, "model": model, "role": role}
        usage = self._usage_for(role, provider, model)
        usage.requests += 1
        usage.prompt_tokens += ev.prompt_tokens
        usage.cached_tokens += ev.prompt_cached_tokens
        usage.completion_tokens += ev.completion_tokens
        _metric("llm_prompt_tokens", **labels).inc(ev.prompt_tokens)
        _metric("llm_cached_tokens", **labels).inc(ev.prompt_cached_tokens)
        _metric("llm_completion_tokens", **labels).inc(ev.completion_tokens)
        if ev.ttft >= 0:
            _metric("llm_ttft_seconds", **labels).observe(ev.ttft)
        _metric("llm_duration_seconds", **labels).observe(ev.duration)
        costs = self._prices.llm_costs(
            provider, model, prompt_tokens=ev.prompt_tokens, cached_tokens=ev.prompt_cached_tokens, completion_tokens=ev.completion_tokens
        )
        self._add_costs(provider, model, costs)

    def on_stt_metrics(self, ev: Any, *, provider: str, model: str) -> None:
        usage = self._usage_for("stt", provider, model)
        usage.requests += 1
        usage.audio_seconds += ev.audio_duration
        _metric("stt_audio_seconds", provider=provider, model=model).inc(ev.audio_duration)
        _metric("stt_duration_seconds", provider=provider, model=model).observe(ev.duration)
        self._add_costs(provider, model, [self._prices.stt_cost(provider, model, audio_seconds=ev.audio_duration)])

    def on_tts_metrics(self, ev: Any, *, provider: str, model: str) -> None:
        usage = self._usage_for("tts", provider, model)
        usage.requests += 1
        usage.characters += ev.characters_count
        _metric("tts_characters", provider=provider, model=model).inc(ev.characters_count)
        if ev.ttfb >= 0:
            _metric("tts_ttfb_seconds", provider=provider, model=model).observe(ev.ttfb)
        self._add_costs(provider, model, [self._prices.tts_cost(provider, model, characters=ev.characters_count)])

    def on_provider_error(self, ev: Any, *, role: str, provider: str, model: str) -> None:
        recoverable = str(bool(getattr(ev, "recoverable", False))).lower()
        _metric("provider_errors", provider=provider, model=model, role=role, recoverable=recoverable).inc()

    # --- conversation --------------------------------------------------------------------

    def on_conversation_item(self, item: Any) -> None:
        """A message entered the history: its `metrics` carry the turn's latencies."""
        metrics = getattr(item, "metrics", None) or {}
        role = getattr(item, "role", None)
        if role == "user":
            if (delay := metrics.get("end_of_turn_delay")) is not None:
                _metric("end_of_utterance_delay_seconds").observe(delay)
            if (delay := metrics.get("transcription_delay")) is not None:
                _metric("transcription_delay_seconds").observe(delay)
        elif role == "assistant" and "e2e_latency" in metrics:
            # Only answers carry e2e_latency (the pre-response is spoken with `say`).
            self.turns += 1
            _metric("turns").inc()
            _metric("turn_latency_seconds").observe(metrics["e2e_latency"])
            if item.interrupted:
                self.interruptions += 1
                _metric("interruptions").inc()

    def on_preresponse(self, outcome: str, latency: float | None) -> None:
        self._preresponses[outcome] += 1
        _metric("preresponses", outcome=outcome).inc()
        if latency is not None:
            _metric("preresponse_latency_seconds").observe(latency)

    def on_answer(self, outcome: str, recovered: bool) -> None:
        self._answers[outcome] += 1
        _metric("answers", outcome=outcome).inc()
        if recovered:
            self.recoveries += 1
            _metric("answer_recoveries").inc()

    # --- helpers -------------------------------------------------------------------------

    def _usage_for(self, role: str, provider: str, model: str) -> ModelUsage:
        key = (role, provider, model)
        if key not in self._usage:
            self._usage[key] = ModelUsage(role, provider, model)
        return self._usage[key]

    def _add_costs(self, provider: str, model: str, costs: list[Cost]) -> None:
        for cost in costs:
            if cost.usd > 0:
                self._costs[(provider, model, cost.kind)] += cost.usd
                _metric("cost_usd", provider=provider, model=model, kind=cost.kind).inc(cost.usd)
