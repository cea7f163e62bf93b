"""The operator's own settings, from VOICEAGENT_* environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICEAGENT_", extra="ignore")

    resync_seconds: float = Field(15.0, gt=0, description="How often every VoiceAgent is reconciled and autoscaled")
    scrape_timeout_seconds: float = Field(3.0, gt=0, description="Timeout of one worker-pod scrape or Prometheus query")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Port of the operator's /metrics; 0 disables it")
    scan_cluster: bool = Field(
        True,
        description="Let Kopf list namespaces and watch CRDs cluster-wide (needs those cluster-wide rights); "
        "`voiceagent-operator run` sets it false when it serves only namespaces named exactly",
    )
