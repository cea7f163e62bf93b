"""One typed settings object for the worker, read from the environment and an optional file.

This module is the single source of truth for the worker's environment variables: the
operator imports it to wire a VoiceAgent's spec into a worker pod, and the README's
reference table is generated from it. It imports nothing heavier than pydantic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

LLMProvider = Literal["groq", "ollama", "openai"]
STTProvider = Literal["deepgram", "openai"]
TTSProvider = Literal["openai"]
TurnDetectorKind = Literal["local", "cloud", "vad"]
EndpointingMode = Literal["fixed", "dynamic"]
JobExecutor = Literal["process", "thread"]
# Rates livekit's rtc resamples a caller's track to (from an environment string too).
AudioSampleRate = Annotated[Literal[8000, 16000, 24000, 48000], BeforeValidator(lambda v: int(v) if str(v).isdigit() else v)]

ENV_PREFIX = "AGENT_"
CONFIG_FILE_ENV = "AGENT_CONFIG_FILE"

# Provider -> the environment variable (and Secret key) holding its API key.
API_KEY_ENV: dict[str, str] = {
    "groq": "GROQ_API_KEY",
    "openai": "OPENAI_API_KEY",
    "deepgram": "DEEPGRAM_API_KEY",
}

DEFAULT_MODELS: dict[tuple[str, str], str] = {
    ("groq", "main"): "llama-3.3-70b-versatile",
    ("groq", "fast"): "llama-3.1-8b-instant",
    ("ollama", "main"): "llama3.1:70b",
    ("ollama", "fast"): "llama3.1:8b",
    ("openai", "main"): "gpt-4.1",
    ("openai", "fast"): "gpt-4.1-nano",
    ("deepgram", "stt"): "nova-3",
    ("openai", "stt"): "gpt-4o-mini-transcribe",
    ("openai", "tts"): "tts-1",
}

DEFAULT_BASE_URLS: dict[str, str] = {"ollama": "http://127.0.0.1:11434/v1"}

# Stopping a worker (SIGTERM at a scale-down or rollout): livekit's `start` stops taking jobs and waits up to
# the drain timeout for its calls to end; then it asks the job processes (in parallel) to shut down, waits up to
# JOB_SHUTDOWN_TIMEOUT for their answer, and closes its connection. SHUTDOWN_MARGIN_SECONDS is that last step's
# share of the pod's terminationGracePeriodSeconds, so the drain ends before the kubelet's SIGKILL.
JOB_SHUTDOWN_TIMEOUT = 10.0
SHUTDOWN_MARGIN_SECONDS = 15
# LiveKit's recommended terminationGracePeriodSeconds for workers (the VoiceAgent's default).
RECOMMENDED_GRACE_PERIOD_SECONDS = 600


def drain_timeout_for(grace_period_seconds: int) -> int:
    """The drain timeout that ends a worker's drain SHUTDOWN_MARGIN_SECONDS before its pod is killed (at least 1 s:
    livekit reads 0 as no limit)."""
    return max(1, grace_period_seconds - SHUTDOWN_MARGIN_SECONDS)


DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant. Answer in short, plain spoken sentences "
    "without lists, markdown or emojis."
)


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the variable and the fix."""


