"""Ollama, built from source, serves the PyPI-shipped GGUF through its OpenAI-compatible API."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from openai import AsyncOpenAI

pytestmark = pytest.mark.testbed


def test_the_model_is_local_and_listed(model_server):
    native = model_server.base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{native}/api/tags", timeout=10) as response:
        models = {m["name"]: m for m in json.load(response)["models"]}

    assert f"{model_server.model}:latest" in models
    details = models[f"{model_server.model}:latest"]["details"]
    assert details["family"] == "gemma3"
    assert details["quantization_level"] == "Q4_K_M"


async def test_a_chat_completion_streams_token_by_token(model_server):
    client = AsyncOpenAI(base_url=model_server.base_url, api_key="ollama")
    started = time.monotonic()
    stream = await client.chat.completions.create(
        model=model_server.model, stream=True, max_tokens=24, temperature=0,
        messages=[{"role": "user", "content": "Count from one to ten."}],
    )
    arrivals, pieces, finish = [], [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason

    assert len(pieces) >= 3, pieces  # streamed, not one block
    assert "".join(pieces).strip()
    assert finish in ("stop", "length")
    assert arrivals[0] < arrivals[-1]  # the first token arrived before the last
