"""Shared fixtures for the operator tests."""

from __future__ import annotations

import pytest
from va_examples import groq_spec

from voiceagent_operator.naming import Owner
from voiceagent_operator.spec import VoiceAgentSpec, parse_spec


@pytest.fixture
def owner() -> Owner:
    return Owner(name="support", namespace="voice", uid="uid-1")


@pytest.fixture
def spec() -> VoiceAgentSpec:
    return parse_spec(groq_spec())
