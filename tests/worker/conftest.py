"""Shared fixtures for the worker tests: a clean configuration environment."""

from __future__ import annotations

import os

import pytest

from agent_worker.config import API_KEY_ENV, CONFIG_FILE_ENV, ENV_PREFIX


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AGENT_* variables and no provider keys, whatever the developer's shell holds."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) or name in API_KEY_ENV.values() or name == CONFIG_FILE_ENV or name.startswith("LIVEKIT_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def keyed_env(clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every provider key set, so only the variable under test can be wrong."""
    for name in API_KEY_ENV.values():
        clean_env.setenv(name, f"test-{name.lower()}")
    return clean_env
