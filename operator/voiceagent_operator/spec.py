"""The VoiceAgent spec as typed models: the one source of truth for the CRD schema.

`crd.py` turns these models into the CRD's OpenAPI schema (defaults, enums, bounds, CEL rules);
the operator parses every live object with `parse_spec`, so a spec that slipped past the schema
(an old CRD, a cluster without CEL) is caught here with a message naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from agent_worker.config import (
    RECOMMENDED_GRACE_PERIOD_SECONDS,
    SHUTDOWN_MARGIN_SECONDS,
    LLMProvider,
    EndpointingMode,
    ModelPrice,
    Settings,
    STTProvider,
    TTSProvider,
    TurnDetectorKind,
)

GROUP = "agentworker.io"
# The longest child name is "<name>-ollama-models" (14 more characters) and names are at most 63
# characters where they become labels: 56 leaves room for the ReplicaSet and pod suffixes too.
MAX_NAME_LENGTH = 56
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "VoiceAgent"
PLURAL = "voiceagents"
SHORT_NAMES = ["va"]

DEFAULT_OLLAMA_IMAGE = "docker.io/ollama/ollama:0.12.6"
DEFAULT_METRICS_PORT: int = Settings.model_fields["metrics_port"].default

# Kubernetes-native structures passed through verbatim (the apiserver validates them on the children).
K8sObject = dict[str, Any]
K8sList = list[dict[str, Any]]


def _nested(model: type[BaseModel]) -> Any:
    """A sub-object that always exists. Its schema default is spelled out in full: the apiserver
    checks a default against the CEL rules as written, without filling the defaults inside it."""
    default = model().model_dump(by_alias=True, exclude_none=True)
    return Field(default_factory=model, json_schema_extra={"default": default})


def _k8s(description: str) -> Any:
    return Field(None, description=description)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


@dataclass(frozen=True)
class Rule:
    """A cross-field constraint, written once for the apiserver (CEL) and once for the operator."""

    cel: str
    message: str
    check: Callable[[Any], bool]


def _rules(*rules: Rule) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": r.cel, "message": r.message} for r in rules]}


def _needs_key(provider: str, secret: str | None, base_url: str | None) -> bool:
    """Groq, OpenAI and Deepgram need an API key unless OpenAI is pointed at a compatible server."""
    return provider == "ollama" or secret is not None or (provider == "openai" and base_url is not None)


LLM_KEY_RULE = Rule(
    "self.provider == 'ollama' || has(self.credentialsSecret) || (self.provider == 'openai' && has(self.baseUrl))",
    "credentialsSecret is required for this provider (a Secret holding its API key)",
    lambda m: _needs_key(m.provider, m.credentials_secret, m.base_url),
)
SPEECH_KEY_RULE = Rule(
    "has(self.credentialsSecret) || (self.provider == 'openai' && has(self.baseUrl))",
    "credentialsSecret is required for this provider (a Secret holding its API key)",
    lambda m: _needs_key(m.provider, m.credentials_secret, m.base_url),
)


class LiveKit(_Model):
    url: str = Field(description="LiveKit server URL, e.g. wss://example.livekit.cloud")
    credentials_secret: str = Field(description="Secret with keys LIVEKIT_API_KEY and LIVEKIT_API_SECRET")


class LLM(_Model):
    model_config = ConfigDict(json_schema_extra=_rules(LLM_KEY_RULE))

    provider: LLMProvider = Field("groq", description="Main LLM provider")
    model: str | None = Field(None, description="Model name; default depends on the provider")
    credentials_secret: str | None = Field(None, description="Secret holding the provider's API key (e.g. GROQ_API_KEY)")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL; for ollama defaults to the managed Ollama")


class PreResponse(_Model):
    enabled: bool = Field(True, description="Speak a short acknowledgement while the main LLM answers")
    provider: LLMProvider | None = Field(None, description="Fast LLM provider; defaults to llm.provider")
    model: str | None = Field(None, description="Fast LLM model; default depends on the provider")
    max_words: int = Field(8, ge=1, le=30, description="Word limit of a pre-response")
    credentials_secret: str | None = Field(None, description="Secret with the fast provider's API key; defaults to llm's")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL of the fast LLM")


class STT(_Model):
    model_config = ConfigDict(json_schema_extra=_rules(SPEECH_KEY_RULE))

    provider: STTProvider = Field("deepgram", description="Speech-to-text provider")
    model: str | None = Field(None, description="STT model; default depends on the provider")
    language: str = Field("en", description="Language of the caller")
    credentials_secret: str | None = Field(None, description="Secret holding the provider's API key")
    base_url: str | None = Field(None, description="Base URL of the STT API: OpenAI-compatible for openai, a Deepgram listen endpoint for deepgram (e.g. a self-hosted Deepgram)")


class TTS(_Model):
    model_config = ConfigDict(json_schema_extra=_rules(SPEECH_KEY_RULE))

    provider: TTSProvider = Field("openai", description="Text-to-speech provider")
    model: str | None = Field(None, description="TTS model; default depends on the provider")
    voice: str = Field("alloy", description="TTS voice")
    credentials_secret: str | None = Field(None, description="Secret holding the provider's API key")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL")


class GPU(_Model):
    count: int = Field(1, ge=0, le=16, description="GPUs for the Ollama pod; 0 runs on CPU")
    resource_name: str = Field("nvidia.com/gpu", description="Extended resource name of the GPU")


class Storage(_Model):
    size: str = Field("50Gi", description="Size of the model volume")
    storage_class_name: str | None = Field(None, description="StorageClass of the model volume; cluster default if unset")
    retention_policy: Literal["Retain", "Delete"] = Field(
        "Retain", description="Retain keeps the model volume when the VoiceAgent or its Ollama is removed; Delete removes it"
    )


class Ollama(_Model):
    enabled: bool = Field(False, description="Run a local Ollama server for the LLMs")
    image: str = Field(DEFAULT_OLLAMA_IMAGE, description="Ollama image")
    models: list[str] = Field(
        default_factory=list, description="Extra models to pull; the models llm and preResponse use from it are added"
    )
    gpu: GPU = _nested(GPU)
    resources: K8sObject | None = _k8s("Resources of the Ollama container (GPU limits are added from gpu)")
    node_selector: dict[str, str] | None = Field(None, description="Node selector of the Ollama pod")
    tolerations: K8sList | None = _k8s("Tolerations of the Ollama pod")
    storage: Storage = _nested(Storage)


SCALING_BOUNDS_RULE = Rule(
    "self.minReplicas <= self.maxReplicas",
    "scaling.minReplicas must not exceed scaling.maxReplicas",
    lambda m: m.min_replicas <= m.max_replicas,
)
PROMETHEUS_URL_RULE = Rule(
    "self.metricsSource != 'prometheus' || has(self.prometheusUrl)",
    "scaling.prometheusUrl is required when scaling.metricsSource is prometheus",
    lambda m: m.metrics_source != "prometheus" or m.prometheus_url is not None,
)


class Scaling(_Model):
    model_config = ConfigDict(json_schema_extra=_rules(SCALING_BOUNDS_RULE, PROMETHEUS_URL_RULE))

    min_replicas: int = Field(1, ge=1, description="Fewest worker pods")
    max_replicas: int = Field(10, ge=1, description="Most worker pods")
    target_active_rooms_per_replica: int = Field(
        4, ge=1,
        description="Active rooms one worker pod should carry; a pod accepts twice this (AGENT_MAX_SESSIONS) while new pods start, then livekit dispatches elsewhere",
    )
    scale_up_stabilization_seconds: int = Field(0, ge=0, le=3600, description="Scale up to the lowest recommendation seen in this window")
    scale_down_stabilization_seconds: int = Field(300, ge=0, le=86400, description="Scale down only to the highest recommendation seen in this window")
    pod_start_seconds: int = Field(
        30, ge=0, le=3600,
        description="Seconds from scaling up to a ready worker pod: capacity is kept for the rise in rooms expected over this time plus one observation interval; 0 keeps none",
    )
    spare_sessions: int = Field(
        0, ge=0, le=10000, description="Free sessions kept beyond the active rooms, their expected rise and a quarter of sqrt(rooms) for chance"
    )
    metrics_source: Literal["pods", "prometheus"] = Field("pods", description="Scrape worker pods directly, or query Prometheus")
    prometheus_url: str | None = Field(None, description="Prometheus base URL, e.g. http://prometheus.monitoring:9090")


class ServiceMonitorSpec(_Model):
    enabled: bool = Field(True, description="Create a ServiceMonitor when the monitoring.coreos.com API exists")
    interval: str = Field("15s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape interval")
    labels: dict[str, str] | None = Field(None, description="Extra labels, e.g. the release label your Prometheus selects")


class Monitoring(_Model):
    service_monitor: ServiceMonitorSpec = _nested(ServiceMonitorSpec)


OLLAMA_BACKEND_RULE = Rule(
    "self.llm.provider != 'ollama' || self.ollama.enabled || has(self.llm.baseUrl)",
    "llm.provider ollama needs ollama.enabled: true or llm.baseUrl",
    lambda m: m.llm.provider != "ollama" or m.ollama.enabled or m.llm.base_url is not None,
)
FAST_OLLAMA_BACKEND_RULE = Rule(
    "!self.preResponse.enabled || !has(self.preResponse.provider) || self.preResponse.provider != 'ollama'"
    " || self.ollama.enabled || has(self.preResponse.baseUrl) || (self.llm.provider == 'ollama' && has(self.llm.baseUrl))",
    "preResponse.provider ollama needs ollama.enabled: true or preResponse.baseUrl",
    lambda m: not m.pre_response.enabled
    or m.pre_response.provider != "ollama"
    or m.ollama.enabled
    or m.pre_response.base_url is not None
    or (m.llm.provider == "ollama" and m.llm.base_url is not None),
)
FAST_KEY_RULE = Rule(
    "!self.preResponse.enabled || !has(self.preResponse.provider) || self.preResponse.provider == self.llm.provider"
    " || self.preResponse.provider == 'ollama' || has(self.preResponse.credentialsSecret)"
    " || (self.preResponse.provider == 'openai' && has(self.preResponse.baseUrl))",
    "preResponse.credentialsSecret is required when preResponse.provider differs from llm.provider",
    lambda m: not m.pre_response.enabled
    or m.pre_response.provider in (None, m.llm.provider)
    or _needs_key(m.pre_response.provider, m.pre_response.credentials_secret, m.pre_response.base_url),
)


def _worker_setting(name: str) -> Any:
    """A field with the worker setting's default, allowed range and description: the CRD refuses
    exactly what the worker would refuse at start-up."""
    info = Settings.model_fields[name]
    bounds = {key: getattr(m, key) for m in info.metadata for key in ("ge", "gt", "le", "lt") if hasattr(m, key)}
    return Field(info.default, description=info.description, **bounds)


ENDPOINTING_DELAYS_RULE = Rule(
    "self.endpointingMaxDelay >= self.endpointingMinDelay",
    "endpointingMaxDelay must be at least endpointingMinDelay",
    lambda m: m.endpointing_max_delay >= m.endpointing_min_delay,
)


class TurnHandling(_Model):
    """When the caller's turn is over, and what starts before it is (docs/worker.md, "Turn handling")."""

    model_config = ConfigDict(json_schema_extra=_rules(ENDPOINTING_DELAYS_RULE))

    vad_min_silence: float = _worker_setting("vad_min_silence")
    turn_detector: TurnDetectorKind = _worker_setting("turn_detector")
    endpointing_mode: EndpointingMode = _worker_setting("endpointing_mode")
    endpointing_min_delay: float = _worker_setting("endpointing_min_delay")
    endpointing_max_delay: float = _worker_setting("endpointing_max_delay")
    preemptive_generation: bool = _worker_setting("preemptive_generation")
    preemptive_tts: bool = _worker_setting("preemptive_tts")

    @model_validator(mode="after")
    def _delays_in_order(self) -> TurnHandling:
        if not ENDPOINTING_DELAYS_RULE.check(self):
            raise ValueError(ENDPOINTING_DELAYS_RULE.message)
        return self