class ModelPrice(BaseModel):
    """Published prices for one provider/model, in USD. Unset fields cost nothing."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    input_per_million_tokens: float | None = Field(None, ge=0, alias="inputPerMillionTokens")
    cached_input_per_million_tokens: float | None = Field(None, ge=0, alias="cachedInputPerMillionTokens")
    output_per_million_tokens: float | None = Field(None, ge=0, alias="outputPerMillionTokens")
    per_audio_minute: float | None = Field(None, ge=0, alias="perAudioMinute")
    per_million_characters: float | None = Field(None, ge=0, alias="perMillionCharacters")


class FallbackEntry(BaseModel):
    provider: LLMProvider
    model: str


FallbackChain = Annotated[list[FallbackEntry], NoDecode]


class Settings(BaseSettings):
    """Effective worker configuration. Environment names are `AGENT_<FIELD>` unless aliased."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False)

    # LiveKit connection (standard LiveKit variable names).
    livekit_url: str = Field("ws://127.0.0.1:7880", validation_alias="LIVEKIT_URL", description="LiveKit server URL")
    livekit_api_key: SecretStr | None = Field(None, validation_alias="LIVEKIT_API_KEY", description="LiveKit API key (from a Secret)")
    livekit_api_secret: SecretStr | None = Field(None, validation_alias="LIVEKIT_API_SECRET", description="LiveKit API secret (from a Secret)")

    # Provider API keys (standard vendor variable names; deliver them from Secrets).
    groq_api_key: SecretStr | None = Field(None, validation_alias="GROQ_API_KEY", description="Groq API key (from a Secret); needed only when a role uses groq")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY", description="OpenAI API key (from a Secret); not needed with an openai base URL")
    deepgram_api_key: SecretStr | None = Field(None, validation_alias="DEEPGRAM_API_KEY", description="Deepgram API key (from a Secret); needed only for deepgram STT")

    name: str = Field("", description="LiveKit agent name for explicit dispatch; empty dispatches to every room")
    instructions: str = Field(DEFAULT_INSTRUCTIONS, description="System instructions for the main LLM")

    llm_provider: LLMProvider = Field("groq", description="Main LLM provider")
    llm_model: str | None = Field(None, description="Main LLM model; default depends on the provider")
    llm_base_url: str | None = Field(None, description="OpenAI-compatible base URL for the main LLM")
    llm_fallback: FallbackChain = Field(
        default_factory=list, description="Fallback chain for the main LLM, e.g. `ollama:llama3.1:70b,openai:gpt-4.1`"
    )

    fast_llm_provider: LLMProvider = Field("groq", description="Pre-response (fast) LLM provider")
    fast_llm_model: str | None = Field(None, description="Pre-response LLM model; default depends on the provider")
    fast_llm_base_url: str | None = Field(None, description="OpenAI-compatible base URL for the fast LLM")
    fast_llm_fallback: FallbackChain = Field(default_factory=list, description="Fallback chain for the fast LLM")

    preresponse_enabled: bool = Field(True, description="Speak a short acknowledgement while the main LLM answers")
    preresponse_max_words: int = Field(8, ge=1, le=30, description="Word limit of a pre-response")
    preresponse_min_words: int = Field(
        3, ge=0, le=50, description="Turns with fewer words than this get no pre-response (trivial turns)"
    )
    preresponse_cache: bool = Field(True, description="Pre-synthesize stock acknowledgements once per worker pod, shared by its calls")
    preresponse_late_after: float = Field(
        1.2, ge=0.0, le=10.0,
        description="A filler is said only when the answer would reach the caller this many seconds or more after they stop speaking",
    )
    preresponse_playout_delay: float = Field(
        0.15, ge=0.0, le=1.0,
        description="Seconds from the worker sending audio to the caller hearing it (WebRTC and jitter buffer; 0.13 measured on loopback)",
    )
    preresponse_min_gap: float = Field(0.0, ge=0.0, le=120.0, description="Seconds between the starts of two fillers (0: at most one per turn only)")
    preresponse_cache_dir: str = Field(
        "", description="Writable folder shared by the pod's job processes for the stock phrases' audio; empty: <tmp>/agent-worker-fillers"
    )
    fast_llm_timeout: float = Field(
        1.0, gt=0.0, le=10.0, description="Seconds the fast LLM may take (no retries): a filler is useless after about a second"
    )

    # Turn handling: when the caller's turn is over (see docs/worker.md, "Turn handling").
    vad_min_silence: float = Field(
        0.25, ge=0.05, le=2.0, description="Seconds of silence before the VAD says the caller stopped speaking (Silero's own default: 0.55)"
    )
    turn_detector: TurnDetectorKind = Field(
        "local", description="End-of-turn model: local (v1-mini, on the CPU), cloud (LiveKit Cloud v1, needs LiveKit keys) or vad (silence only)"
    )
    endpointing_mode: EndpointingMode = Field("fixed", description="fixed, or dynamic (adapts the delays to the caller's pauses)")
    endpointing_min_delay: float = Field(
        0.3, ge=0.0, le=5.0, description="Seconds after the end of speech a finished turn is committed"
    )
    endpointing_max_delay: float = Field(
        2.5, ge=0.1, le=10.0, description="Seconds after the end of speech a turn is committed when the detector thinks the caller is not done"
    )
    preemptive_generation: bool = Field(True, description="Start the main LLM on the final transcript, before the turn is committed")
    preemptive_tts: bool = Field(False, description="Also start the answer's TTS before the turn is committed")

    # The caller's audio as the session takes it (see docs/worker.md, "The caller's audio").
    audio_sample_rate: AudioSampleRate = Field(
        16000, description="Hz the caller's track is taken at: 16000 is what Silero VAD, the turn detector and Deepgram take, so nothing resamples it again (livekit's default: 24000)"
    )
    auto_gain_control: bool = Field(True, description="WebRTC's automatic gain control on the caller's audio (livekit's default)")

    stt_provider: STTProvider = Field("deepgram", description="Speech-to-text provider")
    stt_model: str | None = Field(None, description="STT model; default depends on the provider")
    stt_base_url: str | None = Field(None, description="Base URL of the STT API: OpenAI-compatible for openai, a Deepgram listen endpoint for deepgram (e.g. a self-hosted Deepgram)")
    stt_language: str = Field("en", description="Language of the caller")

    tts_provider: TTSProvider = Field("openai", description="Text-to-speech provider")
    tts_model: str | None = Field(None, description="TTS model; default depends on the provider")
    tts_voice: str = Field("alloy", description="TTS voice")
    tts_base_url: str | None = Field(None, description="OpenAI-compatible base URL for TTS")

    metrics_port: int = Field(9100, ge=1, le=65535, description="Port of the Prometheus endpoint")
    health_port: int = Field(8081, ge=1, le=65535, description="Port of livekit's health endpoint (GET / and /worker)")
    llm_timeout: float = Field(
        10.0, gt=0, description="Seconds an LLM request may go without a byte before it is retried (slow self-hosted models)"
    )
    max_sessions: int | None = Field(
        None, ge=1, description="When set, the worker's load is its active sessions divided by this, instead of its CPU use"
    )
    job_memory_limit_mb: float = Field(
        0.0, ge=0.0, le=65536.0,
        description="MB (PSS) above which livekit ends a call's job process, that call only; 0: no limit, and no sampling of the job processes' memory (4-7 % of the worker's py-spy samples)",
    )
    job_executor: JobExecutor = Field(
        "process",
        description="Where each call runs: process (its own job process; a crash ends that call only) or thread (all calls in the worker's process: about half the memory and less CPU per call, but one call's crash or leak is every call's)",
    )
    load_threshold: float = Field(
        0.7, gt=0, description="Worker load (CPU use, 0-1) from which livekit sends this worker no new jobs; above 1: never"
    )
    drain_timeout: int = Field(
        drain_timeout_for(RECOMMENDED_GRACE_PERIOD_SECONDS),
        ge=1,
        description=(
            "Seconds a stopping worker (SIGTERM) waits for its calls to end before closing them; keep it "
            f"{SHUTDOWN_MARGIN_SECONDS} s under the pod's terminationGracePeriodSeconds (the operator does)"
        ),
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description='Price overrides as JSON, keyed "provider/model"'
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the optional file; explicit init kwargs win over both.
        return (init_settings, env_settings, _FileSource(settings_cls))

    @field_validator("llm_fallback", "fast_llm_fallback", mode="before")
    @classmethod
    def _parse_fallback(cls, value: Any) -> Any:
        return _parse_fallback(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fill_defaults_and_check_keys(self) -> Settings:
        self.llm_model = self.llm_model or DEFAULT_MODELS[(self.llm_provider, "main")]
        self.fast_llm_model = self.fast_llm_model or DEFAULT_MODELS[(self.fast_llm_provider, "fast")]
        self.stt_model = self.stt_model or DEFAULT_MODELS[(self.stt_provider, "stt")]
        self.tts_model = self.tts_model or DEFAULT_MODELS[(self.tts_provider, "tts")]
        self.llm_base_url = self.llm_base_url or DEFAULT_BASE_URLS.get(self.llm_provider)
        self.fast_llm_base_url = self.fast_llm_base_url or DEFAULT_BASE_URLS.get(self.fast_llm_provider)
        if self.endpointing_max_delay < self.endpointing_min_delay:
            raise ConfigError(
                f"{ENV_PREFIX}ENDPOINTING_MAX_DELAY={self.endpointing_max_delay} is below {ENV_PREFIX}ENDPOINTING_MIN_DELAY="
                f"{self.endpointing_min_delay}; set it between {self.endpointing_min_delay} and 10"
            )
        if self.job_executor == "thread" and self.job_memory_limit_mb:
            raise ConfigError(
                f"{ENV_PREFIX}JOB_MEMORY_LIMIT_MB={self.job_memory_limit_mb:g} limits a call's job process, and with "
                f"{ENV_PREFIX}JOB_EXECUTOR=thread there is none; set it to 0 or use {ENV_PREFIX}JOB_EXECUTOR=process"
            )
        if self.turn_detector == "cloud" and not (self.livekit_api_key and self.livekit_api_secret):
            raise ConfigError(
                f"{ENV_PREFIX}TURN_DETECTOR=cloud needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET (LiveKit Cloud inference); "
                "set them or choose local or vad"
            )
        for role, provider, base_url in self.provider_uses():
            if self.api_key(provider) is None and not (provider == "openai" and base_url):
                raise ConfigError(
                    f"{API_KEY_ENV[provider]} is not set but {role}={provider} needs it: "
                    f"put the key in a Secret and expose it as {API_KEY_ENV[provider]}, or choose another provider"
                )
        return self

    def provider_uses(self) -> list[tuple[str, str, str | None]]:
        """(variable, provider, base_url) for every provider that needs an API key."""
        uses = [
            (f"{ENV_PREFIX}LLM_PROVIDER", self.llm_provider, self.llm_base_url),
            (f"{ENV_PREFIX}STT_PROVIDER", self.stt_provider, self.stt_base_url),
            (f"{ENV_PREFIX}TTS_PROVIDER", self.tts_provider, self.tts_base_url),
        ]
        if self.preresponse_enabled:
            uses.append((f"{ENV_PREFIX}FAST_LLM_PROVIDER", self.fast_llm_provider, self.fast_llm_base_url))
        for var, chain in ((f"{ENV_PREFIX}LLM_FALLBACK", self.llm_fallback), (f"{ENV_PREFIX}FAST_LLM_FALLBACK", self.fast_llm_fallback)):
            uses += [(var, entry.provider, DEFAULT_BASE_URLS.get(entry.provider)) for entry in chain]
        return [use for use in uses if use[1] in API_KEY_ENV]

    def api_key(self, provider: str) -> str | None:
        secret = {"groq": self.groq_api_key, "openai": self.openai_api_key, "deepgram": self.deepgram_api_key}.get(provider)
        return secret.get_secret_value() if secret else None

    def redacted(self) -> dict[str, Any]:
        """The effective configuration keyed by environment variable, secrets shown as '***'."""
        values = self.model_dump(mode="json")
        out: dict[str, Any] = {}
        for field_name, value in values.items():
            if isinstance(getattr(self, field_name), SecretStr):
                value = "***"
            out[env_name(field_name)] = value
        return out


def env_name(field_name: str) -> str:
    """The environment variable that sets a Settings field."""
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, str):
        return alias
    return f"{ENV_PREFIX}{field_name}".upper()


def _parse_fallback(text: str) -> list[dict[str, str]]:
    entries = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        provider, sep, model = item.partition(":")
        if not sep or not model:
            raise ValueError(f"'{item}' is not provider:model (e.g. ollama:llama3.1:70b)")
        entries.append({"provider": provider, "model": model})
    return entries


class _FileSource(PydanticBaseSettingsSource):
    """Settings from the YAML or JSON file named by AGENT_CONFIG_FILE, keyed like the env variables."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(CONFIG_FILE_ENV)
        if not path:
            return {}
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{CONFIG_FILE_ENV}={path} cannot be read ({exc}); point it at a YAML or JSON file") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{CONFIG_FILE_ENV}={path} must hold a mapping of variable names to values")
        by_env = {env_name(name).upper(): name for name in Settings.model_fields}
        out = {}
        for key, value in raw.items():
            name = by_env.get(str(key).upper())
            if name is None:
                raise ConfigError(f"{CONFIG_FILE_ENV}={path}: unknown key {key}; use the variable names of `agent-worker config`")
            out[name] = value
        return out


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning any validation problem into a one-line ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except SettingsError as exc:
        field_name = str(exc).split('"')[1] if '"' in str(exc) else ""
        variable = env_name(field_name) if field_name in Settings.model_fields else field_name
        raise ConfigError(f"{variable} is not valid JSON; set it to a JSON value (see `agent-worker config`)") from None


def _allowed_range(field_name: str) -> str | None:
    """"0.05 to 2.0" from a field's ge/gt/le/lt bounds, or None for an unbounded field."""
    low = high = None
    for bound in Settings.model_fields[field_name].metadata:
        for attr, side in (("ge", "low"), ("gt", "low"), ("le", "high"), ("lt", "high")):
            if (limit := getattr(bound, attr, None)) is not None:
                text = f"{limit}" if attr in ("ge", "le") else f"{limit} (excluded)"
                low, high = (text, high) if side == "low" else (low, text)
    if low is None and high is None:
        return None
    return f"{low or 'any'} to {high or 'any'}"


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field_name = str(error["loc"][0]) if error["loc"] else ""
    variable = env_name(field_name) if field_name in Settings.model_fields else field_name
    value = error.get("input")
    if error["type"] == "literal_error":
        expected = error["ctx"]["expected"].replace("'", "")
        known = "a known provider" if "provider" in field_name or "fallback" in field_name else "allowed"
        return f"{variable}={value!r} is not {known}; set one of {expected}"
    if field_name in Settings.model_fields and (allowed := _allowed_range(field_name)):
        return f"{variable}={value!r} is invalid: {error['msg']} (allowed range {allowed}); fix or unset {variable}"
    reason = error["msg"].removeprefix("Value error, ")
    if len(error["loc"]) > 1 and error["type"] != "literal_error":
        where = ".".join(str(part) for part in error["loc"][1:])
        return f"{variable} is invalid at {where}: {reason}; fix or unset {variable}"
    shown = "***" if "key" in variable.lower() or "secret" in variable.lower() else repr(value)
    return f"{variable}={shown} is invalid: {reason}; fix or unset {variable}"
