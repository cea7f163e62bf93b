"""Published prices used to turn usage into USD, overridable with AGENT_PRICES.

Every default below cites where and when it was published. Prices change: an operator who
pays something else (a negotiated rate, a new list price) sets AGENT_PRICES, e.g.
`{"groq/llama-3.3-70b-versatile": {"inputPerMillionTokens": 0.59, "outputPerMillionTokens": 0.79}}`.
A model with no price anywhere is recorded with zero cost and one warning per process.
Imports nothing from livekit: the operator uses it too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from .config import ModelPrice

logger = logging.getLogger("agent_worker.pricing")

CostKind = Literal["input", "cached_input", "output", "audio", "characters"]

DEFAULT_PRICES: dict[str, ModelPrice] = {
    # Groq on-demand list prices, groq.com/pricing, as recorded in our field notes on 2026-11-24.
    "groq/llama-3.1-8b-instant": ModelPrice(input_per_million_tokens=0.05, output_per_million_tokens=0.08),
    "groq/llama-3.3-70b-versatile": ModelPrice(input_per_million_tokens=0.59, output_per_million_tokens=0.79),
    # OpenAI API list prices, openai.com/api/pricing, as published at the GPT-4.1 launch (2025-04-14).
    "openai/gpt-4.1": ModelPrice(
        input_per_million_tokens=2.00, cached_input_per_million_tokens=0.50, output_per_million_tokens=8.00
    ),
    "openai/gpt-4.1-nano": ModelPrice(
        input_per_million_tokens=0.10, cached_input_per_million_tokens=0.025, output_per_million_tokens=0.40
    ),
    # OpenAI speech list prices, openai.com/api/pricing, as recorded in our field notes on 2026-11-24.
    "openai/tts-1": ModelPrice(per_million_characters=15.00),
    "openai/tts-1-hd": ModelPrice(per_million_characters=30.00),
    # openai.com/api/pricing, gpt-4o-mini-transcribe estimated cost per minute (2025-03-20 launch).
    "openai/gpt-4o-mini-transcribe": ModelPrice(per_audio_minute=0.003),
    # Deepgram Nova-3 streaming, deepgram.com/pricing: published figures range $0.0043-0.0059 per
    # minute (field notes, 2026-11-24); we use the higher one so cost is not under-reported.
    "deepgram/nova-3": ModelPrice(per_audio_minute=0.0059),
    # Ollama runs on your own hardware: no per-token price (set AGENT_PRICES to charge GPU time).
    "ollama/llama3.1:70b": ModelPrice(input_per_million_tokens=0.0, output_per_million_tokens=0.0),
    "ollama/llama3.1:8b": ModelPrice(input_per_million_tokens=0.0, output_per_million_tokens=0.0),
}


@dataclass(frozen=True)
class Cost:
    kind: CostKind
    usd: float


class PriceTable:
    """Defaults merged with overrides; an override replaces a model's whole entry."""

    def __init__(self, overrides: dict[str, ModelPrice] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **(overrides or {})}
        self._warned: set[str] = set()

    def price(self, provider: str, model: str) -> ModelPrice | None:
        key = f"{provider}/{model}"
        found = self._prices.get(key)
        if found is None and key not in self._warned:
            self._warned.add(key)
            logger.warning("no price for %s: its cost is recorded as 0; set AGENT_PRICES to price it", key)
        return found

    def llm_costs(self, provider: str, model: str, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> list[Cost]:
        """Cost of one LLM request. `prompt_tokens` includes the cached ones (OpenAI's convention)."""
        price = self.price(provider, model) or ModelPrice()
        input_rate = price.input_per_million_tokens or 0.0
        cached_rate = price.cached_input_per_million_tokens
        cached_rate = input_rate if cached_rate is None else cached_rate
        return [
            Cost("input", (prompt_tokens - cached_tokens) * input_rate / 1e6),
            Cost("cached_input", cached_tokens * cached_rate / 1e6),
            Cost("output", completion_tokens * (price.output_per_million_tokens or 0.0) / 1e6),
        ]

    def stt_cost(self, provider: str, model: str, *, audio_seconds: float) -> Cost:
        price = self.price(provider, model) or ModelPrice()
        return Cost("audio", audio_seconds / 60 * (price.per_audio_minute or 0.0))

    def tts_cost(self, provider: str, model: str, *, characters: int) -> Cost:
        price = self.price(provider, model) or ModelPrice()
        return Cost("characters", characters * (price.per_million_characters or 0.0) / 1e6)