class VoiceAgentSpec(_Model):
    """Desired state of one fleet of voice-agent workers."""

    model_config = ConfigDict(json_schema_extra=_rules(OLLAMA_BACKEND_RULE, FAST_OLLAMA_BACKEND_RULE, FAST_KEY_RULE))

    image: str = Field(description="agent-worker image")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field("IfNotPresent", description="Image pull policy")
    image_pull_secrets: K8sList | None = _k8s("Secrets for pulling the images, as [{name: ...}]")
    agent_name: str = Field("", description="LiveKit agent name for explicit dispatch; empty joins every room")
    instructions: str | None = Field(None, description="System instructions of the main LLM; the worker's default if unset")
    livekit: LiveKit
    llm: LLM = Field(description="Main LLM")
    pre_response: PreResponse = _nested(PreResponse)
    turn_handling: TurnHandling = _nested(TurnHandling)
    stt: STT = Field(description="Speech-to-text")
    tts: TTS = Field(description="Text-to-speech")
    ollama: Ollama = _nested(Ollama)
    scaling: Scaling = _nested(Scaling)
    replicas: int | None = Field(
        None, ge=0, description="Pins the worker count and pauses autoscaling (set by `kubectl scale`); remove to autoscale"
    )
    metrics_port: int = Field(DEFAULT_METRICS_PORT, ge=1, le=65535, description="Port of the worker's Prometheus endpoint")
    resources: K8sObject | None = _k8s("Resources of the worker container")
    node_selector: dict[str, str] | None = Field(None, description="Node selector of the worker pods")
    tolerations: K8sList | None = _k8s("Tolerations of the worker pods")
    affinity: K8sObject | None = _k8s("Affinity of the worker pods")
    env: K8sList | None = _k8s("Extra environment variables of the worker container (Kubernetes EnvVar list)")
    termination_grace_period_seconds: int = Field(
        RECOMMENDED_GRACE_PERIOD_SECONDS,
        ge=SHUTDOWN_MARGIN_SECONDS + 1,
        description=(
            "Time a worker has to drain its rooms on shutdown (LiveKit recommends at least 600); the worker's drain "
            f"deadline is this minus {SHUTDOWN_MARGIN_SECONDS} s, so a call is never cut before it"
        ),
    )
    monitoring: Monitoring = _nested(Monitoring)
    pricing: dict[str, ModelPrice] | None = Field(
        None, description='Price overrides passed to the worker, keyed "provider/model"'
    )


