"""Build the LLM/STT/TTS/VAD instances a session uses, from Settings.

Each role is a chain: the configured provider first, then the configured fallbacks, joined
with livekit's FallbackAdapter when there is more than one. Every member is returned with its
(provider, model) so metrics and cost are attributed to the model that actually served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from livekit.agents import inference, llm, vad
from livekit.plugins import deepgram, groq, openai, silero

from .config import DEFAULT_BASE_URLS, ConfigError, Settings

# Keep the acknowledgement short at the source too (the agent also trims it).
FAST_LLM_MAX_TOKENS = 24


@dataclass
class Member:
    provider: str
    model: str
    instance: Any


@dataclass
class Chain:
    """One role's provider instance (a FallbackAdapter for several) and the members behind it."""

    instance: Any
    members: list[Member] = field(default_factory=list)


def build_llm_chain(settings: Settings, role: str) -> Chain:
    if role == "main":
        first = (settings.llm_provider, settings.llm_model, settings.llm_base_url)
        fallback = settings.llm_fallback
    else:
        first = (settings.fast_llm_provider, settings.fast_llm_model, settings.fast_llm_base_url)
        fallback = settings.fast_llm_fallback
    specs = [first] + [(entry.provider, entry.model, DEFAULT_BASE_URLS.get(entry.provider)) for entry in fallback]
    members = [Member(provider, str(model), _llm(settings, provider, str(model), base_url, role)) for provider, model, base_url in specs]
    if len(members) == 1:
        return Chain(members[0].instance, members)
    return Chain(llm.FallbackAdapter([m.instance for m in members]), members)


def _llm(settings: Settings, provider: str, model: str, base_url: str | None, role: str) -> llm.LLM:
    limit: dict[str, Any] = {"max_completion_tokens": FAST_LLM_MAX_TOKENS} if role == "fast" else {}
    if provider == "groq":
        kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
        return groq.LLM(model=model, api_key=settings.api_key("groq"), **kwargs, **limit)
    if provider == "ollama":
        # Ollama ignores max_completion_tokens; its OpenAI-compatible API reads max_tokens.
        extra = {"extra_body": {"max_tokens": FAST_LLM_MAX_TOKENS}} if role == "fast" else {}
        return openai.LLM(model=model, base_url=base_url or DEFAULT_BASE_URLS["ollama"], api_key="ollama", **extra)
    if provider == "openai":
        kwargs = {"base_url": base_url} if base_url else {}
        return openai.LLM(model=model, api_key=settings.api_key("openai") or "unused", **kwargs, **limit)
    raise ConfigError(f"unknown LLM provider {provider!r}; set one of groq, ollama, openai")


def build_stt(settings: Settings) -> Chain:
    model = str(settings.stt_model)
    kwargs: dict[str, Any] = {"base_url": settings.stt_base_url} if settings.stt_base_url else {}
    if settings.stt_provider == "deepgram":
        instance: Any = deepgram.STT(model=model, language=settings.stt_language, api_key=settings.api_key("deepgram"), **kwargs)
    else:
        instance = openai.STT(model=model, language=settings.stt_language, api_key=settings.api_key("openai") or "unused", **kwargs)
    return Chain(instance, [Member(settings.stt_provider, model, instance)])


def build_tts(settings: Settings) -> Chain:
    model = str(settings.tts_model)
    kwargs: dict[str, Any] = {"base_url": settings.tts_base_url} if settings.tts_base_url else {}
    instance = openai.TTS(model=model, voice=settings.tts_voice, api_key=settings.api_key("openai") or "unused", **kwargs)
    return Chain(instance, [Member(settings.tts_provider, model, instance)])


def build_vad(min_silence: float = 0.25) -> vad.VAD:
    """Silero VAD; its model ships inside the plugin's wheel, so this works offline. Its own
    minimum silence (0.55 s) would put a floor under every turn's end; see AGENT_VAD_MIN_SILENCE."""
    return silero.VAD.load(min_silence_duration=min_silence)


def build_turn_handling(settings: Settings) -> dict[str, Any]:
    """livekit's turn_handling from the worker's settings. Barge-in is VAD-based: no LiveKit
    Cloud inference unless the cloud turn detector is chosen."""
    detection: Any = "vad"
    if settings.turn_detector != "vad":
        detection = inference.TurnDetector(version="v1" if settings.turn_detector == "cloud" else "v1-mini")
    return {
        "turn_detection": detection,
        "endpointing": {
            "mode": settings.endpointing_mode,
            "min_delay": settings.endpointing_min_delay,
            "max_delay": settings.endpointing_max_delay,
        },
        "interruption": {"mode": "vad"},
        "preemptive_generation": {"enabled": settings.preemptive_generation, "preemptive_tts": settings.preemptive_tts},
    }


@dataclass
class Components:
    main: Chain
    fast: Chain | None
    stt: Chain
    tts: Chain
    vad: vad.VAD


def build_components(settings: Settings, vad_instance: vad.VAD | None = None) -> Components:
    return Components(
        main=build_llm_chain(settings, "main"),
        fast=build_llm_chain(settings, "fast") if settings.preresponse_enabled else None,
        stt=build_stt(settings),
        tts=build_tts(settings),
        vad=vad_instance or build_vad(settings.vad_min_silence),
    )


def watch(recorder: Any, components: Components) -> None:
    """Attach a SessionRecorder to every member of every chain."""
    for role, chain in (("main", components.main), ("fast", components.fast)):
        for member in chain.members if chain else []:
            recorder.watch_llm(member.instance, role=role, provider=member.provider, model=member.model)
    for member in components.stt.members:
        recorder.watch_stt(member.instance, provider=member.provider, model=member.model)
    for member in components.tts.members:
        recorder.watch_tts(member.instance, provider=member.provider, model=member.model)


