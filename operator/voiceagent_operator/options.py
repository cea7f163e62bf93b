"""The operator's own settings, from VOICEAGENT_* environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICEAGENT_", extra="ignore")

    resync_seconds: float = Field(15.0, gt=0, description="How often every VoiceAgent is reconciled in full (children and status)")
    scrape_timeout_seconds: float = Field(3.0, gt=0, description="Timeout of one worker-pod scrape or Prometheus query")
    observe_seconds: float = Field(
        5.0, gt=0, description="How often the active rooms of every VoiceAgent are read (one observation for the whole fleet); "
        "a change in rooms is acted on within this long"
    )
    scrape_concurrency: int = Field(64, ge=1, description="Worker-pod scrapes in flight at once (one HTTP session)")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Port of the operator's /metrics; 0 disables it")
    scan_cluster: bool = Field(
        True,
        description="Let Kopf list namespaces and watch CRDs cluster-wide (needs those cluster-wide rights); "
        "`voiceagent-operator run` sets it false when it serves only namespaces named exactly",
    )
