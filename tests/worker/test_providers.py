"""Providers are built from Settings; fallback chains keep each member's own labels."""

from __future__ import annotations

from livekit.agents import llm

from agent_worker.config import load_settings
from agent_worker.providers import FAST_LLM_MAX_TOKENS, build_components, build_llm_chain


def test_defaults_are_groq_70b_main_8b_fast_deepgram_nova3_openai_tts1(keyed_env):
    parts = build_components(load_settings(), vad_instance=object())  # type: ignore[arg-type]
    assert [(m.provider, m.model) for m in parts.main.members] == [("groq", "llama-3.3-70b-versatile")]
    assert [(m.provider, m.model) for m in parts.fast.members] == [("groq", "llama-3.1-8b-instant")]
    assert (parts.stt.members[0].provider, parts.stt.instance.model) == ("deepgram", "nova-3")
    assert (parts.tts.members[0].provider, parts.tts.instance.model) == ("openai", "tts-1")


def test_fallback_chain_becomes_a_fallback_adapter_in_order(keyed_env):
    keyed_env.setenv("AGENT_LLM_FALLBACK", "ollama:llama3.1:70b,openai:gpt-4.1")
    chain = build_llm_chain(load_settings(), "main")
    assert isinstance(chain.instance, llm.FallbackAdapter)
    assert [(m.provider, m.model) for m in chain.members] == [
        ("groq", "llama-3.3-70b-versatile"), ("ollama", "llama3.1:70b"), ("openai", "gpt-4.1")
    ]
    assert [m.instance.model for m in chain.members] == ["llama-3.3-70b-versatile", "llama3.1:70b", "gpt-4.1"]


def test_ollama_uses_its_openai_compatible_endpoint_and_needs_no_key(clean_env):
    for name, value in {"AGENT_LLM_PROVIDER": "ollama", "AGENT_FAST_LLM_PROVIDER": "ollama", "DEEPGRAM_API_KEY": "d", "OPENAI_API_KEY": "o"}.items():
        clean_env.setenv(name, value)
    main = build_llm_chain(load_settings(), "main").members[0].instance
    assert main.model == "llama3.1:70b"
    assert str(main._client.base_url) == "http://127.0.0.1:11434/v1/"


def test_fast_llm_is_capped_at_a_few_tokens(keyed_env):
    fast = build_llm_chain(load_settings(), "fast").instance
    assert fast._opts.max_completion_tokens == FAST_LLM_MAX_TOKENS


def test_no_fast_llm_is_built_when_preresponse_is_off(keyed_env):
    keyed_env.setenv("AGENT_PRERESPONSE_ENABLED", "false")
    assert build_components(load_settings(), vad_instance=object()).fast is None  # type: ignore[arg-type]
