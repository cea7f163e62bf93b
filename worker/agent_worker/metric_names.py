"""Every Prometheus metric the worker exports: name, type, labels and meaning.

The worker creates its metrics from this catalogue, the operator reads ACTIVE_SESSIONS from it,
and the README's metrics table is generated from it. Imports nothing.
Labels are bounded: provider, model, role (main|fast|stt|tts), kind, outcome. Never ids.
"""

from __future__ import annotations

from typing import NamedTuple

PREFIX = "agent_worker_"

# Gauge: LiveKit sessions (rooms) this worker pod is serving right now, summed over its job processes.
ACTIVE_SESSIONS = "agent_worker_active_sessions"


class Metric(NamedTuple):
    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str


LLM_LABELS = ("provider", "model", "role")
MODEL_LABELS = ("provider", "model")

CATALOGUE: tuple[Metric, ...] = (
    Metric(ACTIVE_SESSIONS, "gauge", (), "Sessions being served now, summed over live job processes"),
    Metric(PREFIX + "sessions", "counter", (), "Sessions started"),
    Metric(PREFIX + "turns", "counter", (), "User turns the agent answered"),
    Metric(PREFIX + "interruptions", "counter", (), "Agent answers the caller interrupted (barge-in)"),
    Metric(PREFIX + "provider_errors", "counter", ("provider", "model", "role", "recoverable"), "Errors raised by a provider"),
    Metric(PREFIX + "preresponses", "counter", ("outcome",), "Pre-response decisions by outcome: spoken, interrupted (barge-in), failed, skipped_trivial, skipped_answer_soon, skipped_answer_first, skipped_answer_failed, skipped_too_soon, skipped_no_phrase_fits"),
    Metric(PREFIX + "answers", "counter", ("outcome",), "Main answers by outcome: answered, interrupted, empty, failed"),
    Metric(PREFIX + "answer_recoveries", "counter", (), "Recovery lines spoken after an empty or failed answer that followed a filler"),
    Metric(PREFIX + "llm_prompt_tokens", "counter", LLM_LABELS, "LLM prompt tokens, cached ones included"),
    Metric(PREFIX + "llm_completion_tokens", "counter", LLM_LABELS, "LLM completion tokens"),
    Metric(PREFIX + "llm_cached_tokens", "counter", LLM_LABELS, "LLM prompt tokens served from the provider's cache"),
    Metric(PREFIX + "stt_audio_seconds", "counter", MODEL_LABELS, "Seconds of audio billed by speech-to-text"),
    Metric(PREFIX + "tts_characters", "counter", MODEL_LABELS, "Characters sent to text-to-speech"),
    Metric(PREFIX + "cost_usd", "counter", ("provider", "model", "kind"), "Spend in USD from the price table; kind: input, cached_input, output, audio, characters"),
    Metric(PREFIX + "end_of_utterance_delay_seconds", "histogram", (), "End of the caller's speech to the turn being committed"),
    Metric(PREFIX + "transcription_delay_seconds", "histogram", (), "End of the caller's speech to the final transcript"),
    Metric(PREFIX + "stt_duration_seconds", "histogram", MODEL_LABELS, "STT request duration (0 for streaming STT)"),
    Metric(PREFIX + "llm_ttft_seconds", "histogram", LLM_LABELS, "LLM time to first token"),
    Metric(PREFIX + "llm_duration_seconds", "histogram", LLM_LABELS, "LLM request duration"),
    Metric(PREFIX + "tts_ttfb_seconds", "histogram", MODEL_LABELS, "TTS time to first audio byte"),
    Metric(PREFIX + "turn_latency_seconds", "histogram", (), "End of the caller's speech to the first audio of the answer"),
    Metric(PREFIX + "preresponse_latency_seconds", "histogram", (), "End of the caller's speech to the first audio of the pre-response"),
)

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
