"""The worker's settings: non-secret values in a ConfigMap, API keys as secretKeyRefs.

Variable names come from the worker's own settings (`agent_worker.config`), never restated here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from agent_worker.config import API_KEY_ENV, drain_timeout_for, env_name

from ..naming import WORKER, Owner, metadata
from ..spec import SpecError, VoiceAgentSpec

LIVEKIT_SECRET_KEYS = (env_name("livekit_api_key"), env_name("livekit_api_secret"))


@dataclass(frozen=True)
class LLMWiring:
    """How one LLM role (main or fast) reaches its provider."""

    provider: str
    model: str | None
    base_url: str | None
    secret: str | None
    secret_field: str


def main_llm(owner: Owner, spec: VoiceAgentSpec) -> LLMWiring:
    base_url = spec.llm.base_url
    if spec.llm.provider == "ollama" and base_url is None and spec.ollama.enabled:
        base_url = owner.ollama_url()
    return LLMWiring(spec.llm.provider, spec.llm.model, base_url, spec.llm.credentials_secret, "spec.llm.credentialsSecret")


def fast_llm(owner: Owner, spec: VoiceAgentSpec) -> LLMWiring:
    """The pre-response LLM: its own settings where given, otherwise inherited from the main LLM."""
    pre, main = spec.pre_response, main_llm(owner, spec)
    provider = pre.provider or main.provider
    same = provider == main.provider
    base_url = pre.base_url or (main.base_url if same else None)
    if provider == "ollama" and base_url is None and spec.ollama.enabled:
        base_url = owner.ollama_url()
    if pre.credentials_secret:
        secret, field = pre.credentials_secret, "spec.preResponse.credentialsSecret"
    else:
        secret, field = (main.secret, main.secret_field) if same else (None, "spec.preResponse.credentialsSecret")
    return LLMWiring(provider, pre.model, base_url, secret, field)


def config_data(owner: Owner, spec: VoiceAgentSpec) -> dict[str, str]:
    """Every non-secret worker setting, keyed by the worker's environment variable."""
    main, fast = main_llm(owner, spec), fast_llm(owner, spec)
    values: dict[str, Any] = {
        "livekit_url": spec.livekit.url,
        "name": spec.agent_name,
        "instructions": spec.instructions,
        "llm_provider": main.provider,
        "llm_model": main.model,
        "llm_base_url": main.base_url,
        "preresponse_enabled": spec.pre_response.enabled,
        "preresponse_max_words": spec.pre_response.max_words,
        "fast_llm_provider": fast.provider,
        "fast_llm_model": fast.model,
        "fast_llm_base_url": fast.base_url,
        **spec.turn_handling.model_dump(),  # the worker's field names: vad_min_silence, turn_detector, ...
        "stt_provider": spec.stt.provider,
        "stt_model": spec.stt.model,
        "stt_language": spec.stt.language,
        "stt_base_url": spec.stt.base_url,
        "tts_provider": spec.tts.provider,
        "tts_model": spec.tts.model,
        "tts_voice": spec.tts.voice,
        "tts_base_url": spec.tts.base_url,
        "metrics_port": spec.metrics_port,
        "max_sessions": session_cap(spec),
        # The drain ends before the pod's grace period does, leaving livekit time to close the jobs cleanly.
        "drain_timeout": drain_timeout_for(spec.termination_grace_period_seconds),
    }
    if spec.pricing:
        prices = {key: price.model_dump(by_alias=True, exclude_none=True) for key, price in sorted(spec.pricing.items())}
        values["prices"] = json.dumps(prices, sort_keys=True)
    return {env_name(field): _env_text(value) for field, value in values.items() if value is not None}


# A worker pod's session cap is this many times the target the autoscaler aims for. livekit-server 1.13
# neither queues nor re-offers a room every worker refused ("no workers with sufficient capacity"): that
# caller never gets an agent. So rooms that come faster than new pods start are taken, slower, by the pods
# there are, up to twice the target: bench-density's calls per core at full CPU (about 7) are several
# times those within the latency budget (1-2 with a process per call), and the default memory limit holds 2 x 4 calls.
SESSION_CAP_PER_TARGET = 2


def session_cap(spec: VoiceAgentSpec) -> int:
    """The most sessions one worker pod accepts (AGENT_MAX_SESSIONS): at it the pod reports itself full and
    livekit-server dispatches elsewhere. SESSION_CAP_PER_TARGET x targetActiveRoomsPerReplica, or the cap set
    in spec.env if it is at least the target (below it the autoscaler would count on rooms the pods refuse)."""
    target = spec.scaling.target_active_rooms_per_replica
    variable = env_name("max_sessions")
    given = next((item for item in spec.env or [] if item.get("name") == variable), None)
    if given is None:
        return SESSION_CAP_PER_TARGET * target
    value = given.get("value")
    if value is None or not str(value).strip().isdigit():
        raise SpecError(
            "spec.env",
            f"{variable} must be a literal whole number (value: \"{target}\" or more), got {given!r}; or leave it out "
            f"and the operator sets it to {SESSION_CAP_PER_TARGET} x spec.scaling.targetActiveRoomsPerReplica",
        )
    if int(value) < target:
        raise SpecError(
            "spec.env",
            f"{variable}={value} is below spec.scaling.targetActiveRoomsPerReplica ({target}): the autoscaler would "
            f"count on rooms the worker pods refuse; lower the target to {value} or leave {variable} out",
        )
    return int(value)


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def secret_env(owner: Owner, spec: VoiceAgentSpec) -> list[dict[str, Any]]:
    """API keys as secretKeyRefs: one variable per provider, the Secret key named like the variable."""
    uses: list[tuple[str, str | None, str]] = []  # (variable, secret, field naming it)
    for wiring in (main_llm(owner, spec), *([fast_llm(owner, spec)] if spec.pre_response.enabled else [])):
        if wiring.provider in API_KEY_ENV and wiring.secret:
            uses.append((API_KEY_ENV[wiring.provider], wiring.secret, wiring.secret_field))
    for role, speech in (("stt", spec.stt), ("tts", spec.tts)):
        if speech.credentials_secret:
            uses.append((API_KEY_ENV[speech.provider], speech.credentials_secret, f"spec.{role}.credentialsSecret"))

    chosen: dict[str, tuple[str, str]] = {}
    for variable, secret, field in uses:
        assert secret is not None
        if variable in chosen and chosen[variable][0] != secret:
            other = chosen[variable][1]
            raise SpecError(
                field,
                f"names Secret {secret!r} but {other} names {chosen[variable][0]!r} for the same key {variable}; "
                "the worker has one variable per provider, so use one Secret for it",
            )
        chosen.setdefault(variable, (secret, field))

    livekit = [(key, spec.livekit.credentials_secret) for key in LIVEKIT_SECRET_KEYS]
    keys = livekit + [(variable, secret) for variable, (secret, _) in sorted(chosen.items())]
    return [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": variable}}} for variable, secret in keys
    ]


def config_hash(data: dict[str, str]) -> str:
    """Stamped on the pod template so that a settings change rolls the workers."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def worker_configmap(owner: Owner, spec: VoiceAgentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, owner.worker_config, WORKER),
        "data": config_data(owner, spec),
    }
