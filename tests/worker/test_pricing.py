"""Prices: published defaults, per-kind cost arithmetic, configuration overrides."""

from __future__ import annotations

import logging

import pytest

from agent_worker.config import ModelPrice
from agent_worker.pricing import DEFAULT_PRICES, PriceTable


def test_groq_defaults_are_the_published_per_million_token_prices():
    assert DEFAULT_PRICES["groq/llama-3.3-70b-versatile"] == ModelPrice(input_per_million_tokens=0.59, output_per_million_tokens=0.79)
    assert DEFAULT_PRICES["groq/llama-3.1-8b-instant"] == ModelPrice(input_per_million_tokens=0.05, output_per_million_tokens=0.08)


def test_llm_cost_is_tokens_times_price_with_cached_tokens_at_the_cached_rate():
    costs = PriceTable().llm_costs("openai", "gpt-4.1", prompt_tokens=1_000_000, cached_tokens=200_000, completion_tokens=500_000)
    assert {c.kind: c.usd for c in costs} == pytest.approx({"input": 0.8 * 2.00, "cached_input": 0.2 * 0.50, "output": 0.5 * 8.00})


def test_cached_tokens_cost_the_input_rate_when_no_cached_rate_is_published():
    costs = PriceTable().llm_costs("groq", "llama-3.3-70b-versatile", prompt_tokens=1000, cached_tokens=400, completion_tokens=0)
    assert {c.kind: c.usd for c in costs}["cached_input"] == pytest.approx(400 * 0.59 / 1e6)


def test_stt_costs_per_audio_minute_and_tts_per_character():
    table = PriceTable()
    assert table.stt_cost("deepgram", "nova-3", audio_seconds=90).usd == pytest.approx(1.5 * 0.0059)
    assert table.tts_cost("openai", "tts-1", characters=2000).usd == pytest.approx(2000 * 15 / 1e6)


def test_an_override_replaces_the_whole_entry_for_that_model():
    table = PriceTable({"groq/llama-3.3-70b-versatile": ModelPrice(output_per_million_tokens=1.0)})
    costs = table.llm_costs("groq", "llama-3.3-70b-versatile", prompt_tokens=1_000_000, cached_tokens=0, completion_tokens=1_000_000)
    assert {c.kind: c.usd for c in costs} == {"input": 0.0, "cached_input": 0.0, "output": 1.0}


def test_an_unpriced_model_costs_nothing_and_warns_once(caplog):
    table = PriceTable()
    with caplog.at_level(logging.WARNING, logger="agent_worker.pricing"):
        for _ in range(3):
            assert table.tts_cost("acme", "voice-9", characters=100).usd == 0.0
    assert [r.getMessage() for r in caplog.records] == [
        "no price for acme/voice-9: its cost is recorded as 0; set AGENT_PRICES to price it"
    ]
