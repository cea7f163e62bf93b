"""Example VoiceAgent specs for the operator tests."""

from __future__ import annotations

import copy
from typing import Any


# The reactive scaling rule (no headroom), for tests that count pods against rooms.
REACTIVE = {"podStartSeconds": 0, "spareSessions": 0}

GROQ_SPEC: dict[str, Any] = {
    "image": "registry.example/agent-worker:0.1.0",
    "agentName": "support",
    "livekit": {"url": "wss://livekit.example", "credentialsSecret": "livekit"},
    "llm": {"provider": "groq", "model": "llama-3.3-70b-versatile", "credentialsSecret": "groq"},
    "preResponse": {"model": "llama-3.1-8b-instant"},
    "stt": {"provider": "deepgram", "credentialsSecret": "deepgram"},
    "tts": {"provider": "openai", "credentialsSecret": "openai"},
    "scaling": {"minReplicas": 1, "maxReplicas": 5, "targetActiveRoomsPerReplica": 4, **REACTIVE},
}


def groq_spec(**changes: Any) -> dict[str, Any]:
    """The Groq example spec with top-level keys replaced."""
    spec = copy.deepcopy(GROQ_SPEC)
    spec.update(copy.deepcopy(changes))
    return spec


def ollama_spec(**changes: Any) -> dict[str, Any]:
    """Main and fast LLM on a managed Ollama with two GPUs."""
    base = {
        "llm": {"provider": "ollama", "model": "llama3.1:70b"},
        "preResponse": {"model": "llama3.1:8b"},
        "ollama": {"enabled": True, "models": ["nomic-embed-text"], "gpu": {"count": 2}, "nodeSelector": {"gpu": "a100"}},
    }
    return groq_spec(**{**base, **changes})