CROSS_FIELD_RULES: dict[str, tuple[Rule, ...]] = {
    "spec": (OLLAMA_BACKEND_RULE, FAST_OLLAMA_BACKEND_RULE, FAST_KEY_RULE),
    "spec.llm": (LLM_KEY_RULE,),
    "spec.stt": (SPEECH_KEY_RULE,),
    "spec.tts": (SPEECH_KEY_RULE,),
    "spec.scaling": (SCALING_BOUNDS_RULE, PROMETHEUS_URL_RULE),
}


class SpecError(Exception):
    """The spec cannot be acted on; `field` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_spec(raw: dict[str, Any]) -> VoiceAgentSpec:
    """Validate a live object's spec (types and cross-field rules) or raise SpecError naming the field."""
    try:
        spec = VoiceAgentSpec.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join(["spec", *(str(part) for part in error["loc"])])
        raise SpecError(path, error["msg"]) from None
    for path, rules in CROSS_FIELD_RULES.items():
        target: Any = spec
        for part in path.split(".")[1:]:
            target = getattr(target, part)
        for rule in rules:
            if not rule.check(target if path != "spec" else spec):
                raise SpecError(path, rule.message)
    for key in spec.pricing or {}:
        if "/" not in key:
            raise SpecError(f"spec.pricing.{key}", 'keys are "provider/model", e.g. "groq/llama-3.3-70b-versatile"')
    return spec
