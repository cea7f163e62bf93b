"""spec.turnHandling: the worker's turn-handling settings in the VoiceAgent, with the worker's own
defaults and ranges (an invalid value is refused naming the field), passed to the worker's
environment under the worker's own variable names."""

from __future__ import annotations

from typing import Any

import celpy
import pytest

from agent_worker.config import ConfigError, Settings, env_name
from va_examples import groq_spec
from voiceagent_operator.builders.worker_config import config_data
from voiceagent_operator.crd import spec_schema
from voiceagent_operator.naming import Owner
from voiceagent_operator.spec import ENDPOINTING_DELAYS_RULE, SpecError, TurnHandling, parse_spec

FIELDS = ("vad_min_silence", "turn_detector", "endpointing_mode", "endpointing_min_delay", "endpointing_max_delay",
          "preemptive_generation", "preemptive_tts")
OWNER = Owner(name="support", namespace="voice", uid="uid-1")


def with_turn_handling(**values: Any) -> dict[str, Any]:
    return {**groq_spec(), "turnHandling": values}


def turn_handling_schema() -> dict[str, Any]:
    return spec_schema()["properties"]["turnHandling"]


def test_the_defaults_are_the_workers_and_reach_its_environment_unchanged():
    spec = parse_spec(groq_spec())
    data = config_data(OWNER, spec)
    for field in FIELDS:
        default = Settings.model_fields[field].default
        assert getattr(spec.turn_handling, field) == default
        assert data[env_name(field)] == (str(default).lower() if isinstance(default, bool) else str(default))


def test_set_values_reach_the_worker_under_its_variable_names():
    spec = parse_spec(with_turn_handling(vadMinSilence=0.4, turnDetector="vad", endpointingMode="dynamic",
                                         endpointingMinDelay=0.5, endpointingMaxDelay=3.0, preemptiveTts=True))
    data = config_data(OWNER, spec)
    assert (data["AGENT_VAD_MIN_SILENCE"], data["AGENT_TURN_DETECTOR"], data["AGENT_ENDPOINTING_MODE"]) == ("0.4", "vad", "dynamic")
    assert (data["AGENT_ENDPOINTING_MIN_DELAY"], data["AGENT_ENDPOINTING_MAX_DELAY"]) == ("0.5", "3.0")
    assert (data["AGENT_PREEMPTIVE_GENERATION"], data["AGENT_PREEMPTIVE_TTS"]) == ("true", "true")


@pytest.mark.parametrize("field", [f for f in FIELDS if Settings.model_fields[f].annotation is float])
def test_the_crd_range_is_the_workers_range(field):
    schema = turn_handling_schema()["properties"][TurnHandling.model_fields[field].alias or field]
    bounds = {key: getattr(m, key) for m in Settings.model_fields[field].metadata for key in ("ge", "le") if hasattr(m, key)}
    assert (schema["minimum"], schema["maximum"], schema["default"]) == (bounds["ge"], bounds["le"], Settings.model_fields[field].default)


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"vadMinSilence": 0.01}, "spec.turnHandling.vadMinSilence", "greater than or equal to 0.05"),
    ({"vadMinSilence": 3}, "spec.turnHandling.vadMinSilence", "less than or equal to 2"),
    ({"endpointingMaxDelay": 11}, "spec.turnHandling.endpointingMaxDelay", "less than or equal to 10"),
    ({"turnDetector": "semantic"}, "spec.turnHandling.turnDetector", "'local', 'cloud' or 'vad'"),
    ({"endpointingMode": "smart"}, "spec.turnHandling.endpointingMode", "'fixed' or 'dynamic'"),
    ({"endpointingMinDelay": 2.0, "endpointingMaxDelay": 1.0}, "spec.turnHandling", "endpointingMaxDelay must be at least endpointingMinDelay"),
])
def test_an_invalid_value_is_refused_naming_the_field_and_the_range(values, field, words):
    with pytest.raises(SpecError) as refused:
        parse_spec(with_turn_handling(**values))
    assert refused.value.field == field and words in refused.value.message, refused.value


@pytest.mark.parametrize(("low", "high"), [(0.3, 2.5), (1.0, 1.0), (2.0, 1.0), (0.0, 0.1)])
def test_the_crd_carries_the_delay_rule_judging_as_the_operator_and_the_worker_do(low, high):
    rules = [rule["rule"] for rule in turn_handling_schema()["x-kubernetes-validations"]]
    assert rules == [ENDPOINTING_DELAYS_RULE.cel]
    env = celpy.Environment()
    by_cel = bool(env.program(env.compile(rules[0])).evaluate(
        {"self": celpy.json_to_cel({"endpointingMinDelay": low, "endpointingMaxDelay": high})}))
    try:
        parse_spec(with_turn_handling(endpointingMinDelay=low, endpointingMaxDelay=high))
        by_operator = True
    except SpecError:
        by_operator = False
    assert by_cel == by_operator == (high >= low)


def test_the_worker_refuses_the_same_pair_at_start_up():
    with pytest.raises(ConfigError, match="AGENT_ENDPOINTING_MAX_DELAY=1.0 is below AGENT_ENDPOINTING_MIN_DELAY=2.0"):
        Settings.model_validate({"endpointing_min_delay": 2.0, "endpointing_max_delay": 1.0})
